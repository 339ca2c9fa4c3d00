"""voxserve's inline speech markup: pause tags and IPA overrides (pure; no I/O).

One grammar, documented in ``docs/api.md`` ("Inline markup"):

``[pause:1.5s]``, ``[pause:300ms]``, ``[pause:2]``
    Silence of that length (seconds when no unit is given), at most :data:`MAX_PAUSE_S` per tag and
    :data:`MAX_TOTAL_PAUSE_S` per request. A pause may come first: the audio then starts with silence.
``[words](/ipa/)``
    Speak ``words`` with the given IPA phonemes instead of the engine's own pronunciation (Piper and
    Kokoro voices; the espeak engine cannot speak IPA). The markdown-link shape is Kokoro's and
    misaki's, so text written for them keeps working.

Bracketed look-alikes of a pause tag (``[pause=1.5]``, ``[PAUSE 1.0]``, ``[silent 1s]``, ``[break]``)
are never read aloud: in ``lenient`` mode they are removed and reported as warnings (the HTTP API puts
them in an ``X-Voxserve-Warning`` header); in ``strict`` mode they are a 422 ``invalid_tag``. With
``off`` the text is taken as it is (the normaliser then reads a markdown link as its text).

Parsing runs in time linear in the input: every alternative of the one pattern is bounded in length.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from voxserve.errors import InvalidValue

__all__ = [
    "Fragment",
    "MAX_PAUSE_S",
    "MAX_TOTAL_PAUSE_S",
    "MarkupMode",
    "Parsed",
    "Pause",
    "PhonemeOverride",
    "TextSpan",
    "parse_markup",
]

MarkupMode = Literal["lenient", "strict", "off"]

MAX_PAUSE_S = 10.0
"""Longest single pause; a longer one is a 422 ``invalid_tag`` (a typo such as ``[pause:100]``)."""
MAX_TOTAL_PAUSE_S = 60.0
"""Most silence one request may ask for, so that a short text cannot demand hours of audio."""
_MAX_OVERRIDE_TEXT = 200
_MAX_OVERRIDE_IPA = 400

# Alternatives, each bounded in length so a scan never runs away:
#   1. a pause tag, 2. an IPA override, 3. a pause look-alike (the name of a pause-like word first).
_MARKUP_RE = re.compile(
    r"\[\s*pause\s*:\s*(?P<num>\d{1,6}(?:\.\d{1,6})?)\s*(?P<unit>ms|s)?\s*\]"
    rf"|\[(?P<words>[^\[\]\n]{{1,{_MAX_OVERRIDE_TEXT}}})\]\(/(?P<ipa>[^/\n()]{{1,{_MAX_OVERRIDE_IPA}}})/\)"
    r"|\[\s*(?:pause|silence|silent|break|wait)\b[^\[\]\n]{0,40}\]",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TextSpan:
    """Ordinary text: ``text`` is ``source[start:start + len(text)]``."""

    text: str
    start: int


@dataclass(frozen=True)
class Pause:
    """Silence of ``seconds`` (a tag at ``start:end`` of the source)."""

    seconds: float
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class PhonemeOverride:
    """``text`` spoken as the IPA ``phonemes`` (an override at ``start:end`` of the source)."""

    phonemes: str
    text: str
    start: int = 0
    end: int = 0


Segment = TextSpan | Pause | PhonemeOverride
"""A piece of the source text as written."""
Fragment = str | Pause | PhonemeOverride
"""A unit of a synthesis job: normalised text, a pause, or IPA to speak as it is."""


@dataclass(frozen=True)
class Parsed:
    """The source cut into segments, in order, and what lenient parsing removed."""

    segments: tuple[Segment, ...]
    warnings: tuple[str, ...] = ()


def parse_markup(
    source: str, mode: MarkupMode = "lenient", *, max_total_pause_s: float = MAX_TOTAL_PAUSE_S
) -> Parsed:
    """Cut ``source`` into text, pauses and IPA overrides.

    Raises :class:`InvalidValue` ``invalid_tag`` (422) for a pause out of range, more than
    ``max_total_pause_s`` of silence in all, or (``strict`` only) a look-alike tag.
    """
    if mode == "off":
        return Parsed((TextSpan(source, 0),))
    segments: list[Segment] = []
    warnings: list[str] = []
    total_pause = 0.0
    pos = 0
    for m in _MARKUP_RE.finditer(source):
        if m.start() > pos:
            segments.append(TextSpan(source[pos : m.start()], pos))
        pos = m.end()
        tag = m.group()
        if m.group("num") is not None:
            seconds = float(m.group("num")) / (1000.0 if (m.group("unit") or "").lower() == "ms" else 1.0)
            if not (math.isfinite(seconds) and 0 < seconds <= MAX_PAUSE_S):
                raise InvalidValue(
                    f"pause {tag!r} is out of range: a pause lasts more than 0 and at most {MAX_PAUSE_S:g} s",
                    code="invalid_tag",
                    param="input",
                )
            total_pause += seconds
            if total_pause > max_total_pause_s:
                raise InvalidValue(
                    f"the pauses add up to more than {max_total_pause_s:g} s of silence",
                    code="invalid_tag",
                    param="input",
                )
            segments.append(Pause(round(seconds, 3), m.start(), m.end()))
        elif m.group("ipa") is not None:
            ipa = m.group("ipa").strip()
            words = m.group("words").strip()
            if not ipa:
                raise InvalidValue(f"{tag!r} has no phonemes", code="invalid_tag", param="input")
            segments.append(PhonemeOverride(ipa, words, m.start(), m.end()))
        else:
            if mode == "strict":
                raise InvalidValue(
                    f"{tag!r} is not voxserve markup; a pause is written [pause:1.5s] or [pause:300ms]",
                    code="invalid_tag",
                    param="input",
                )
            warnings.append(tag)
    if pos < len(source):
        segments.append(TextSpan(source[pos:], pos))
    return Parsed(tuple(segments), tuple(warnings))
