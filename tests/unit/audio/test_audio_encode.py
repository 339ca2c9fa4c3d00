"""Streaming encoders: every format decodes back to the audio that went in."""

from __future__ import annotations

import io
import struct
import time
import wave

import av
import numpy as np
import pytest
from tests.timing import scaled

from voxserve.audio.encode import FORMATS, MEDIA_TYPES, StreamEncoder, make_encoder, wav_header
from voxserve.audio.pcm import float_to_s16_array, s16_to_float
from voxserve.engines.base import FloatAudio
from voxserve.errors import InvalidValue

DURATION_S = 2.5
TONE_HZ = 440.0
LOSSLESS = ("flac", "wav", "pcm")
# Uneven chunk sizes, cycled, so frame boundaries never line up with chunk boundaries.
CHUNK_SIZES = (1, 333, 4000, 1234, 9999, 17, 24000)
# MP3 and ADTS carry no priming/padding information (and Xing is off), so decoders play the encoder
# delay (~1100 samples) and the last frame's padding: up to about 2.5 frames more than went in.
# Ogg Opus and the lossless formats are trimmed exactly.
EXTRA_S = {"mp3": 0.1, "aac": 0.1, "opus": 0.005, "flac": 0.0, "wav": 0.0, "pcm": 0.0}
MAGIC = {"mp3": b"\xff", "opus": b"OggS", "aac": b"\xff", "flac": b"fLaC", "wav": b"RIFF"}


def sine(rate: int, seconds: float = DURATION_S) -> FloatAudio:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def encode_chunked(encoder: StreamEncoder, audio: FloatAudio) -> bytes:
    parts, pos, i = [], 0, 0
    while pos < len(audio):
        size = CHUNK_SIZES[i % len(CHUNK_SIZES)]
        parts.append(encoder.encode(audio[pos : pos + size]))
        pos, i = pos + size, i + 1
    parts.append(encoder.finish())
    return b"".join(parts)


def decode(data: bytes, fmt: str, rate: int) -> tuple[FloatAudio, int]:
    """Decode to float32 mono samples and their rate."""
    if fmt == "pcm":
        return s16_to_float(data), rate
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = list(container.decode(audio=0))
    assert frames, "nothing decoded"
    assert all(frame.layout.nb_channels == 1 for frame in frames)
    pieces = []
    for frame in frames:
        array = frame.to_ndarray().reshape(-1)
        if array.dtype == np.int16:
            array = array.astype(np.float32) / 32767
        elif array.dtype == np.int32:
            array = array.astype(np.float32) / 2**31
        pieces.append(array.astype(np.float32))
    return np.concatenate(pieces), frames[0].sample_rate


