"""The soak benchmark's short version: concurrent TTS and STT sessions lose and duplicate nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.soak import run

pytestmark = pytest.mark.e2e


def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    report, memory, lag_p99_s = run(minutes=0.3, tts=2, stt=1, tmp=tmp_path)
    assert report.failures == []
    assert report.tts_sessions >= 2 and report.stt_sessions >= 1
    # Loop lag is the benchmark's number (benchmarks/soak.py prints it); here it only has to be measured.
    assert lag_p99_s >= 0
    # Memory is sampled for the server and each worker (one Piper, one Whisper).
    assert memory.server_pid in memory.samples and len(memory.samples) >= 3
    assert all(mb > 10 for _, mb in memory.total())
