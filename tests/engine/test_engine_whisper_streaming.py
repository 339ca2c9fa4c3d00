"""Streaming finals on real speech with long pauses (issue 11): the streaming session of the server
(its defaults, Silero VAD, tiny.en) against a batch transcription of the same recording.

A speaker who pauses mid-sentence ("And so, my fellow Americans, … ask not …") used to lose the
words after each pause: each piece was decoded alone. The recordings here are speech_dev's with every
pause of 300 ms or more inside the speech stretched to 1.2 s (their transcripts stay true), so each
one becomes several utterances. Finals hear the utterances before them again
(:mod:`voxserve.stt.context`); the stream must come out as well as the whole file decoded at once.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import pytest
from tests.speech_dev import by_name
from tests.stream_speech import RATE, pauses_stretched, stream_finals
from tests.wer import errors

from voxserve.audio.decode import decode_audio
from voxserve.config import Settings
from voxserve.engines.base import TranscribeOptions
from voxserve.engines.vad import SileroVadModel
from voxserve.engines.whisper import WhisperEngine
from voxserve.stt.transcriber import session_config

pytestmark = pytest.mark.engine

# Every speech_dev recording with pauses of 300 ms or more inside its speech (how many): two
# audiobook sentences with commas (4 and 7), ten read sentences (12), digit strings spoken with pauses
# (2) and spliced from single digits (5 and 1); 201 words.
FILES = (
    "librispeech_1272-141231-0002.wav",
    "librispeech_1272-128104-0004_8k.wav",
    "OSR_us_000_0034_8k.wav",
    "sphinx4_digits_10001-90210-01803.wav",
    "fsdd_string_lucas_a.wav",
    "fsdd_string_george_a.wav",
)
MIN_PAUSE_MS = 300
PAUSE_S = 1.2


@pytest.fixture(scope="module")
def tiny() -> WhisperEngine:
    return WhisperEngine("tiny.en", threads=1)  # as a server worker decodes


@pytest.fixture(scope="module")
def vad() -> SileroVadModel:
    return SileroVadModel(1)


def test_streaming_across_long_pauses_is_as_good_as_batch(tiny: WhisperEngine, vad: SileroVadModel) -> None:
    config = session_config(Settings(ui_enabled=False), interim=False)
    assert config.context_audio_s > 0  # the server's defaults hear earlier speech again
    stream_errors = batch_errors = words = 0
    report = []
    for name in FILES:
        u = by_name(name)
        audio = decode_audio(u.path.read_bytes(), max_seconds=60)
        longer = pauses_stretched(audio, vad, MIN_PAUSE_MS, PAUSE_S)
        assert len(longer) - len(audio) >= PAUSE_S * RATE  # long pauses added
        finals = stream_finals(tiny, config, vad, longer)
        assert len(finals) >= 2, finals  # cut into utterances at the pauses, as a live stream is
        _, segments = tiny.transcribe(audio, TranscribeOptions(language="en", beam_size=1))
        batch = "".join(s.text for s in segments)
        e_stream, n = errors(u.text, " ".join(finals))
        e_batch, _ = errors(u.text, batch)
        stream_errors += e_stream
        batch_errors += e_batch
        words += n
        report.append(f"{name}: stream {e_stream}/{n} {finals!r}; batch {e_batch}/{n} {batch!r}")
    # Issue 11's aim is streaming WER within 1 point of batch (benchmarks/stream_wer_bench.py measures
    # it). Measured here: +0.5 points (22 words against 21); each piece decoded alone, +3 points (27).
    # Decodes differ by a word from run to run, so the test allows 1.5 points.
    assert stream_errors - batch_errors <= 0.015 * words, "\n".join(report)
