"""The streaming resampler: lengths, continuity across chunks, pass-through."""

from __future__ import annotations

import numpy as np
import pytest

from voxserve.audio.resample import Resampler
from voxserve.engines.base import FloatAudio

_CHUNK_SIZES = (1, 333, 4000, 1234, 9999, 17)


def _chunked(resampler: Resampler, audio: FloatAudio) -> FloatAudio:
    """Resample ``audio`` in uneven chunks, then flush."""
    outs, pos, i = [], 0, 0
    while pos < len(audio):
        size = _CHUNK_SIZES[i % len(_CHUNK_SIZES)]
        outs.append(resampler.process(audio[pos : pos + size]))
        pos, i = pos + size, i + 1
    outs.append(resampler.flush())
    return np.concatenate(outs)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(22050, 24000), (24000, 48000), (22050, 48000), (24000, 16000), (48000, 22050)]
)
def test_total_length_and_continuity(in_rate: int, out_rate: int) -> None:
    n = int(2.5 * in_rate) + 7
    audio = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    out = _chunked(Resampler(in_rate, out_rate), audio)
    assert out.dtype == np.float32
    assert abs(len(out) - n * out_rate / in_rate) <= 2
    # Chunking must not change the result: the filter state carries over between chunks.
    whole = Resampler(in_rate, out_rate)
    expected = np.concatenate([whole.process(audio), whole.flush()])
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_keeps_frequency() -> None:
    in_rate, out_rate = 22050, 48000
    t = np.arange(2 * in_rate) / in_rate
    audio = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    out = _chunked(Resampler(in_rate, out_rate), audio)
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * out_rate / len(out)
    assert peak_hz == pytest.approx(440.0, abs=1.0)


def test_passthrough_returns_input_unchanged() -> None:
    resampler = Resampler(24000, 24000)
    assert resampler.passthrough
    audio = np.ones(100, dtype=np.float32)
    assert resampler.process(audio) is audio
    assert resampler.flush().size == 0


def test_invalid_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 24000)
