"""Timed words and sentences, as the speak and chat WebSockets and captioned speech send them."""

from __future__ import annotations

from typing import Any

from voxserve.client.events import Sentence, Word

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


def sentence(event: dict[str, Any]) -> Sentence:
    """A ``sentence`` event: the fragment whose audio comes next."""
    return Sentence(
        str(event.get("text", "")),
        float(event.get("start_s", 0.0)),
        tuple(word(w, "start_s", "end_s") for w in event.get("words", ())),
    )
