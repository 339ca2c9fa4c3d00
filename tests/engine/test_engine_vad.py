"""Silero VAD v6 on onnxruntime, fed by frames and by arbitrary chunks."""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from tests.speech_dev import by_name

from voxserve.engines.vad import FRAME_SAMPLES, SAMPLE_RATE, SileroVadModel, VadStream, default_model_path
from voxserve.errors import EngineFailure

pytestmark = pytest.mark.engine

SPEECH = "fleurs_en_007.wav"


def load(name: str) -> np.ndarray:
    with wave.open(str(by_name(name).path)) as w:
        assert w.getframerate() == SAMPLE_RATE
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def model() -> SileroVadModel:
    return SileroVadModel(threads=1)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load(SPEECH)


def test_importing_has_no_side_effects() -> None:
    code = "import sys, voxserve.engines.vad; assert 'onnxruntime' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_the_model_ships_with_faster_whisper() -> None:
    path = default_model_path()
    assert path.name == "silero_vad_v6.onnx" and path.is_file()


def test_silence_and_quiet_noise_are_not_speech(model: SileroVadModel) -> None:
    stream = VadStream(model)
    probs = stream.probabilities(np.zeros(SAMPLE_RATE * 2, np.float32))
    assert len(probs) == SAMPLE_RATE * 2 // FRAME_SAMPLES
    assert max(probs) < 0.1
    noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE * 2) * 0.01).astype(np.float32)
    assert max(stream.probabilities(noise)) < 0.2


def test_speech_regions_score_high(model: SileroVadModel, speech: np.ndarray) -> None:
    probs = np.array(VadStream(model).probabilities(speech))
    assert len(probs) == len(speech) // FRAME_SAMPLES
    assert np.all((probs >= 0.0) & (probs <= 1.0))
    # FLEURS item 7: about 1.1 s of silence, then speech until about 6.3 s.
    frames_per_s = SAMPLE_RATE / FRAME_SAMPLES
    lead = probs[: int(0.8 * frames_per_s)]
    talk = probs[int(1.5 * frames_per_s) : int(6.0 * frames_per_s)]
    assert lead.max() < 0.2
    assert np.median(talk) > 0.9
    assert (talk > 0.5).mean() > 0.85


def test_frames_chunks_and_one_call_agree(model: SileroVadModel, speech: np.ndarray) -> None:
    stream = VadStream(model)
    whole = stream.probabilities(speech)
    assert stream.pending_samples == len(speech) % FRAME_SAMPLES

    stream.reset()
    framed = [
        stream.process(speech[i : i + FRAME_SAMPLES])
        for i in range(0, len(whole) * FRAME_SAMPLES, FRAME_SAMPLES)
    ]
    np.testing.assert_allclose(framed, whole, atol=1e-5)

    stream.reset()
    rng = np.random.default_rng(1)
    chunked: list[float] = []
    pos = 0
    while pos < len(speech):
        size = int(rng.integers(1, 3000))
        chunked += stream.probabilities(speech[pos : pos + size])
        pos += size
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_state_carries_over_and_reset_forgets_it(model: SileroVadModel, speech: np.ndarray) -> None:
    stream = VadStream(model)
    start = 94 * FRAME_SAMPLES  # about 3 s in, on a frame boundary
    frame = speech[start : start + FRAME_SAMPLES]
    fresh = stream.process(frame)
    stream.reset()
    stream.probabilities(speech[:start])
    warm = stream.process(frame)
    assert abs(warm - fresh) > 1e-4  # the recurrent state mattered
    stream.reset()
    assert stream.process(frame) == pytest.approx(fresh, abs=1e-6)
    assert stream.pending_samples == 0


def test_streams_share_one_model_across_threads(model: SileroVadModel, speech: np.ndarray) -> None:
    expected = VadStream(model).probabilities(speech)
    results: list[list[float]] = [[] for _ in range(4)]

    def run(i: int) -> None:
        stream = VadStream(model)
        results[i] = [
            stream.process(speech[k : k + FRAME_SAMPLES])
            for k in range(0, len(expected) * FRAME_SAMPLES, FRAME_SAMPLES)
        ]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_short_input_is_buffered(model: SileroVadModel) -> None:
    stream = VadStream(model)
    assert stream.probabilities(np.zeros(500, np.float32)) == []
    assert stream.pending_samples == 500
    assert len(stream.probabilities(np.zeros(12, np.float32))) == 1
    assert stream.pending_samples == 0


def test_process_checks_the_frame(model: SileroVadModel) -> None:
    stream = VadStream(model)
    with pytest.raises(ValueError, match="512"):
        stream.process(np.zeros(511, np.float32))
    stream.probabilities(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="part of a frame"):
        stream.process(np.zeros(512, np.float32))


def test_a_missing_or_broken_model_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(EngineFailure) as err:
        SileroVadModel(model_path=tmp_path / "nope.onnx")
    assert err.value.code == "model_missing"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(EngineFailure) as err:
        SileroVadModel(model_path=junk)
    assert err.value.code == "model_invalid"
