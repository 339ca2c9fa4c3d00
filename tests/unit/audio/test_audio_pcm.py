"""float32 <-> s16le conversion."""

from __future__ import annotations

import numpy as np
import pytest

from voxserve.audio.pcm import float_to_s16, float_to_s16_array, s16_to_float
from voxserve.errors import InvalidRequest


def test_float_to_s16_scales_clips_and_is_little_endian() -> None:
    audio = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0], dtype=np.float32)
    data = float_to_s16(audio)
    assert len(data) == 2 * len(audio)
    assert np.frombuffer(data, dtype="<i2").tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767]
    assert float_to_s16(np.array([1.0], dtype=np.float32)) == b"\xff\x7f"


def test_s16_to_float_little_endian() -> None:
    out = s16_to_float(b"\x00\x80\x01\x80\x00\x00\x00\x40\xff\x7f")
    assert out.dtype == np.float32
    assert out.tolist() == pytest.approx([-1.0, -1.0, 0.0, 16384 / 32767, 1.0])


def test_float_round_trip_within_half_a_step() -> None:
    audio = np.linspace(-1.0, 1.0, 1001, dtype=np.float32)
    back = s16_to_float(float_to_s16(audio))
    assert np.max(np.abs(back - audio)) <= 0.5 / 32767 + 1e-7


def test_s16_round_trip_is_lossless() -> None:
    samples = np.arange(-32767, 32768, dtype="<i2")
    assert np.array_equal(float_to_s16_array(s16_to_float(samples.tobytes())), samples)


def test_empty() -> None:
    assert float_to_s16(np.zeros(0, dtype=np.float32)) == b""
    assert s16_to_float(b"").size == 0


def test_misaligned_pcm_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        s16_to_float(b"\x00\x01\x02")
    assert excinfo.value.code == "misaligned_pcm"
    assert excinfo.value.status == 400
