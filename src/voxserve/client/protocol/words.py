"""Timed words and sentences, from the speak and chat WebSockets' events and from captioned speech."""

from __future__ import annotations

from typing import Any

from voxserve.client.events import Sentence, Word
from voxserve.protocol.speak import SentenceEvent

__all__ = ["sentence", "word"]


def word(w: dict[str, Any], start: str, end: str) -> Word:
    """A :class:`Word` whose times are the fields ``start`` and ``end`` (their names differ by route)."""
    a, b = w.get("source_start"), w.get("source_end")
    return Word(
        str(w["word"]),
        float(w[start]),
        float(w[end]),
        int(a) if a is not None else None,
        int(b) if b is not None else None,
    )


def sentence(event: SentenceEvent) -> Sentence:
    """A ``sentence`` event (speak and chat): the fragment whose audio comes next."""
    words = (
        Word(w.word, float(w.start_s), float(w.end_s), w.source_start, w.source_end) for w in event.words
    )
    return Sentence(event.text, float(event.start_s), tuple(words))
