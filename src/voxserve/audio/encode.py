"""Streaming audio encoders: float32 mono in, container bytes out, chunk by chunk.

A response gets exactly one encoder from :func:`make_encoder`. Each :meth:`StreamEncoder.encode` call
returns the bytes that became ready, so the HTTP layer can forward them at once; :meth:`finish`
flushes the codec and closes the container (final Ogg page, last FLAC/MP3 frames).

``pcm`` and ``wav`` are written here directly. The compressed formats go through PyAV (FFmpeg) into
an in-memory, non-seekable sink: non-seekable because the bytes are already on the wire, so muxers
must not try to go back and patch headers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import av
import numpy as np
from av.audio.stream import AudioStream

from voxserve.audio.pcm import FloatAudio, float_to_s16, float_to_s16_array
from voxserve.audio.resample import Resampler
from voxserve.errors import InvalidValue

__all__ = ["FORMATS", "MEDIA_TYPES", "StreamEncoder", "make_encoder", "wav_header"]

FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
"""Output formats, as the OpenAI ``response_format`` names them."""

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Opus in an Ogg container
    "aac": "audio/aac",  # ADTS frames
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",  # raw s16le mono, no header
}

_UNKNOWN_SIZE = 0xFFFFFFFF
"""The RIFF size value that streaming readers take as "until end of stream"."""


class StreamEncoder(Protocol):
    """Encodes one response's audio, in order, chunk by chunk."""

    def encode(self, audio: FloatAudio) -> bytes:
        """Encode the next float32 mono chunk; return the bytes ready now (possibly ``b""``)."""
        ...

    def finish(self) -> bytes:
        """Flush the codec, close the container and return the remaining bytes."""
        ...


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte RIFF/WAVE header for s16le mono audio.

    ``data_bytes=None`` (or a size WAV cannot express) writes ``0xFFFFFFFF`` as both the RIFF and the
    data size: the convention for a stream of unknown length.
    """
    if data_bytes is None or data_bytes > _UNKNOWN_SIZE - 36:
        riff_size = data_size = _UNKNOWN_SIZE
    else:
        riff_size, data_size = 36 + data_bytes, data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,  # fmt chunk size
        1,  # PCM
        1,  # channels
        sample_rate,
        sample_rate * 2,  # byte rate
        2,  # block align
        16,  # bits per sample
        b"data",
        data_size,
    )


def make_encoder(fmt: str, sample_rate: int, *, streaming: bool = True) -> StreamEncoder:
    """A fresh encoder for one response: ``fmt`` is one of :data:`FORMATS`.

    Input is float32 mono at ``sample_rate``. Codecs that cannot take that rate (Opus at 22050 Hz)
    resample internally to 48000 Hz. ``streaming`` only matters for ``wav``: when False the whole file
    is buffered so :meth:`~StreamEncoder.finish` can return it with exact sizes in the header.
    Codec set-up errors surface here, before any byte has been sent.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if fmt == "pcm":
        return _PcmEncoder()
    if fmt == "wav":
        return _WavEncoder(sample_rate, streaming=streaming)
    spec = _AV_SPECS.get(fmt)
    if spec is None:
        raise InvalidValue(
            f"Unsupported response_format {fmt!r}; choose one of {', '.join(FORMATS)}",
            code="unsupported_format",
            param="response_format",
        )
    return _AVEncoder(spec, sample_rate)


def _as_mono(audio: FloatAudio) -> FloatAudio:
    return np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)


class _PcmEncoder:
    """Raw s16le: nothing to buffer, nothing to finish."""

    def __init__(self) -> None:
        self._finished = False

    def encode(self, audio: FloatAudio) -> bytes:
        _check_open(self._finished)
        return float_to_s16(_as_mono(audio))

    def finish(self) -> bytes:
        self._finished = True
        return b""


class _WavEncoder:
    """WAV: streamed with "unknown size" sentinels, or buffered with exact sizes."""

    def __init__(self, sample_rate: int, *, streaming: bool) -> None:
        self._rate = sample_rate
        self._streaming = streaming
        self._header_sent = False
        self._buffered: list[bytes] = []
        self._finished = False

    def encode(self, audio: FloatAudio) -> bytes:
        _check_open(self._finished)
        data = float_to_s16(_as_mono(audio))
        if not self._streaming:
            self._buffered.append(data)
            return b""
        if self._header_sent:
            return data
        self._header_sent = True
        return wav_header(self._rate, None) + data

    def finish(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        if self._streaming:
            # An empty stream still deserves a header, so the client sees a valid (empty) WAV.
            return b"" if self._header_sent else wav_header(self._rate, None)
        data = b"".join(self._buffered)
        self._buffered.clear()
        return wav_header(self._rate, len(data)) + data


def _check_open(finished: bool) -> None:
    if finished:
        raise RuntimeError("encode() called after finish()")


@dataclass(frozen=True)
class _AVSpec:
    """How one compressed format is produced with FFmpeg."""

    codec: str
    container: str
    sample_format: str
    """An input sample format the codec accepts, mono: packed and planar are the same bytes."""
    bit_rates: tuple[int, int] | None
    """Bits per second below 32 kHz (speech at 22/24 kHz) and at 32 kHz or above; None: lossless."""
    container_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)
    fallback_rate: int = 48000
    """Where to resample when the codec cannot take the input rate."""


