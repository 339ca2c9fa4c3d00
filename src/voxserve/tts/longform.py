"""Long texts (a chapter, a book) → sections that a speech job synthesizes one after the other (pure).

A speech job never plans or synthesizes its whole input at once: the text is cut into *sections* of
about ``section_chars`` characters, each planned (markup read, text normalised and split into
fragments, exactly as the speech route does with :func:`~voxserve.tts.plan.plan_speech`) just before
it is spoken, and synthesized by one worker call. That keeps planning and memory proportional to one
section, and lets live requests take a worker between two sections instead of waiting hours behind a
book.

Sections are consecutive slices of the input that join back into it exactly (``"".join(sections) ==
text``), so a job's progress counts input characters and ends at exactly ``len(text)``. A cut falls,
in order of preference, after a blank line, a line end or a sentence end in the second half of the
window, then anywhere in it, then at the last whitespace; a window with no whitespace at all (no real
text has one) is cut hard. A cut never falls inside a markup tag (``[pause:1s]``, ``[word](/ipa/)``,
or a look-alike tag that lenient markup removes): a section ends before the tag, or just after it
when the tag alone is longer than a section. Each section is normalised on its own, so a construct
that spans a cut (a fenced code block longer than a section) is read as two parts.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from voxserve.errors import InvalidValue, TextTooLong
from voxserve.text.markup import (
    MAX_TOTAL_PAUSE_S,
    Fragment,
    MarkupMode,
    Pause,
    PhonemeOverride,
    TextSpan,
    parse_markup,
)
from voxserve.text.normalize import NormalizationOptions
from voxserve.tts.plan import plan_piece

__all__ = ["LongTextPlan", "job_pause_limit_s", "plan_long_text", "plan_section", "split_sections"]

# Possessive quantifiers and the look-behind keep every scan linear: a run of dots or spaces is
# matched once, never retried from each of its characters.
_PARAGRAPH_END = re.compile(r"\n[^\S\n]*+\n\s*+")
_LINE_END = re.compile(r"\n\s*+")
_SENTENCE_END = re.compile(r"(?<![.!?…])[.!?…]++[\"'”’)\]]*+\s++")
_SPACE = re.compile(r"\s++")


@dataclass(frozen=True)
class LongTextPlan:
    """A job's text, validated and cut into sections (planned one by one later)."""

    sections: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    """Look-alike markup tags that lenient markup removes (as the speech route reports them)."""
    overrides: tuple[PhonemeOverride, ...] = ()
    """Every IPA override in the text, so the voice can be asked to accept them before the job starts."""


class _Spans:
    """Sorted, disjoint ``[start, end)`` ranges of the text that no cut may fall strictly inside."""

    def __init__(self, spans: Sequence[tuple[int, int]]) -> None:
        self._starts = [s for s, _ in spans]
        self._ends = [e for _, e in spans]

    def around(self, pos: int) -> tuple[int, int] | None:
        """The range ``pos`` falls strictly inside, if any."""
        i = bisect.bisect_left(self._starts, pos) - 1
        if i >= 0 and pos < self._ends[i]:
            return self._starts[i], self._ends[i]
        return None


def job_pause_limit_s(chars: int) -> float:
    """Silence a job of ``chars`` characters may ask for: a speech request's limit per 4096 characters."""
    return MAX_TOTAL_PAUSE_S * max(1.0, chars / 4096)


def split_sections(text: str, section_chars: int, protected: Sequence[tuple[int, int]] = ()) -> list[str]:
    """Cut ``text`` into consecutive slices of at most ``section_chars`` characters (see the module
    docstring for where cuts fall). ``protected``: sorted, disjoint ``[start, end)`` ranges never cut
    (a range longer than a section makes that section longer). Linear time; ``"".join(result) ==
    text``."""
    if section_chars < 1:
        raise ValueError("section_chars must be at least 1")
    spans = _Spans(protected)
    sections: list[str] = []
    pos = 0
    while len(text) - pos > section_chars:
        end = _cut(text, pos, pos + section_chars, spans)
        sections.append(text[pos:end])
        pos = end
    if pos < len(text):
        sections.append(text[pos:])
    return sections


