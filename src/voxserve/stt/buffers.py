"""The sample stores of a :class:`~voxserve.stt.session.StreamingSession`, preallocated.

:class:`SampleBuffer` holds the utterance being heard (append-only, sized for ``max_utterance_s``
plus two frames); :class:`SampleRing` keeps the last ``prefix_padding_ms`` between utterances. Neither
reallocates as audio is fed, so a session's memory is fixed when it starts.
"""

from __future__ import annotations

import numpy as np

from voxserve.engines.base import FloatAudio

__all__ = ["EMPTY", "SampleBuffer", "SampleRing"]

EMPTY: FloatAudio = np.zeros(0, dtype=np.float32)
"""A zero-length audio array (shared: never written to)."""


class SampleBuffer:
    """A preallocated, append-only float32 buffer (no reallocation, no O(n²) appends)."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self.length = 0

    def append(self, samples: FloatAudio) -> None:
        end = self.length + samples.size
        if end > self._data.size:  # the session cuts utterances long before this
            raise OverflowError("utterance buffer overflow")
        self._data[self.length : end] = samples
        self.length = end

    def view(self) -> FloatAudio:
        return self._data[: self.length]

    def drop_front(self, n: int) -> None:
        keep = self.length - n
        self._data[:keep] = self._data[n : self.length]  # NumPy handles the overlap
        self.length = keep

    def clear(self) -> None:
        self.length = 0


class SampleRing:
    """The last ``capacity`` samples (the prefix padding kept between utterances)."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._next = 0
        self._count = 0

    def push(self, samples: FloatAudio) -> None:
        cap = self._data.size
        if cap == 0 or samples.size == 0:
            return
        if samples.size >= cap:
            self._data[:] = samples[-cap:]
            self._next, self._count = 0, cap
            return
        first = min(cap - self._next, samples.size)
        self._data[self._next : self._next + first] = samples[:first]
        self._data[: samples.size - first] = samples[first:]
        self._next = (self._next + samples.size) % cap
        self._count = min(cap, self._count + samples.size)

    def last(self, n: int) -> FloatAudio:
        n = min(n, self._count)
        if n == 0:
            return EMPTY
        start = (self._next - n) % self._data.size
        if start + n <= self._data.size:
            return self._data[start : start + n].copy()
        return np.concatenate((self._data[start:], self._data[: n - (self._data.size - start)]))

    def clear(self) -> None:
        self._next = self._count = 0
