"""Text → the fragments a synthesis job speaks (pure; no I/O).

Normalisation makes text speakable (numbers, symbols, markdown, URLs); splitting yields sentence
fragments with a short first fragment, so the first audio leaves sooner. Both are linear-time; the
server still runs them off the event loop because inputs can be thousands of characters long.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxserve.errors import InvalidValue, TextTooLong
from voxserve.text.normalize import NormalizationOptions, has_speakable_text, normalize_text
from voxserve.text.sentences import split_fragments

__all__ = ["MAX_TOKEN_CHARS", "SpeechPlan", "break_long_tokens", "plan_speech"]

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
    """What to speak: the normalised text, cut into fragments."""

    text: str
    fragments: tuple[str, ...]


def plan_speech(
    text: str,
    *,
    max_input_chars: int,
    first_fragment_max_chars: int,
    max_fragment_chars: int,
    options: NormalizationOptions | None = None,
) -> SpeechPlan:
    """Validate and prepare ``text`` for synthesis.

    Raises :class:`TextTooLong` (413) over ``max_input_chars`` and :class:`InvalidValue`
    ``no_speakable_text`` (422) when nothing would be spoken.
    """
    if len(text) > max_input_chars:
        raise TextTooLong(f"input is {len(text)} characters; the limit is {max_input_chars}", param="input")
    opts = options or NormalizationOptions()
    # With normalisation off the text is still made safe (control, bidi and private-use characters and
    # lone surrogates removed): an engine fails on a NUL byte whatever the options say.
    spoken = normalize_text(text, opts)
    if not opts.normalize:
        spoken = " ".join(spoken.split())
    spoken = break_long_tokens(spoken)
    if not has_speakable_text(spoken):
        raise InvalidValue(
            "input has no speakable text (it is empty, or only whitespace, punctuation or emoji)",
            code="no_speakable_text",
            param="input",
        )
    fragments = tuple(
        f
        for f in split_fragments(
            spoken, first_fragment_max_chars=first_fragment_max_chars, max_fragment_chars=max_fragment_chars
        )
        if has_speakable_text(f)
    )
    return SpeechPlan(text=spoken, fragments=fragments)