def peak_hz(audio: FloatAudio, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


def test_formats_and_media_types() -> None:
    assert FORMATS == ("mp3", "opus", "aac", "flac", "wav", "pcm")
    assert MEDIA_TYPES == {
        "mp3": "audio/mpeg",
        "opus": "audio/ogg",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }


@pytest.mark.parametrize("rate", [24000, 22050])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt: str, rate: int) -> None:
    audio = sine(rate)
    data = encode_chunked(make_encoder(fmt, rate), audio)
    if fmt in MAGIC:
        assert data.startswith(MAGIC[fmt])
    decoded, decoded_rate = decode(data, fmt, rate)

    # Ogg Opus always decodes at 48 kHz (22050 Hz input is resampled to it inside the encoder).
    assert decoded_rate == (48000 if fmt == "opus" else rate)
    duration = len(decoded) / decoded_rate
    assert DURATION_S - 0.002 <= duration <= DURATION_S + EXTRA_S[fmt] + 0.002
    assert peak_hz(decoded, decoded_rate) == pytest.approx(TONE_HZ, abs=2.0)
    if fmt in LOSSLESS:
        assert np.array_equal(float_to_s16_array(decoded), float_to_s16_array(audio))


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac"])
def test_unsupported_codec_rate_is_resampled_to_48k(fmt: str) -> None:
    data = encode_chunked(make_encoder(fmt, 20000), sine(20000))
    decoded, decoded_rate = decode(data, fmt, 20000)
    assert decoded_rate == 48000
    assert DURATION_S - 0.002 <= len(decoded) / decoded_rate <= DURATION_S + EXTRA_S[fmt] + 0.002
    assert peak_hz(decoded, decoded_rate) == pytest.approx(TONE_HZ, abs=2.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_first_second_yields_bytes_at_once(fmt: str) -> None:
    encoder = make_encoder(fmt, 24000)
    assert len(encoder.encode(sine(24000, 1.0))) > 0
    encoder.finish()


def test_opus_final_page_is_emitted() -> None:
    data = encode_chunked(make_encoder("opus", 24000), sine(24000))
    last_page = data.rindex(b"OggS")
    header_type = data[last_page + 5]
    assert header_type & 0x04, "last Ogg page must carry the end-of-stream flag"
    decoded, rate = decode(data, "opus", 24000)
    assert len(decoded) / rate >= 2.45


def test_mp3_has_no_xing_or_info_header() -> None:
    data = encode_chunked(make_encoder("mp3", 24000), sine(24000))
    # No ID3 tag: the stream opens on an MPEG audio frame sync.
    assert data[0] == 0xFF
    assert data[1] & 0xE0 == 0xE0
    head = data[:1024]  # several frames; a Xing/Info tag could only be in the first
    assert b"Xing" not in head
    assert b"Info" not in head


def test_streaming_wav_header_has_unknown_sizes() -> None:
    audio = sine(24000, 0.5)
    encoder = make_encoder("wav", 24000)
    first = encoder.encode(audio[:1000])
    rest = encoder.encode(audio[1000:]) + encoder.finish()
    assert first[:44] == wav_header(24000, None)
    riff, riff_size, wave_id = struct.unpack("<4sI4s", first[:12])
    data_id, data_size = struct.unpack("<4sI", first[36:44])
    assert (riff, wave_id, data_id) == (b"RIFF", b"WAVE", b"data")
    assert riff_size == data_size == 0xFFFFFFFF
    assert first[44:] + rest == float_to_s16_array(audio).tobytes()


def test_buffered_wav_has_exact_sizes() -> None:
    audio = sine(22050, 1.3)
    encoder = make_encoder("wav", 22050, streaming=False)
    assert encoder.encode(audio[:5000]) == b""
    assert encoder.encode(audio[5000:]) == b""
    data = encoder.finish()
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert struct.unpack("<I", data[40:44])[0] == len(data) - 44
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 22050
        assert reader.getnframes() == len(audio)
        assert reader.readframes(len(audio)) == float_to_s16_array(audio).tobytes()


def test_wav_header_sizes() -> None:
    header = wav_header(16000, 1000)
    assert len(header) == 44
    assert struct.unpack("<I", header[4:8])[0] == 1036
    assert struct.unpack("<IIHH", header[24:36]) == (16000, 32000, 2, 16)
    assert struct.unpack("<I", header[40:44])[0] == 1000


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_stream_and_finish_semantics(fmt: str) -> None:
    encoder = make_encoder(fmt, 24000)
    encoder.finish()
    assert encoder.finish() == b""
    with pytest.raises(RuntimeError):
        encoder.encode(sine(24000, 0.1))


def test_empty_wav_stream_is_a_header() -> None:
    assert make_encoder("wav", 24000).finish() == wav_header(24000, None)


def test_unknown_format() -> None:
    with pytest.raises(InvalidValue) as excinfo:
        make_encoder("ogg-vorbis", 24000)
    assert excinfo.value.code == "unsupported_format"


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoding_is_fast(fmt: str) -> None:
    # A guard against gross regressions (an encoder per chunk, re-reading the output), not a
    # benchmark: 3 s of audio takes a few to ~20 ms here, so the bound is very generous.
    audio = sine(24000, 3.0)
    encoder = make_encoder(fmt, 24000)
    start = time.process_time()  # CPU time: other load on the machine does not count
    for pos in range(0, len(audio), 12000):
        encoder.encode(audio[pos : pos + 12000])
    encoder.finish()
    assert time.process_time() - start < scaled(0.5)
