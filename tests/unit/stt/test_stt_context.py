"""Putting earlier speech before a final decode, and keeping the new utterance's words."""

from __future__ import annotations

import numpy as np
import pytest

from voxserve.engines.base import Segment, Word
from voxserve.stt.context import CONTEXT_PAUSE_S, Heard, HeardSpeech, Joined, keep_after

SR = 100  # one sample per 10 ms keeps the arithmetic readable


def ramp(start_s: float, seconds: float) -> np.ndarray:
    """Audio whose sample values are their stream times: cuts are visible in the values."""
    return (start_s + np.arange(round(seconds * SR)) / SR).astype(np.float32)


def heard(start_s: float, end_s: float, prompt: str = "") -> Heard:
    """A final with speech from ``start_s`` to ``end_s``; its audio from 0.3 s before to 0.2 s after."""
    return Heard(ramp(start_s - 0.3, end_s - start_s + 0.5), start_s - 0.3, start_s, end_s, prompt)


def speech(**kw: float) -> HeardSpeech:
    return HeardSpeech(**{"max_s": 10.0, "max_gap_s": 2.5, "max_total_s": 28.0, "sample_rate": SR, **kw})  # type: ignore[arg-type]


def test_pauses_between_the_pieces_are_shortened_and_the_own_piece_follows() -> None:
    h = speech()
    h.add(heard(1.0, 2.0, prompt="before"))
    own = ramp(2.7, 1.8)  # speech from 3.0 s
    joined = h.join(own, 2.7, 3.0)
    assert joined is not None and joined.prompt == "before"
    half = CONTEXT_PAUSE_S / 2
    # The earlier piece from its own start to half a shortened pause after its speech ...
    assert joined.keep_from_s == 0.3 + 1.0 + half
    earlier = joined.audio[: round(joined.keep_from_s * SR)]
    assert earlier[0] == np.float32(0.7) and abs(earlier[-1] - (2.0 + half - 0.01)) < 1e-4
    # ... then the own piece from half a shortened pause before its speech.
    assert joined.offset_s == pytest.approx(0.3 - half)
    assert abs(joined.audio[round(joined.keep_from_s * SR)] - (3.0 - half)) < 1e-4
    assert joined.audio.size == earlier.size + own.size - round(joined.offset_s * SR)


def test_a_chain_stops_at_a_long_pause_and_at_max_s() -> None:
    h = speech(max_s=5.0)
    h.add(heard(0.0, 1.0))
    h.add(heard(4.0, 5.0))  # 3 s after the first: too long a pause
    h.add(heard(5.5, 6.5))
    joined = h.join(ramp(6.7, 1.5), 6.7, 7.0)
    assert joined is not None
    # Both pieces from 4.0 s (3 s before the speech at 7.0 s): within max_s; not the one from 0.0 s.
    assert joined.audio[0] == np.float32(3.7)
    h2 = speech(max_s=2.0)
    for piece in (heard(4.0, 5.0), heard(5.5, 6.5)):
        h2.add(piece)
    joined2 = h2.join(ramp(6.7, 1.5), 6.7, 7.0)
    assert joined2 is not None and joined2.audio[0] == np.float32(5.2)


def test_nothing_to_join_after_a_long_pause_or_when_off() -> None:
    h = speech()
    h.add(heard(0.0, 1.0))
    assert h.join(ramp(3.7, 1.5), 3.7, 4.0) is None  # 3 s of pause
    off = speech(max_s=0.0)
    off.add(heard(0.0, 1.0))
    assert not off.enabled and off.join(ramp(1.2, 1.5), 1.2, 1.5) is None


def test_the_whole_decode_stays_within_max_total_s() -> None:
    h = speech(max_total_s=5.0)
    h.add(heard(0.0, 2.0))  # 2.5 s of audio
    h.add(heard(2.5, 4.5))  # 2.5 s
    joined = h.join(ramp(4.7, 2.0), 4.7, 5.0)
    assert joined is not None and joined.audio.size / SR <= 5.0 and joined.audio[0] == np.float32(2.2)


def test_keep_after_keeps_the_words_after_the_boundary_in_the_own_audio_times() -> None:
    joined = Joined(np.zeros(10, np.float32), keep_from_s=2.0, offset_s=0.1, prompt="")
    words = (Word(" old", 1.0, 1.8), Word(" edge", 1.8, 2.4), Word("new", 2.5, 3.0))
    (segment,) = keep_after([Segment(0, 1.0, 3.0, " old edge new", words, confidence=0.9)], joined)
    # " edge" has its middle after 2.0 s; "new" lacks a leading space and gets one.
    assert segment.text == " edge new"
    times = [t for w in segment.words for t in (w.start_s, w.end_s)]
    assert times == pytest.approx([0.0, 0.5, 0.6, 1.1])
    assert segment.confidence == 0.9 and (segment.start_s, segment.end_s) == (0.0, 1.1)


def test_keep_after_judges_a_segment_without_words_by_its_middle() -> None:
    joined = Joined(np.zeros(10, np.float32), keep_from_s=2.0, offset_s=0.0, prompt="")
    kept = keep_after([Segment(0, 0.0, 1.9, " old"), Segment(1, 1.9, 3.0, " new")], joined)
    assert [s.text for s in kept] == [" new"] and kept[0].start_s == 0.0 and kept[0].end_s == 1.0
