"""Decoding what clients upload into float32 mono audio at the STT rate.

:func:`decode_audio` takes a whole file in any container and codec FFmpeg (PyAV) knows: WAV, MP3,
Ogg/Opus, Ogg/Vorbis, FLAC, M4A/AAC, WebM, ... :func:`decode_pcm` takes headerless samples as the
streaming protocols send them: ``linear16``, ``float32``, ``mulaw`` and ``alaw`` (G.711).

Rules, each with a stable error code:

- 0 bytes, or a file that decodes to no samples: :class:`InvalidRequest` ``empty_audio`` (400).
- Bytes that are not decodable audio (text, an image, an archive, a video without sound, junk):
  :class:`UnsupportedMediaType` ``unsupported_media_type`` (415).
- A stream FFmpeg opens but voxserve cannot take: a rate outside 1000-384000 Hz, more than 8
  channels, or a sample format with no numpy conversion (64-bit integers):
  :class:`InvalidValue` ``unsupported_format`` (422). (A header so broken FFmpeg cannot open it,
  such as a rate of 0 or no channels, is 415.)
- More than ``max_seconds`` of audio: :class:`TextTooLong` ``audio_too_long`` (413). A file whose
  header already declares too long a duration is refused before anything is decoded; otherwise
  decoding stops at the first frame past the limit, so a 24-hour file costs no more than the limit.
  Declared durations are estimates for some formats (MP3 without a Xing header is guessed from its
  bit rate), so the up-front check leaves a margin; the decoded samples enforce the exact limit.
- More decoding work than ``max_seconds`` of 48 kHz stereo (``WORK_PER_SECOND`` samples × channels
  per second of the limit): :class:`TextTooLong` ``audio_too_large`` (413). The cost of decoding is
  in the samples of every channel at the file's own rate, not in the seconds: 30 minutes at 384 kHz
  with 8 channels is 16 times the work of 30 minutes of 48 kHz stereo (19 s of CPU before this
  bound, and the file was refused only then). Checked on the header like the length, and on every
  decoded frame.
- A truncated file (an upload cut short, or a WAV header promising more data than follows) decodes
  to the audio that is there; packets that fail to decode are skipped. Only when nothing decodes is
  it an error: 415 if the decoder failed, ``empty_audio`` if there simply was no audio.

Channels are averaged to mono (FFmpeg's own downmix would add 3 dB to stereo and could clip) and
the rate is converted with libsoxr. Uploads never make FFmpeg open anything else: a playlist or an
``ffconcat`` script naming other files is refused, because its demuxer would read those files from
the server's disk.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from voxserve.audio.pcm import STT_SAMPLE_RATE, FloatAudio, s16_to_float
from voxserve.audio.resample import Resampler
from voxserve.errors import InvalidRequest, InvalidValue, TextTooLong, UnsupportedMediaType

__all__ = [
    "ALAW_TO_S16",
    "WORK_PER_SECOND",
    "MULAW_TO_S16",
    "PCM_ENCODINGS",
    "PcmConverter",
    "decode_audio",
    "decode_pcm",
]

WORK_PER_SECOND = 48_000 * 2
"""Decoding work (samples × channels at the file's rate) allowed per second of ``max_seconds``: the
work of 48 kHz stereo, the richest format speech usually comes in."""

PCM_ENCODINGS: tuple[str, ...] = ("linear16", "float32", "mulaw", "alaw")
"""Headerless encodings :func:`decode_pcm` takes (little-endian where it matters)."""

_MIN_RATE, _MAX_RATE = 1000, 384_000
_DECLARED_MARGIN = 1.1
_DECLARED_SLACK_S = 1.0
_BATCH_SAMPLES = 16384
"""Decoded samples gathered before one resampler call."""
_MAX_PACKET_ERRORS = 100
"""Packets that fail to decode before the file is given up as not audio at all."""

# Nested opens (playlists, ffconcat scripts, image sequences) need a protocol; an upload comes from
# memory and needs none, so no protocol is allowed.
_OPEN_OPTIONS = {"protocol_whitelist": "none"}


# ------------------------------------------------------------------------------------- G.711


def _mulaw_table() -> npt.NDArray[np.int16]:
    """ITU-T G.711 u-law expansion: code -> 14-bit linear value scaled to 16 bits."""
    u = 0xFF - np.arange(256, dtype=np.int32)  # codes are sent bit-inverted
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84  # 0x84: the bias of 33, times 4
    table = np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)
    table.flags.writeable = False
    return table


def _alaw_table() -> npt.NDArray[np.int16]:
    """ITU-T G.711 A-law expansion: code -> 13-bit linear value scaled to 16 bits."""
    a = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are sent inverted
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 0x08,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    table = np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)  # sign bit set: positive
    table.flags.writeable = False
    return table


MULAW_TO_S16 = _mulaw_table()
"""The 256 G.711 u-law codes as 16-bit linear samples (0xFF -> 0, 0x00 -> -32124)."""
ALAW_TO_S16 = _alaw_table()
"""The 256 G.711 A-law codes as 16-bit linear samples (0xD5 -> 8, 0x2A -> -32256)."""


# --------------------------------------------------------------------------------------- PCM


def _check_rate(rate: int, param: str) -> None:
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise InvalidValue(
            f"{param} must be between {_MIN_RATE} and {_MAX_RATE} Hz", code="invalid_sample_rate", param=param
        )


def decode_pcm(data: bytes, *, encoding: str, sample_rate: int, target_rate: int = 16000) -> FloatAudio:
    """Headerless mono samples in ``encoding`` at ``sample_rate`` -> float32 at ``target_rate``.

    ``linear16`` is s16le, ``float32`` is f32le (NaN or infinity is refused with
    ``non_finite_samples``; other values are clipped to [-1, 1]), ``mulaw`` and ``alaw`` are G.711
    bytes. A byte count that splits a sample raises ``misaligned_pcm``. Empty ``data`` gives an empty
    array. Each call resamples on its own, so split a stream only at points where a click is fine, or
    resample the stream with one :class:`~voxserve.audio.resample.Resampler`.
    """
    _check_rate(sample_rate, "sample_rate")
    if encoding == "linear16":
        samples = s16_to_float(data)
    elif encoding == "float32":
        samples = _f32_to_float(data)
    elif encoding in ("mulaw", "alaw"):
        table = MULAW_TO_S16 if encoding == "mulaw" else ALAW_TO_S16
        samples = table[np.frombuffer(data, dtype=np.uint8)].astype(np.float32)
        samples *= np.float32(1.0 / 32768.0)
    else:
        raise InvalidValue(
            f"unsupported encoding {encoding!r}; choose one of {', '.join(PCM_ENCODINGS)}",
            code="unsupported_encoding",
            param="encoding",
        )
    if sample_rate == target_rate or len(samples) == 0:
        return samples
    resampler = Resampler(sample_rate, target_rate)
    return np.concatenate([resampler.process(samples), resampler.flush()])


class PcmConverter:
    """Headerless client audio (``encoding`` at ``sample_rate``) to 16 kHz float32, chunk by chunk,
    with one stateful resampler per stream (no clicks where a client cut its frames).

    Calls must come in stream order; a call may run in a worker thread (one at a time).
    """

    def __init__(self, encoding: str, sample_rate: int, target_rate: int = STT_SAMPLE_RATE) -> None:
        self.encoding = encoding
        self.sample_rate = sample_rate
        self._resampler = Resampler(sample_rate, target_rate)

    def __call__(self, data: bytes) -> FloatAudio:
        """Decode and resample the next chunk (raises ``misaligned_pcm``, ``non_finite_samples``)."""
        rate = self.sample_rate
        audio = decode_pcm(data, encoding=self.encoding, sample_rate=rate, target_rate=rate)
        return self._resampler.process(audio)


def _f32_to_float(data: bytes) -> FloatAudio:
    if len(data) % 4:
        raise InvalidRequest(
            "float32 PCM data must be whole 4-byte samples: the byte count is not a multiple of 4",
            code="misaligned_pcm",
        )
    samples = np.frombuffer(data, dtype="<f4")
    if not np.isfinite(samples).all():
        raise InvalidValue("float32 PCM data contains NaN or infinity", code="non_finite_samples")
    clipped: FloatAudio = np.clip(samples, -1.0, 1.0).astype(np.float32)
    return clipped


# ------------------------------------------------------------------------------------- files


def _too_long(max_seconds: float) -> TextTooLong:
    return TextTooLong(f"the audio is longer than the limit of {max_seconds:g} s", code="audio_too_long")


def _too_much_work(max_seconds: float) -> TextTooLong:
    return TextTooLong(
        f"decoding the audio is more work than {max_seconds:g} s of 48 kHz stereo (the limit); send it "
        "at a lower sample rate or with fewer channels",
        code="audio_too_large",
    )


def _not_audio(reason: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"the upload is not audio voxserve can decode: {reason}", param="file")


def _empty() -> InvalidRequest:
    return InvalidRequest("the audio file contains no audio", code="empty_audio", param="file")


def decode_audio(data: bytes, *, max_seconds: float, target_rate: int = 16000) -> FloatAudio:
    """Decode a whole audio file to float32 mono at ``target_rate``, at most ``max_seconds`` long.

    See the module docstring for the rules and errors.
    """
    if max_seconds <= 0 or target_rate <= 0:
        raise ValueError("max_seconds and target_rate must be positive")
    if not data:
        raise _empty()
    try:
        container: Any = av.open(io.BytesIO(data), mode="r", options=_OPEN_OPTIONS)
    except (av.error.FFmpegError, ValueError, OSError):  # the FFmpeg errors are ValueErrors and OSErrors
        raise _not_audio("unknown or broken format") from None
    try:
        if not container.streams.audio:
            raise _not_audio("it has no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # a codec FFmpeg has no decoder for
            raise _not_audio("no decoder for its codec")
        _check_stream_format(stream)
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds * _DECLARED_MARGIN + _DECLARED_SLACK_S:
            raise _too_long(max_seconds)
        work = declared * int(stream.rate) * int(stream.channels) if declared is not None else 0.0
        if work > max_seconds * WORK_PER_SECOND * _DECLARED_MARGIN + _DECLARED_SLACK_S * WORK_PER_SECOND:
            raise _too_much_work(max_seconds)
        return _decode_stream(container, stream, max_seconds, target_rate)
    finally:
        container.close()


_MAX_CHANNELS = 8
_SAMPLE_FORMATS = frozenset({"u8", "u8p", "s16", "s16p", "s32", "s32p", "flt", "fltp", "dbl", "dblp"})
"""Decoded sample formats that PyAV converts to numpy arrays."""


def _check_stream_format(stream: Any) -> None:
    """422 ``unsupported_format`` for a rate, channel count or sample format voxserve cannot take."""
    rate = int(stream.rate or 0)
    channels = int(stream.channels or 0)
    sample_format = stream.format.name if stream.format is not None else None
    problem = None
    if not _MIN_RATE <= rate <= _MAX_RATE:
        problem = f"a sample rate of {rate} Hz (voxserve takes {_MIN_RATE} to {_MAX_RATE} Hz)"
    elif not 1 <= channels <= _MAX_CHANNELS:
        problem = f"{channels} channels (voxserve takes 1 to {_MAX_CHANNELS})"
    elif sample_format is not None and sample_format not in _SAMPLE_FORMATS:
        problem = f"the sample format {sample_format!r}"
    if problem is not None:
        raise InvalidValue(f"the audio has {problem}", code="unsupported_format", param="file")


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """The duration the headers state (or FFmpeg estimated), if any."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return None


def _decode_stream(container: Any, stream: Any, max_seconds: float, target_rate: int) -> FloatAudio:
    collector = _Collector(max_seconds, target_rate)
    errors = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except (av.error.FFmpegError, ValueError, OSError):
            # A damaged or cut-off packet: skip it, as players do, unless nothing ever decodes.
            errors += 1
            if errors > _MAX_PACKET_ERRORS and not collector.samples:
                break
            continue
        for frame in frames:
            if frame.samples > 0 and frame.sample_rate > 0:
                collector.add(frame)
    audio = collector.finish()
    if len(audio) == 0:
        raise _not_audio("the audio stream does not decode") if errors else _empty()
    return audio


class _Collector:
    """Counts decoded samples against the limit, downmixes them and resamples them in batches.

    Batching matters: WAV packets hold about 2000 samples, and a resampler call per packet costs more
    than the conversion itself.
    """

    def __init__(self, max_seconds: float, target_rate: int) -> None:
        self._max_seconds = max_seconds
        self._limit = Fraction(max_seconds)  # exact, so a file of exactly max_seconds passes
        self._target_rate = target_rate
        self._done = Fraction(0)  # seconds at earlier sample rates (a chained stream may change)
        self._resampler: Resampler | None = None
        self._count = 0  # samples at the current rate
        self._allowed = 0  # samples the current rate may have before the limit is passed
        self._batch: list[FloatAudio] = []
        self._batch_samples = 0
        self._pieces: list[FloatAudio] = []
        self._work = 0
        self._work_limit = math.floor(max_seconds * WORK_PER_SECOND)
        self.samples = 0
        """Samples decoded so far, at their own rates."""

    def add(self, frame: Any) -> None:
        rate = int(frame.sample_rate)
        if self._resampler is None or self._resampler.in_rate != rate:
            self._end_rate()
            self._resampler = Resampler(rate, self._target_rate)
            self._allowed = math.floor((self._limit - self._done) * rate)
        self._count += frame.samples
        self.samples += frame.samples
        if self._count > self._allowed:
            raise _too_long(self._max_seconds)
        self._work += frame.samples * max(1, len(frame.layout.channels))
        if self._work > self._work_limit:
            raise _too_much_work(self._max_seconds)
        self._batch.append(_frame_to_mono(frame))
        self._batch_samples += frame.samples
        if self._batch_samples >= _BATCH_SAMPLES:
            self._resample_batch()

    def _resample_batch(self) -> None:
        if self._batch and self._resampler is not None:
            self._pieces.append(self._resampler.process(np.concatenate(self._batch)))
        self._batch.clear()
        self._batch_samples = 0

    def _end_rate(self) -> None:
        if self._resampler is not None:
            self._resample_batch()
            self._pieces.append(self._resampler.flush())
            self._done += Fraction(self._count, self._resampler.in_rate)
        self._count = 0

    def finish(self) -> FloatAudio:
        """All the audio, at the target rate, clipped to [-1, 1] (lossy decoders overshoot a little)."""
        self._end_rate()
        if not self._pieces:
            return np.zeros(0, dtype=np.float32)
        out: FloatAudio = np.clip(np.concatenate(self._pieces), -1.0, 1.0).astype(np.float32, copy=False)
        return out


_INT_SCALES: dict[str, tuple[float, float]] = {
    # dtype -> (offset, scale): float = (x - offset) * scale
    "uint8": (128.0, 1.0 / 128.0),
    "int16": (0.0, 1.0 / 32768.0),
    "int32": (0.0, 1.0 / 2147483648.0),
    "int64": (0.0, 1.0 / 9223372036854775808.0),
}


def _frame_to_mono(frame: Any) -> FloatAudio:
    """One decoded frame, any sample format and layout, as float32 mono (the channels' mean)."""
    if frame.format.name not in _SAMPLE_FORMATS:  # a stream whose format changed after its header
        raise InvalidValue(
            f"the audio has the sample format {frame.format.name!r}", code="unsupported_format", param="file"
        )
    channels = max(1, len(frame.layout.channels))
    raw = np.asarray(frame.to_ndarray())
    if frame.format.is_planar:  # one row per channel
        planes = raw.reshape(channels, -1)[:, : frame.samples]
    else:  # one row of interleaved samples
        planes = raw.reshape(-1)[: frame.samples * channels].reshape(-1, channels).T
    # Adding channel rows one by one is several times faster than numpy's mean over a short axis.
    mono = planes[0].astype(np.float32)
    for row in planes[1:]:
        mono += row
    offset, scale = _INT_SCALES.get(raw.dtype.name, (0.0, 1.0))
    if offset:
        mono -= np.float32(offset * channels)
    mono *= np.float32(scale / channels)
    out: FloatAudio = mono
    return out
