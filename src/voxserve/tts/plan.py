"""Text → the fragments a synthesis job speaks (pure; no I/O).

Inline markup is read first (pause tags and IPA overrides, :mod:`voxserve.text.markup`); each stretch
of text between tags is then normalised (numbers, symbols, markdown, URLs), aligned back to the input
so word timestamps can name input characters (:mod:`voxserve.text.align`), and split into sentence
fragments with a short first fragment, so the first audio leaves sooner. Both are linear-time; the
server still runs them off the event loop because inputs can be thousands of characters long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voxserve.engines.base import WordTiming
from voxserve.errors import InvalidValue, TextTooLong
from voxserve.text.align import SourceWord, source_spans, word_key
from voxserve.text.markup import Fragment, MarkupMode, Pause, PhonemeOverride, parse_markup
from voxserve.text.normalize import NormalizationOptions, has_speakable_text, normalize_text
from voxserve.text.sentences import split_fragments

__all__ = [
    "FIRST_FRAGMENT_MAX_WORDS",
    "SPOKEN_CHARS_PER_SECOND",
    "estimated_seconds",
    "MAX_TOKEN_CHARS",
    "Fragment",
    "SpeechPlan",
    "WordLocator",
    "break_long_tokens",
    "first_clause_cut",
    "plan_piece",
    "plan_speech",
]

SPOKEN_CHARS_PER_SECOND = 15.0
"""Characters of normalised text a voice speaks per second at speed 1 (Piper's joe-medium says 4096
characters of prose in 260 s; digits read out, "nine nine nine", go faster), for the estimate
``max_speech_s`` is checked against."""

FIRST_FRAGMENT_MAX_WORDS = 8
"""A first fragment longer than this is cut at its last clause boundary within this many words."""
_MIN_FIRST_WORDS = 2
_CLAUSE_END = (",", ";", ":", "—", "–")

MAX_TOKEN_CHARS = 40
"""No whitespace-free run longer than this reaches an engine."""
_DOTTED_TOKEN_CHARS = 16


def break_long_tokens(text: str) -> str:
    """Split pathological "words" that crash or stall espeak-ng's front end.

    espeak-ng (inside Piper and Kokoro) segfaults on long dot-joined tokens such as ``a.a.a.…`` and
    spends superlinear time on very long words. Tokens longer than 16 characters are split after
    their inner dots; anything still longer than :data:`MAX_TOKEN_CHARS` is cut into pieces.
    Ordinary words, numbers and abbreviations (``e.g.``, ``U.S.A.``) are untouched. Linear time.
    """
    out: list[str] = []
    for token in text.split(" "):
        if len(token) > _DOTTED_TOKEN_CHARS and "." in token[:-1]:
            token = token.replace(".", ". ").rstrip()
        if any(len(t) > MAX_TOKEN_CHARS for t in token.split(" ")):
            token = " ".join(
                t[i : i + MAX_TOKEN_CHARS]
                for t in token.split(" ")
                for i in range(0, len(t), MAX_TOKEN_CHARS)
            )
        out.append(token)
    return " ".join(out)


@dataclass(frozen=True)
class SpeechPlan:
    """What to speak: fragments in order, and where each fragment's words lie in the source text."""

    text: str
    """The spoken text (normalised; overrides as their words, pauses left out)."""
    fragments: tuple[Fragment, ...]
    words: tuple[tuple[SourceWord, ...], ...] = ()
    """Per fragment, its whitespace-separated words with their character ranges in the input."""
    warnings: tuple[str, ...] = ()
    """Look-alike markup tags removed from the input (lenient mode)."""

    def locator(self) -> WordLocator:
        """A fresh :class:`WordLocator` over this plan's fragments."""
        return WordLocator(self.words)


class WordLocator:
    """Finds the input characters of the word timings an engine reports, fragment by fragment.

    Engines report words their own way (Piper strips punctuation, espeak may split "ninety-seven" in
    two, Kokoro drops unspoken tokens), so timing words are matched to the fragment's words by their
    letters, a few words ahead at most; a word that matches nothing gets the range of the fragment word
    at the cursor. Stateful: words of one fragment may arrive in several audio chunks.
    """

    _LOOKAHEAD = 4

    def __init__(self, words: tuple[tuple[SourceWord, ...], ...]) -> None:
        self._words = words
        self._fragment = -1
        self._cursor = 0

    def locate(self, fragment: int, timings: Sequence[WordTiming]) -> list[tuple[int, int] | None]:
        """``(start, end)`` in the input for each timing (``fragment`` < 0: the current fragment)."""
        if fragment >= 0 and fragment != self._fragment:
            self._fragment, self._cursor = fragment, 0
        if not 0 <= self._fragment < len(self._words):
            return [None] * len(timings)
        words = self._words[self._fragment]
        out: list[tuple[int, int] | None] = []
        for timing in timings:
            key = word_key(timing.word)
            found = None
            for n in range(self._cursor, min(len(words), self._cursor + self._LOOKAHEAD)):
                if key and key in words[n].key:
                    found = n
                    break
            if found is None:
                at = min(self._cursor, len(words) - 1)
                out.append((words[at].source_start, words[at].source_end) if words else None)
                continue
            w = words[found]
            out.append((w.source_start, w.source_end))
            # A timing word that is only part of a fragment word ("ninety" of "ninety-seven") leaves
            # the cursor there for the rest.
            self._cursor = found + 1 if w.key.endswith(key) else found
        return out


