"""Decode audio bytes back with PyAV for assertions; build the long and hostile uploads of the failure
corpus (silence compresses to almost nothing, so a few hundred kB can claim hours)."""

from __future__ import annotations

import io

import av
import numpy as np


def decode(data: bytes, fmt: str, pcm_rate: int = 24000) -> tuple[np.ndarray, int]:
    """Return (float32 mono samples, sample rate)."""
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, pcm_rate
    container = av.open(io.BytesIO(data))
    try:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        parts = []
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            if arr.dtype == np.int16:
                arr = arr.astype(np.float32) / 32768
            parts.append(arr.reshape(-1) if arr.shape[0] == 1 else arr[0])
        return np.concatenate(parts).astype(np.float32), rate
    finally:
        container.close()


def duration(data: bytes, fmt: str, pcm_rate: int = 24000) -> float:
    samples, rate = decode(data, fmt, pcm_rate)
    return len(samples) / rate


def silence_flac(seconds: float, rate: int = 8000, layout: str = "mono") -> bytes:
    """Silence compresses to almost nothing: 30 min at 8 kHz is ~330 kB and ~0.3 s to encode."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout=layout)
        stream.codec_context.format = "s16"
        block = np.zeros((1, 4608 * stream.codec_context.channels), np.int16)  # interleaved
        for i in range(int(seconds * rate) // 4608):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            frame.sample_rate, frame.pts = rate, i * 4608
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def with_total_samples(flac: bytes, total: int) -> bytes:
    """Rewrite STREAMINFO's 36-bit sample count (0 means unknown, as a streamed FLAC says)."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    field = int.from_bytes(data[18:26], "big")  # rate(20) channels(3) bits(5) samples(36)
    field = (field & ~((1 << 36) - 1)) | total
    data[18:26] = field.to_bytes(8, "big")
    return bytes(data)


def silence_encoded(seconds: float, fmt: str, codec: str, rate: int, bit_rate: int) -> bytes:
    """``seconds`` of mono silence in a compressed format (``mp3``/``mp3``, ``ogg``/``libopus``) at a
    low bit rate."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.codec_context.bit_rate = bit_rate
        size = stream.codec_context.frame_size or 1152
        fmt_name = stream.codec_context.format.name
        dtype = {"s16": np.int16, "s32": np.int32, "flt": np.float32}[fmt_name.rstrip("p")]
        block = np.zeros((1, size), dtype)
        for i in range(int(seconds * rate) // size):
            frame = av.AudioFrame.from_ndarray(block, format=fmt_name, layout="mono")
            frame.sample_rate, frame.pts = rate, i * size
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def sine16k(seconds: float) -> np.ndarray:
    """A 220 Hz tone at 16 kHz, float32 (speech to an energy VAD)."""
    t = np.arange(int(16000 * seconds), dtype=np.float32) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