def _cut(text: str, lo: int, hi: int, spans: _Spans) -> int:
    """Where the section starting at ``lo`` ends: after ``lo``, at ``hi`` or before unless a protected
    range straddles every candidate."""
    # A short section costs one more worker call; a cut mid-paragraph costs some prosody. Prefer the
    # strongest boundary in the second half of the window, then the strongest anywhere.
    for floor in (lo + (hi - lo) // 2, lo):
        for boundary in (_PARAGRAPH_END, _LINE_END, _SENTENCE_END):
            end = _last_end(boundary, text, floor, hi, spans)
            if end is not None:
                return end
    end = _last_end(_SPACE, text, lo, hi, spans)
    if end is not None:
        return end
    inside = spans.around(hi)
    if inside is None:
        return hi
    start, stop = inside
    return start if start > lo else stop


def _last_end(pattern: re.Pattern[str], text: str, floor: int, hi: int, spans: _Spans) -> int | None:
    """The end of the last match of ``pattern`` in ``text[floor:hi]`` that is not inside a protected
    range (every pattern matches at least one character, so that end is after ``floor``)."""
    last = None
    for match in pattern.finditer(text, floor, hi):
        if spans.around(match.end()) is None:
            last = match.end()
    return last


def plan_section(
    section: str,
    *,
    max_fragment_chars: int,
    options: NormalizationOptions | None = None,
    markup: MarkupMode = "lenient",
) -> tuple[Fragment, ...]:
    """The fragments to synthesize for one section (its pauses only when it has nothing to speak:
    skipped in a long text, not an error)."""
    return plan_piece(
        section, max_fragment_chars=max_fragment_chars, options=options, markup=markup
    ).fragments


def plan_long_text(
    text: str,
    *,
    max_chars: int,
    section_chars: int,
    max_fragment_chars: int,
    options: NormalizationOptions | None = None,
    markup: MarkupMode = "lenient",
) -> LongTextPlan:
    """Validate a job's text and cut it into sections.

    Raises :class:`TextTooLong` (413) over ``max_chars``; :class:`InvalidValue` ``invalid_tag``
    (422) for markup the speech route would refuse, read over the whole text (the pauses of a job may
    add up to :func:`job_pause_limit_s`); and ``no_speakable_text`` (422) when no section has
    anything to speak — found by planning sections until one has, which for real text is the first.
    """
    if len(text) > max_chars:
        raise TextTooLong(
            f"input is {len(text)} characters; the limit for a job is {max_chars}", param="input"
        )
    # A book may pause as often as a request does: the silence allowed grows with the text.
    parsed = parse_markup(text, markup, max_total_pause_s=job_pause_limit_s(len(text)))
    # Everything outside ordinary text is a tag, kept (a pause, an override) or removed (a look-alike).
    protected: list[tuple[int, int]] = []
    pos = 0
    for segment in parsed.segments:
        if isinstance(segment, TextSpan):
            if segment.start > pos:
                protected.append((pos, segment.start))
            pos = segment.start + len(segment.text)
    if pos < len(text):
        protected.append((pos, len(text)))
    sections = split_sections(text, section_chars, protected)

    def speakable(section: str) -> bool:
        fragments = plan_section(
            section, max_fragment_chars=max_fragment_chars, options=options, markup=markup
        )
        return any(not isinstance(f, Pause) for f in fragments)

    if not any(speakable(s) for s in sections):
        raise InvalidValue(
            "input has no speakable text (it is empty, or only whitespace, punctuation, emoji or pauses)",
            code="no_speakable_text",
            param="input",
        )
    overrides = tuple(s for s in parsed.segments if isinstance(s, PhonemeOverride))
    return LongTextPlan(tuple(sections), parsed.warnings, overrides)