def first_clause_cut(fragment: str, max_words: int) -> list[str]:
    """``fragment`` cut after its last clause boundary (``, ; : — –``) within its first ``max_words``
    words, when it is longer than that: the first audio then costs a few words whatever the sentence
    (a clause ends where a speaker may pause, so the cut keeps the prosody). Two words at least on
    each side; a fragment with no such boundary is left whole."""
    words = fragment.split(" ")
    if len(words) <= max_words:
        return [fragment]
    for count in range(min(max_words, len(words) - _MIN_FIRST_WORDS), _MIN_FIRST_WORDS - 1, -1):
        if words[count - 1].endswith(_CLAUSE_END):
            return [" ".join(words[:count]), " ".join(words[count:])]
    return [fragment]


def _speakable(text: str, opts: NormalizationOptions) -> str:
    # With normalisation off the text is still made safe (control, bidi and private-use characters and
    # lone surrogates removed): an engine fails on a NUL byte whatever the options say.
    spoken = normalize_text(text, opts)
    if not opts.normalize:
        spoken = " ".join(spoken.split())
    return break_long_tokens(spoken)


def plan_speech(
    text: str,
    *,
    max_input_chars: int,
    first_fragment_max_chars: int,
    max_fragment_chars: int,
    options: NormalizationOptions | None = None,
    markup: MarkupMode = "lenient",
    first_fragment_max_words: int = FIRST_FRAGMENT_MAX_WORDS,
    max_speech_s: float | None = None,
    speed: float = 1.0,
) -> SpeechPlan:
    """Validate and prepare ``text`` for synthesis.

    ``markup`` says how inline pause tags and IPA overrides are read (:mod:`voxserve.text.markup`).
    Raises :class:`TextTooLong` (413) over ``max_input_chars``, and ``speech_too_long`` when the
    speech would last longer than ``max_speech_s`` (:func:`estimated_seconds` at ``speed``: number
    expansion makes 4096 nines 20 479 characters to say, 17 minutes of audio); :class:`InvalidValue`
    ``no_speakable_text`` (422) when nothing would be spoken and ``invalid_tag`` (422) for bad markup.
    """
    if len(text) > max_input_chars:
        raise TextTooLong(
            f"input is {len(text)} characters; the limit is {max_input_chars} "
            "(longer texts: POST /v1/audio/speech/jobs)",
            param="input",
        )
    plan = _plan(
        text, first_fragment_max_chars, max_fragment_chars, options, markup, first_fragment_max_words
    )
    if all(isinstance(f, Pause) for f in plan.fragments):
        raise InvalidValue(
            "input has no speakable text (it is empty, or only whitespace, punctuation, emoji or pauses)",
            code="no_speakable_text",
            param="input",
        )
    if max_speech_s is not None:
        seconds = estimated_seconds(plan.fragments, speed)
        if seconds > max_speech_s:
            raise TextTooLong(
                f"input would be about {seconds:.0f} s of speech at speed {speed:g}; the limit is "
                f"max_speech_s = {max_speech_s:g} s (longer texts: POST /v1/audio/speech/jobs)",
                code="speech_too_long",
                param="input",
            )
    return plan


def estimated_seconds(fragments: tuple[Fragment, ...], speed: float = 1.0) -> float:
    """About how long ``fragments`` take to say: their characters at ``SPOKEN_CHARS_PER_SECOND``
    divided by ``speed`` (> 0), plus their pauses."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    chars = sum(len(f) for f in fragments if isinstance(f, str))
    pauses = sum(f.seconds for f in fragments if isinstance(f, Pause))
    return chars / SPOKEN_CHARS_PER_SECOND / speed + pauses


def plan_piece(
    text: str,
    *,
    max_fragment_chars: int,
    options: NormalizationOptions | None = None,
    markup: MarkupMode = "lenient",
) -> SpeechPlan:
    """Plan one piece of a longer text (a speech job's section, a fragment of a text stream).

    No length limit and no short first fragment of its own (the whole text has those), and a piece with
    nothing to speak is no error: its plan holds only its pauses (often none). Bad markup still raises
    ``invalid_tag``.
    """
    return _plan(text, max_fragment_chars, max_fragment_chars, options, markup)


def _plan(
    text: str,
    first_max: int,
    max_fragment_chars: int,
    options: NormalizationOptions | None,
    markup: MarkupMode,
    first_max_words: int | None = None,
) -> SpeechPlan:
    opts = options or NormalizationOptions()
    parsed = parse_markup(text, markup)
    fragments: list[Fragment] = []
    words: list[tuple[SourceWord, ...]] = []
    spoken_parts: list[str] = []
    for segment in parsed.segments:
        if isinstance(segment, Pause):
            fragments.append(segment)
            words.append(())
        elif isinstance(segment, PhonemeOverride):
            fragments.append(segment)
            span = SourceWord(segment.text, word_key(segment.text), segment.start, segment.end)
            words.append((span,))
            spoken_parts.append(segment.text)
        else:
            spoken = _speakable(segment.text, opts)
            if not has_speakable_text(spoken):
                continue
            spoken_parts.append(spoken)
            aligned = source_spans(segment.text, spoken, base=segment.start)
            cursor = 0
            pieces = split_fragments(
                spoken, first_fragment_max_chars=first_max, max_fragment_chars=max_fragment_chars
            )
            if first_max_words is not None and pieces:
                pieces[:1] = first_clause_cut(pieces[0], first_max_words)
            for fragment in pieces:
                count = len(fragment.split())
                if has_speakable_text(fragment):
                    fragments.append(fragment)
                    words.append(tuple(aligned[cursor : cursor + count]))
                cursor += count
            # Only the very first fragment is kept short (it sets the latency to first audio).
            first_max, first_max_words = max_fragment_chars, None
    return SpeechPlan(
        text=" ".join(spoken_parts), fragments=tuple(fragments), words=tuple(words), warnings=parsed.warnings
    )
