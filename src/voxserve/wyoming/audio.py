"""Wyoming audio (any rate, sample width and channel count the protocol allows) to 16 kHz float mono."""

from __future__ import annotations

import numpy as np

from voxserve.audio.pcm import STT_SAMPLE_RATE, FloatAudio
from voxserve.audio.resample import Resampler
from voxserve.errors import InvalidRequest, InvalidValue

__all__ = ["MAX_CHANNELS", "MAX_RATE", "MIN_RATE", "WyomingPcm"]

MIN_RATE = 1000
MAX_RATE = 384_000
MAX_CHANNELS = 32


class WyomingPcm:
    """Signed little-endian PCM of ``width`` bytes (1 to 4; 1 is signed, as the protocol's audioop has
    it), ``channels`` interleaved, at ``rate``: downmixed and resampled (one stateful resampler per
    stream). Calls come in stream order; one may run in a worker thread at a time."""

    def __init__(self, rate: int, width: int, channels: int) -> None:
        for name, value, low, high in (
            ("rate", rate, MIN_RATE, MAX_RATE),
            ("width", width, 1, 4),
            ("channels", channels, 1, MAX_CHANNELS),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidValue(
                    f"audio {name} must be an integer from {low} to {high}, not {value!r}",
                    code="unsupported_audio_format",
                )
        self.rate, self.width, self.channels = rate, width, channels
        self._resampler = Resampler(rate, STT_SAMPLE_RATE)

    def same_format(self, rate: int, width: int, channels: int) -> bool:
        return (rate, width, channels) == (self.rate, self.width, self.channels)

    def __call__(self, data: bytes) -> FloatAudio:
        frame = self.width * self.channels
        if len(data) % frame:
            raise InvalidRequest(
                f"audio-chunk holds {len(data)} bytes, not whole frames of {frame} bytes "
                f"({self.width}-byte samples x {self.channels} channels)",
                code="misaligned_pcm",
            )
        samples = _to_float(data, self.width)
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        out: FloatAudio = self._resampler.process(np.ascontiguousarray(samples, dtype=np.float32))
        return out

    def flush(self) -> FloatAudio:
        """The resampler's held-back tail (at ``audio-stop``, or before a format change)."""
        out: FloatAudio = self._resampler.flush()
        return out


def _to_float(data: bytes, width: int) -> FloatAudio:
    if width == 1:
        ints = np.frombuffer(data, dtype=np.int8).astype(np.float32)
        return ints / 128.0
    if width == 2:
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / float(1 << 23)
    return (np.frombuffer(data, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
