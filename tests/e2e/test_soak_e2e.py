"""The soak benchmark's short version: concurrent TTS and STT sessions lose and duplicate nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.soak import Hostile, run
from tests.audio_helpers import silence_flac, with_total_samples

pytestmark = pytest.mark.e2e


def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    outcome = run(minutes=0.3, tts=2, stt=1, tmp=tmp_path, settle_s=1.0)
    report, memory, lag_p99_s = outcome.report, outcome.memory, outcome.lag_p99_s
    assert report.failures == []
    assert report.tts_sessions >= 2 and report.stt_sessions >= 1
    # Loop lag is the benchmark's number (benchmarks/soak.py prints it); here it only has to be measured.
    assert lag_p99_s >= 0
    # Memory is sampled for the server and each worker (one Piper, one Whisper).
    assert memory.server_pid in memory.samples and len(memory.samples) >= 3
    assert all(mb > 10 for _, mb in memory.total())


def test_hostile_uploads_beside_normal_sessions_are_refused_and_lose_nothing(tmp_path: Path) -> None:
    cases = [
        Hostile(
            "384 kHz 8 ch", upload=with_total_samples(silence_flac(90, 384_000, "7.1"), 0)
        ),  # > 56 s: the work of 1800 s
        Hostile("24 h declared", upload=with_total_samples(silence_flac(10), 8000 * 86_400)),
    ]
    outcome = run(minutes=0.3, tts=1, stt=1, tmp=tmp_path, hostile=1, cases=cases, settle_s=1.0)
    assert outcome.report.failures == []  # the normal sessions lost nothing
    answers = {
        name: {(status, code) for status, code, _ in rows} for name, rows in outcome.hostile.results.items()
    }
    assert answers == {"384 kHz 8 ch": {(413, "audio_too_large")}, "24 h declared": {(413, "audio_too_long")}}