_AV_SPECS: dict[str, _AVSpec] = {
    # write_xing=0: a Xing/Info header is a placeholder patched at the end, impossible on a stream
    # (and players mistake the unpatched one for the real length). No ID3 tag either: nothing to say.
    # compression_level=7 is LAME's -q 7: about 20% faster than its default -q 3, and the difference
    # is inaudible on speech at these bit rates.
    "mp3": _AVSpec(
        "libmp3lame",
        "mp3",
        "fltp",
        (64_000, 128_000),
        container_options={"write_xing": "0", "id3v2_version": "0"},
        codec_options={"compression_level": "7"},
    ),
    # The Ogg muxer holds packets until a page is full (1 s by default); short pages keep latency low
    # for about 2.5 kbit/s of page headers. Complexity 5 instead of 10 costs little for speech and
    # encodes about a third faster.
    "opus": _AVSpec(
        "libopus",
        "ogg",
        "flt",
        (48_000, 48_000),
        container_options={"page_duration": "100000"},
        codec_options={"compression_level": "5"},
    ),
    "aac": _AVSpec("aac", "adts", "fltp", (64_000, 96_000)),
    "flac": _AVSpec("flac", "flac", "s16", None),
}


class _Sink:
    """A write-only, non-seekable file object that collects what the muxer writes until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(data)
        return len(data)

    def drain(self) -> bytes:
        if not self._parts:
            return b""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _AVEncoder:
    """A PyAV codec and muxer writing into a :class:`_Sink`."""

    def __init__(self, spec: _AVSpec, sample_rate: int) -> None:
        rates = av.Codec(spec.codec, "w").audio_rates
        rate = sample_rate if not rates or sample_rate in rates else spec.fallback_rate
        self._resampler = Resampler(sample_rate, rate) if rate != sample_rate else None
        self._rate = rate
        self._sample_format = spec.sample_format
        self._sink = _Sink()
        self._finished = False
        # flush_packets=1: hand every muxed packet to the sink at once instead of filling a 32 KiB
        # I/O buffer first, which would hold back seconds of compressed audio.
        self._container = av.open(
            self._sink,
            mode="w",
            format=spec.container,
            container_options={"flush_packets": "1", **spec.container_options},
        )
        stream = self._container.add_stream(spec.codec, rate=rate, options=spec.codec_options)
        if not isinstance(stream, AudioStream):  # cannot happen: every codec in _AV_SPECS is audio
            raise TypeError(f"{spec.codec} is not an audio codec")
        self._stream = stream
        self._stream.layout = "mono"
        self._stream.format = spec.sample_format
        if spec.bit_rates is not None:
            self._stream.bit_rate = spec.bit_rates[rate >= 32000]
        # Opens the codec and writes the container header now: set-up errors surface before any
        # response byte is sent, and the header goes out with the first chunk.
        self._container.start_encoding()
        self._frame_size = self._stream.codec_context.frame_size
        self._time_base = Fraction(1, rate)
        self._pts = 0
        self._pending: FloatAudio = np.zeros(0, dtype=np.float32)

    def encode(self, audio: FloatAudio) -> bytes:
        _check_open(self._finished)
        samples = _as_mono(audio)
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        # Feed whole codec frames only; the remainder waits for the next chunk (or finish()).
        usable = len(samples) - len(samples) % self._frame_size if self._frame_size else len(samples)
        self._pending = samples[usable:].copy()
        if usable:
            self._feed(samples[:usable])
        return self._sink.drain()

    def finish(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        tail = self._pending
        if self._resampler is not None:
            tail = np.concatenate((tail, self._resampler.flush()))
        if tail.size:
            # Every codec here accepts a short last frame (AV_CODEC_CAP_SMALL_LAST_FRAME).
            self._feed(tail)
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._sink.drain()

    def _feed(self, samples: FloatAudio) -> None:
        data = float_to_s16_array(samples) if self._sample_format == "s16" else samples
        # One frame for all whole codec frames: PyAV slices it to frame_size internally, which is
        # much cheaper than a Python-level frame per codec frame.
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format=self._sample_format, layout="mono")
        frame.sample_rate = self._rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += len(samples)
        self._container.mux(self._stream.encode(frame))
