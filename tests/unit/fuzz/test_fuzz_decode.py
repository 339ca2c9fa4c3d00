"""Property tests for the audio parsers: uploads (any bytes, mutated real files), headerless PCM and
base64 audio raise only :class:`VoxserveError` subclasses, never another exception."""

from __future__ import annotations

import base64
import binascii
import io
import struct
import wave
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings

from voxserve.audio.decode import PCM_ENCODINGS, PcmConverter, decode_audio, decode_pcm
from voxserve.audio.encode import make_encoder
from voxserve.errors import VoxserveError
from voxserve.protocol.json import decode_base64

_MAX_SECONDS = 5.0


def _tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _wav(rate: int = 16000, channels: int = 1, seconds: float = 0.25) -> bytes:
    samples = (_tone(rate, seconds) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples, channels).tobytes())
    return out.getvalue()


@cache
def _files() -> dict[str, bytes]:
    files = {"wav": _wav(), "wav_stereo_8k": _wav(8000, 2)}
    for fmt in ("flac", "opus", "mp3"):
        encoder = make_encoder(fmt, 24000, streaming=False)
        files[fmt] = encoder.encode(_tone(24000, 0.25)) + encoder.finish()
    return files


def _decodes_or_refuses(data: bytes) -> None:
    try:
        audio = decode_audio(data, max_seconds=_MAX_SECONDS)
    except VoxserveError as exc:
        assert 400 <= exc.status < 500, exc.code
        return
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) <= 16000 * (_MAX_SECONDS + 0.1)
    assert np.isfinite(audio).all() and float(np.abs(audio).max(initial=0.0)) <= 1.0


def test_the_seed_files_decode() -> None:
    for name, data in _files().items():
        assert len(decode_audio(data, max_seconds=_MAX_SECONDS)) > 1000, name


@fuzz_settings(60)
@given(data=st.binary(max_size=2048))
def test_random_bytes_decode_or_are_refused(data: bytes) -> None:
    _decodes_or_refuses(data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(_files())))
    data = bytearray(_files()[name])
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "header_field", "truncate", "insert", "delete"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "header_field":
            # Overwrite a 16- or 32-bit field in the first 64 bytes: sizes, rates, channels, bit depths.
            at = draw(st.integers(0, max(0, min(60, len(data) - 4))))
            value = draw(st.sampled_from([0, 1, 9, 12, 64, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 10_000_000]))
            width = draw(st.sampled_from([2, 4]))
            data[at : at + width] = struct.pack("<I", value & 0xFFFFFFFF)[:width]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[pos : pos + draw(st.integers(1, 256))]
    return bytes(data)


@fuzz_settings(120)
@given(data=_mutated())
def test_mutated_files_decode_or_are_refused(data: bytes) -> None:
    _decodes_or_refuses(data)


@fuzz_settings(100)
@given(
    data=st.binary(max_size=4096),
    encoding=st.one_of(st.sampled_from(PCM_ENCODINGS), st.text(max_size=10)),
    sample_rate=st.one_of(st.sampled_from([8000, 16000, 24000, 44100, 48000]), st.integers(-(2**40), 2**40)),
)
def test_decode_pcm_returns_audio_or_a_voxserve_error(data: bytes, encoding: str, sample_rate: int) -> None:
    try:
        audio = decode_pcm(data, encoding=encoding, sample_rate=sample_rate)
    except VoxserveError as exc:
        assert exc.status in (400, 422)
        return
    assert audio.dtype == np.float32 and np.isfinite(audio).all()


@fuzz_settings(40)
@given(samples=st.lists(st.floats(width=32), min_size=1, max_size=64), extra=st.binary(max_size=3))
def test_float32_pcm_with_non_finite_or_partial_samples_is_refused(
    samples: list[float], extra: bytes
) -> None:
    data = np.asarray(samples, dtype="<f4").tobytes() + extra
    try:
        audio = decode_pcm(data, encoding="float32", sample_rate=16000)
    except VoxserveError as exc:
        expected = "misaligned_pcm" if extra else "non_finite_samples"
        assert exc.code == expected
        return
    assert not extra and np.isfinite(samples).all()
    assert float(np.abs(audio).max()) <= 1.0


@fuzz_settings(40)
@given(data=st.binary(max_size=64).filter(lambda d: len(d) % 2 == 1))
def test_odd_length_linear16_is_misaligned(data: bytes) -> None:
    with pytest.raises(VoxserveError) as info:
        decode_pcm(data, encoding="linear16", sample_rate=16000)
    assert info.value.code == "misaligned_pcm"


_B64_TEXT = st.one_of(
    st.text(max_size=64),
    st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
    # Valid base64 damaged the ways clients damage it: whitespace, a data-URL prefix, URL-safe
    # characters, missing or extra padding.
    st.tuples(
        st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
        st.sampled_from(["", " ", "\n", "data:audio/wav;base64,", "-", "_", "=", "==", "é"]),
        st.integers(0, 64),
    ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
)


@fuzz_settings(100)
@given(text=_B64_TEXT, encoding=st.sampled_from(PCM_ENCODINGS), rate=st.sampled_from([8000, 16000, 24000]))
def test_base64_audio_fails_only_as_the_routes_expect(text: str, encoding: str, rate: int) -> None:
    # The streaming routes decode strictly and turn binascii.Error / ValueError into the
    # invalid_base64 error event; the PCM converter raises only VoxserveError (an error event too).
    try:
        data = decode_base64(text)
    except (binascii.Error, ValueError):
        return
    assert len(data) == len(text) // 4 * 3 - text.count("=")  # whole groups, padding only at the end
    convert = PcmConverter(encoding, rate)
    try:
        audio = convert(data)
    except VoxserveError as exc:
        assert exc.code in ("misaligned_pcm", "non_finite_samples")
        return
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
