"""Decode audio bytes back with PyAV for assertions."""

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
