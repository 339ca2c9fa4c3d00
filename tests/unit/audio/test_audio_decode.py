"""Decoding uploads: every container and codec to 16 kHz mono, headerless PCM, and every refusal."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from tests.audio_helpers import silence_encoded, silence_flac, with_total_samples
from tests.timing import scaled

from voxserve.audio import decode as decode_module
from voxserve.audio.decode import ALAW_TO_S16, MULAW_TO_S16, decode_audio, decode_pcm
from voxserve.audio.encode import FORMATS, make_encoder, wav_header
from voxserve.errors import InvalidRequest, InvalidValue, TextTooLong, UnsupportedMediaType, VoxserveError

RATE = 16000
TONE_HZ = 440.0
SECONDS = 1.5

_DTYPES = {"s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64, "u8": np.uint8}


def tone(rate: int, seconds: float = SECONDS, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _as_format(planes: np.ndarray, fmt: str) -> np.ndarray:
    """float planes [channels, n] in [-1, 1] -> the array PyAV wants for sample format ``fmt``."""
    base = fmt.rstrip("p")
    if base == "s16":
        data = np.round(planes * 32767).astype(np.int16)
    elif base == "s32":
        data = np.round(planes.astype(np.float64) * 2147483647).astype(np.int32)
    elif base == "u8":
        data = np.round(planes * 127 + 128).astype(np.uint8)
    else:
        data = planes.astype(_DTYPES[base])
    # Planar formats take one row per channel; packed ones one row of interleaved samples.
    return data if fmt.endswith("p") else data.T.reshape(1, -1)


def encode_file(
    planes: np.ndarray, rate: int, container: str, codec: str, codec_options: dict[str, str] | None = None
) -> bytes:
    """Encode float planes ``[channels, n]`` into a whole file with PyAV."""
    channels = planes.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if codec_options:
            stream.codec_context.options = codec_options
        fmt = stream.codec_context.codec.audio_formats[0].name
        stream.codec_context.format = fmt
        size = stream.codec_context.frame_size or 1024
        for start in range(0, planes.shape[1], size):
            chunk = np.ascontiguousarray(_as_format(planes[:, start : start + size], fmt))
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """A plain s16 WAV of interleaved float ``samples``."""
    data = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, channels, rate),
        *(rate * 2 * channels, 2 * channels, 16, b"data", len(data)),
    )
    return header + data


def dominant_hz(audio: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def assert_tone(audio: np.ndarray, seconds: float, extra_s: float, amplitude: float = 0.5) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert seconds - 0.01 <= len(audio) / RATE <= seconds + extra_s + 0.01
    middle = audio[len(audio) // 4 : 3 * len(audio) // 4]
    assert dominant_hz(middle) == pytest.approx(TONE_HZ, abs=5)
    assert rms(middle) == pytest.approx(amplitude / np.sqrt(2), rel=0.1)
    assert np.abs(audio).max() <= 1.0


# ------------------------------------------------------------------------------- containers

# (container, codec, codec options, extra seconds the codec may add: encoder delay and padding)
CODECS = [
    ("wav", "pcm_s16le", None, 0.0),
    ("wav", "pcm_u8", None, 0.0),
    ("wav", "pcm_f32le", None, 0.0),
    ("wav", "pcm_s24le", None, 0.0),
    ("aiff", "pcm_s16be", None, 0.0),
    ("mp3", "libmp3lame", None, 0.1),
    ("ogg", "libopus", None, 0.0),
    ("flac", "flac", None, 0.0),
    ("ipod", "aac", None, 0.1),  # .m4a
    ("adts", "aac", None, 0.35),  # no priming info: up to about 2.5 frames of 128 ms at 8 kHz
    ("webm", "libopus", None, 0.0),
    ("matroska", "flac", None, 0.0),
    ("ipod", "alac", None, 0.0),
    ("caf", "pcm_s16le", None, 0.0),
]
SHAPES = [(8000, 1), (16000, 1), (44100, 2), (48000, 2)]


@pytest.mark.parametrize(("container", "codec", "options", "extra_s"), CODECS, ids=lambda v: str(v))
@pytest.mark.parametrize(("rate", "channels"), SHAPES, ids=lambda v: str(v))
def test_every_format_decodes_to_16k_mono(
    container: str, codec: str, options: dict[str, str] | None, extra_s: float, rate: int, channels: int
) -> None:
    rates = av.Codec(codec, "w").audio_rates
    if rates and rate not in rates:
        rate = 48000  # Opus takes 8/12/16/24/48 kHz only
    planes = np.tile(tone(rate), (channels, 1))
    data = encode_file(planes, rate, container, codec, options)
    assert_tone(decode_audio(data, max_seconds=10), SECONDS, extra_s)


def test_ogg_vorbis_decodes() -> None:
    # FFmpeg's own Vorbis encoder is experimental and stereo-only; the decoder is not.
    planes = np.tile(tone(44100), (2, 1))
    data = encode_file(planes, 44100, "ogg", "vorbis", {"strict": "experimental"})
    assert_tone(decode_audio(data, max_seconds=10), SECONDS, 0.0)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "pcm"])
@pytest.mark.parametrize("rate", [22050, 24000])
def test_voxserve_encoder_output_decodes(fmt: str, rate: int) -> None:
    encoder = make_encoder(fmt, rate)
    data = encoder.encode(tone(rate)) + encoder.finish()
    assert_tone(decode_audio(data, max_seconds=10), SECONDS, 0.15)


def test_stereo_is_averaged() -> None:
    left = tone(RATE)
    both = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    audio = decode_audio(wav_bytes(both, RATE, channels=2), max_seconds=10)
    np.testing.assert_allclose(audio, left / 2, atol=1 / 32767)
    opposite = np.stack([left, -left], axis=1).reshape(-1)
    assert np.abs(decode_audio(wav_bytes(opposite, RATE, channels=2), max_seconds=10)).max() < 1e-4


def test_8k_is_upsampled_exactly_twice_as_long() -> None:
    audio = decode_audio(wav_bytes(tone(8000), 8000), max_seconds=10)
    assert len(audio) == 2 * round(SECONDS * 8000)


def test_target_rate() -> None:
    audio = decode_audio(wav_bytes(tone(RATE), RATE), max_seconds=10, target_rate=24000)
    assert len(audio) == round(SECONDS * 24000)
    assert dominant_hz(audio, 24000) == pytest.approx(TONE_HZ, abs=5)


def test_a_streamed_wav_of_unknown_length_decodes() -> None:
    # voxserve's streaming WAV says 0xFFFFFFFF bytes: that must not read as 37 hours.
    data = wav_header(RATE, None) + wav_bytes(tone(RATE), RATE)[44:]
    assert_tone(decode_audio(data, max_seconds=5), SECONDS, 0.0)


# ----------------------------------------------------------------------------- truncation


def test_a_truncated_wav_decodes_what_is_there() -> None:
    full = wav_bytes(tone(RATE, 3.0), RATE)
    cut = full[: 44 + 2 * RATE + 1]  # one second and half a sample; the header promises three
    audio = decode_audio(cut, max_seconds=10)
    assert len(audio) == RATE
    np.testing.assert_allclose(audio, tone(RATE, 1.0), atol=1 / 32767)


def test_a_wav_header_without_data_is_empty() -> None:
    for data in (wav_header(RATE, 0), wav_header(RATE, 32000)):
        with pytest.raises(InvalidRequest) as err:
            decode_audio(data, max_seconds=10)
        assert (err.value.status, err.value.code) == (400, "empty_audio")


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_truncated_compressed_files_decode_what_is_there(fmt: str) -> None:
    encoder = make_encoder(fmt, RATE)
    data = encoder.encode(tone(RATE, 4.0)) + encoder.finish()
    audio = decode_audio(data[: len(data) * 3 // 4], max_seconds=10)
    assert 1.0 < len(audio) / RATE < 3.5


# --------------------------------------------------------------------------------- refusals


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\xff\x00" * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("speech.wav", wav_bytes(tone(RATE), RATE))
    return buf.getvalue()


def _video_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


NOT_AUDIO = {
    "text": b"Hello, this is a transcript, not audio.\n" * 20,
    "json": b'{"audio": "hello.wav"}',
    "png": _png(),
    "zip": _zip(),
    "video_only_mp4": _video_only_mp4(),
    "junk": np.random.default_rng(7).bytes(20_000),
    "one_byte": b"\x00",
    "riff_not_wave": b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(64),
}


@pytest.mark.parametrize("name", list(NOT_AUDIO))
def test_what_is_not_audio_is_415(name: str) -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        decode_audio(NOT_AUDIO[name], max_seconds=10)
    assert (err.value.status, err.value.code, err.value.param) == (415, "unsupported_media_type", "file")
    assert isinstance(err.value, InvalidRequest)
    assert err.value.to_dict()["error"]["type"] == "invalid_request_error"


def test_a_script_naming_other_files_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg's concat demuxer would happily read secret.wav from the server's working directory.
    (tmp_path / "secret.wav").write_bytes(wav_bytes(tone(RATE), RATE))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedMediaType):
        decode_audio(b"ffconcat version 1.0\nfile secret.wav\n", max_seconds=10)


def test_zero_bytes_is_empty_audio() -> None:
    with pytest.raises(InvalidRequest) as err:
        decode_audio(b"", max_seconds=10)
    assert (err.value.status, err.value.code) == (400, "empty_audio")


def test_the_limit_is_exact_on_decoded_audio() -> None:
    data = wav_bytes(tone(RATE, 2.0), RATE)
    assert len(decode_audio(data, max_seconds=2.0)) == 2 * RATE
    with pytest.raises(TextTooLong) as err:
        decode_audio(data, max_seconds=1.99)
    assert (err.value.status, err.value.code) == (413, "audio_too_long")


# -------------------------------------------------------------------------- long files, fast


@pytest.fixture(scope="module")
def half_hour_flac() -> bytes:
    return silence_flac(1800)


def test_a_declared_24h_file_is_refused_before_decoding(half_hour_flac: bytes) -> None:
    day = with_total_samples(half_hour_flac, 8000 * 86400)
    started = time.process_time()  # CPU time: other load on the machine does not count
    with pytest.raises(TextTooLong) as err:
        decode_audio(day, max_seconds=60)
    assert time.process_time() - started < scaled(0.1)  # nothing decoded (it takes about 1 ms)
    assert (err.value.status, err.value.code) == (413, "audio_too_long")


def test_a_long_file_of_unknown_length_stops_at_the_limit(half_hour_flac: bytes) -> None:
    unknown = with_total_samples(half_hour_flac, 0)  # no declared length: only decoding can tell
    timings = []
    for limit in (30, 300):
        started = time.process_time()  # CPU time: other load on the machine does not count
        with pytest.raises(TextTooLong):
            decode_audio(unknown, max_seconds=limit)
        timings.append(time.process_time() - started)
    # The cost follows the limit, not the file: decoding stops at the first frame past it.
    assert timings[0] < scaled(0.5) and timings[0] < timings[1] / 4


def test_the_declared_check_leaves_a_margin_for_estimates() -> None:
    # A header 5% over the limit is left to the decoded-sample count, which is exact.
    slightly = with_total_samples(silence_flac(10), int(8000 * 10.5))
    assert len(decode_audio(slightly, max_seconds=10.1)) == pytest.approx(10 * RATE, abs=4608 * 2)


def test_a_long_opus_file_is_refused_quickly() -> None:
    encoder = make_encoder("opus", 16000)
    silence = np.zeros(16000 * 10, np.float32)
    data = b"".join(encoder.encode(silence) for _ in range(12)) + encoder.finish()  # 2 minutes
    started = time.process_time()  # CPU time: other load on the machine does not count
    with pytest.raises(TextTooLong):
        decode_audio(data, max_seconds=30)
    assert time.process_time() - started < scaled(0.2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        decode_audio(b"x", max_seconds=0)


# -------------------------------------------------------------------------------------- PCM


def test_linear16() -> None:
    samples = np.array([0, 16384, -16384, 32767, -32768], dtype="<i2")
    audio = decode_pcm(samples.tobytes(), encoding="linear16", sample_rate=RATE)
    np.testing.assert_allclose(audio, [0, 16384 / 32767, -16384 / 32767, 1, -1], atol=1e-6)
    assert audio.dtype == np.float32


def test_linear16_is_resampled() -> None:
    data = np.round(tone(8000) * 32767).astype("<i2").tobytes()
    audio = decode_pcm(data, encoding="linear16", sample_rate=8000)
    assert len(audio) == 2 * round(SECONDS * 8000)
    assert dominant_hz(audio) == pytest.approx(TONE_HZ, abs=5)


def test_float32_is_clipped() -> None:
    data = np.array([0.25, -0.5, 1.5, -7.0, 999.0], dtype="<f4").tobytes()
    audio = decode_pcm(data, encoding="float32", sample_rate=RATE)
    np.testing.assert_array_equal(audio, np.array([0.25, -0.5, 1.0, -1.0, 1.0], dtype=np.float32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_float32_non_finite_is_refused(bad: float) -> None:
    data = np.array([0.1, bad, 0.2], dtype="<f4").tobytes()
    with pytest.raises(InvalidValue) as err:
        decode_pcm(data, encoding="float32", sample_rate=RATE)
    assert (err.value.status, err.value.code) == (422, "non_finite_samples")


@pytest.mark.parametrize(("encoding", "size"), [("linear16", 3), ("float32", 6), ("float32", 1)])
def test_misaligned_pcm(encoding: str, size: int) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode_pcm(bytes(size), encoding=encoding, sample_rate=RATE)
    assert (err.value.status, err.value.code) == (400, "misaligned_pcm")


@pytest.mark.parametrize("encoding", ["linear16", "float32", "mulaw", "alaw"])
def test_empty_pcm_is_empty(encoding: str) -> None:
    assert len(decode_pcm(b"", encoding=encoding, sample_rate=8000)) == 0


def test_unknown_encoding_and_bad_rates() -> None:
    with pytest.raises(InvalidValue) as err:
        decode_pcm(b"\x00\x00", encoding="opus", sample_rate=RATE)
    assert (err.value.code, err.value.param) == ("unsupported_encoding", "encoding")
    for rate in (0, -8000, 999, 1_000_000):
        with pytest.raises(InvalidValue) as err:
            decode_pcm(b"\x00\x00", encoding="linear16", sample_rate=rate)
        assert (err.value.code, err.value.param) == ("invalid_sample_rate", "sample_rate")


def test_g711_known_values() -> None:
    # ITU-T G.711 (and the Sun reference code): u-law codes are bit-inverted, A-law's even bits are.
    assert (MULAW_TO_S16[0xFF], MULAW_TO_S16[0x7F], MULAW_TO_S16[0x00], MULAW_TO_S16[0x80]) == (
        0,
        0,
        -32124,
        32124,
    )
    assert (MULAW_TO_S16[0xF0], MULAW_TO_S16[0x70]) == (120, -120)
    assert (ALAW_TO_S16[0xD5], ALAW_TO_S16[0x55], ALAW_TO_S16[0xAA], ALAW_TO_S16[0x2A]) == (
        8,
        -8,
        32256,
        -32256,
    )
    for table in (MULAW_TO_S16, ALAW_TO_S16):
        assert table.dtype == np.int16 and len(table) == 256
        np.testing.assert_array_equal(table, -table[np.arange(256) ^ 0x80])  # the sign bit mirrors
        assert len(set(table.tolist())) == (255 if table is MULAW_TO_S16 else 256)  # u-law has two zeros
    with pytest.raises(ValueError, match="read-only"):
        MULAW_TO_S16[0] = 1


def test_g711_matches_audioop_where_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # audioop is gone in Python 3.13
        audioop = pytest.importorskip("audioop")
    codes = bytes(range(256))
    np.testing.assert_array_equal(MULAW_TO_S16, np.frombuffer(audioop.ulaw2lin(codes, 2), "<i2"))
    np.testing.assert_array_equal(ALAW_TO_S16, np.frombuffer(audioop.alaw2lin(codes, 2), "<i2"))


@pytest.mark.parametrize(("encoding", "codec"), [("mulaw", "pcm_mulaw"), ("alaw", "pcm_alaw")])
def test_g711_matches_ffmpeg(encoding: str, codec: str) -> None:
    # Encode a tone with FFmpeg's G.711 encoder, then expand the bytes ourselves and with FFmpeg.
    data = encode_file(tone(8000)[None, :], 8000, "wav", codec)
    payload = data[data.index(b"data") + 8 :]
    ours = decode_pcm(payload, encoding=encoding, sample_rate=8000, target_rate=8000)
    np.testing.assert_allclose(
        ours * 32768, decode_audio(data, max_seconds=10, target_rate=8000) * 32768, atol=0.5
    )
    assert dominant_hz(decode_pcm(payload, encoding=encoding, sample_rate=8000)) == pytest.approx(
        TONE_HZ, abs=5
    )


def test_errors_are_voxserve_errors() -> None:
    for call in (
        lambda: decode_audio(b"", max_seconds=1),
        lambda: decode_audio(b"not audio at all", max_seconds=1),
        lambda: decode_pcm(b"\x00", encoding="linear16", sample_rate=RATE),
    ):
        with pytest.raises(VoxserveError):
            call()


def _pcm_wav(rate: int = 16000, channels: int = 1, width: int = 2, frames: int = 1600) -> bytes:
    data = bytes(frames * channels * width)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * width, channels * width, width * 8)
    return (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", len(data)) + data
    )  # fmt: skip


@pytest.mark.parametrize(
    "header",
    [
        {"width": 8},  # 64-bit integer PCM: PyAV has no numpy conversion (was a 500)
        {"rate": 1},
        {"rate": 10_000_000},
        {"channels": 9},
        {"channels": 0},
    ],
    ids=["s64", "1Hz", "10MHz", "9ch", "0ch"],
)
def test_a_stream_voxserve_cannot_take_is_unsupported_format(header: dict[str, int]) -> None:
    with pytest.raises(InvalidValue) as info:
        decode_audio(_pcm_wav(**header), max_seconds=60)
    assert info.value.code == "unsupported_format" and info.value.status == 422


@pytest.mark.parametrize("header", [{"width": 1}, {"width": 3}, {"width": 4}, {"channels": 8, "rate": 8000}])
def test_ordinary_pcm_wavs_decode(header: dict[str, int]) -> None:
    assert len(decode_audio(_pcm_wav(**header), max_seconds=60)) > 0


@pytest.mark.parametrize(
    "text", ["AAAA=", "AAA", "AA=A", "AAAA AAAA", "data:audio/wav;base64,AAAA", "AA-_", "!!!!", "AAAÀ"]
)
def test_decode_base64_is_strict(text: str) -> None:
    import binascii

    from voxserve.protocol.json import decode_base64

    with pytest.raises(binascii.Error):
        decode_base64(text)


def test_decode_base64_takes_valid_base64() -> None:
    from voxserve.protocol.json import decode_base64

    assert decode_base64("") == b""
    assert decode_base64("AAAA") == b"\x00\x00\x00"
    assert decode_base64("AA==") == b"\x00"
    with pytest.raises(TypeError):
        decode_base64(123)


def test_a_codec_without_a_decoder_is_415() -> None:
    # WAV format tag 0x000C: FFmpeg opens the file but gives its stream no codec context (found by
    # the mutation fuzzer: reading the stream's rate then raised AttributeError).
    data = bytearray(_pcm_wav())
    data[20:22] = struct.pack("<H", 0x000C)
    data[22:24] = struct.pack("<H", 0)
    container = av.open(io.BytesIO(bytes(data)))
    try:
        assert container.streams.audio[0].codec_context is None
    finally:
        container.close()
    with pytest.raises(UnsupportedMediaType):
        decode_audio(bytes(data), max_seconds=60)


# ------------------------------------------------------------------ work: samples x channels


def _count_decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Samples (per channel, at the file's rate) the decoder has taken, frame by frame."""
    counts: list[int] = []
    real = decode_module._Collector.add

    def add(self: object, frame: av.AudioFrame) -> None:
        counts.append(frame.samples)
        real(self, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(decode_module._Collector, "add", add)
    return counts


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
def test_decoding_work_is_bounded_by_samples_times_channels(
    monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    # 3 s at 384 kHz with 8 channels is the work of 32 s of 48 kHz stereo: over a 10 s limit, though
    # only 3 s long. Before, such a file was decoded up to the length limit (19 s of CPU for 30 min).
    rate, channels = 384_000, 8
    flac = silence_flac(3, rate, "7.1")
    counts = _count_decoded(monkeypatch)
    with pytest.raises(TextTooLong) as err:
        decode_audio(flac if declared else with_total_samples(flac, 0), max_seconds=10)
    assert (err.value.status, err.value.code) == (413, "audio_too_large")
    budget = 10 * decode_module.WORK_PER_SECOND // channels  # samples per channel
    if declared:
        assert counts == []  # refused on the header, nothing decoded
    else:
        assert budget < sum(counts) <= budget + max(counts)  # stopped at the first frame past it


def test_48k_stereo_up_to_the_limit_is_not_too_much_work() -> None:
    wav = wav_bytes(tone(48_000, 2.0 * 2), 48_000, 2)  # 2 s of interleaved stereo
    assert len(decode_audio(wav, max_seconds=2.0)) == 2 * RATE
    with pytest.raises(TextTooLong) as err:
        decode_audio(wav_bytes(tone(96_000, 2.0 * 2), 96_000, 2), max_seconds=2.0)
    assert err.value.code == "audio_too_large"


@pytest.mark.parametrize(
    ("fmt", "codec", "rate"),
    [("mp3", "mp3", 16000), ("ogg", "libopus", 48000)],
    ids=["mp3-8kbps", "opus-6kbps"],
)
def test_long_low_bitrate_silence_is_refused_with_a_bounded_decode(
    monkeypatch: pytest.MonkeyPatch, fmt: str, codec: str, rate: int
) -> None:
    # Two minutes in 60-90 kB; the limit is 20 s. Refused on the (estimated) header, or decoding
    # stops at the first frame past the limit: never the whole file.
    data = silence_encoded(120, fmt, codec, rate, 6000 if codec == "libopus" else 8000)
    counts = _count_decoded(monkeypatch)
    with pytest.raises(TextTooLong) as err:
        decode_audio(data, max_seconds=20)
    assert err.value.code == "audio_too_long"
    assert sum(counts) <= 20 * rate + max(counts, default=0)
