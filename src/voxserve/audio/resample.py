"""Streaming sample-rate conversion.

Engines speak at their native rates (22050 Hz for Piper, 24000 Hz for Kokoro, ...) while clients and
codecs want others. A :class:`Resampler` keeps the filter state between chunks, so a stream resampled
piece by piece sounds exactly like the whole stream resampled at once, with no clicks at chunk edges.
"""

from __future__ import annotations

import numpy as np
import soxr

from voxserve.audio.pcm import FloatAudio

__all__ = ["Resampler"]

_EMPTY: FloatAudio = np.zeros(0, dtype=np.float32)


class Resampler:
    """A stateful mono float32 resampler from ``in_rate`` to ``out_rate`` (libsoxr, high quality).

    Feed chunks to :meth:`process` in order, then call :meth:`flush` once to get the filter's tail.
    When the two rates are equal the audio passes through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    @property
    def passthrough(self) -> bool:
        """Whether the rates are equal, so nothing is resampled."""
        return self._stream is None

    def process(self, audio: FloatAudio) -> FloatAudio:
        """Resample the next chunk; returns what the filter can produce so far (possibly empty)."""
        if self._stream is None:
            return audio
        chunk = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        out: FloatAudio = self._stream.resample_chunk(chunk, last=False)
        return out

    def flush(self) -> FloatAudio:
        """End the stream and return the remaining samples held in the filter."""
        if self._stream is None:
            return _EMPTY
        out: FloatAudio = self._stream.resample_chunk(_EMPTY, last=True)
        return out
