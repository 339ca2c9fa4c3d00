"""Any PCM the Wyoming protocol allows, to 16 kHz float mono."""

from __future__ import annotations

import numpy as np
import pytest

from voxserve.errors import InvalidRequest, InvalidValue
from voxserve.wyoming.audio import WyomingPcm


def tone(rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float64)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_formats_give_the_same_16k_signal(width: int, channels: int, rate: int) -> None:
    signal = tone(rate)
    scale = float(1 << (8 * width - 1)) - 1
    ints = np.round(signal * scale).astype(np.int64)
    frames = np.repeat(ints, channels)
    raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in frames)
    convert = WyomingPcm(rate, width, channels)
    out = np.concatenate([convert(raw), convert.flush()])
    assert out.dtype == np.float32
    assert abs(len(out) - 8000) < 40
    assert 0.3 < float(np.abs(out).max()) < 0.6


def test_chunks_resample_continuously() -> None:
    raw = (np.round(tone(48000) * 32767).astype("<i2")).tobytes()
    convert = WyomingPcm(48000, 2, 1)
    pieces = [convert(raw[i : i + 962]) for i in range(0, len(raw), 962)]
    pieces.append(convert.flush())
    assert abs(sum(len(p) for p in pieces) - 8000) < 40


def test_misaligned_and_bad_formats() -> None:
    with pytest.raises(InvalidRequest) as info:
        WyomingPcm(16000, 2, 2)(b"\x00" * 6)
    assert info.value.code == "misaligned_pcm"
    for rate, width, channels in [(0, 2, 1), (16000, 5, 1), (16000, 2, 0), (16000, 2, 99), (10**7, 2, 1)]:
        with pytest.raises(InvalidValue) as bad:
            WyomingPcm(rate, width, channels)
        assert bad.value.code == "unsupported_audio_format"
