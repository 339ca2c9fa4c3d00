"""The VAD every streaming transcription of one server shares: one Silero model, a stream per client."""

from __future__ import annotations

import asyncio
from typing import Any

from voxserve.audio.pcm import FloatAudio

__all__ = ["FrameVad", "SharedVad"]


class SharedVad:
    """Loads the Silero model once (off the event loop, on first use) and hands out per-stream VADs.

    The model is thread-safe; each stream keeps its own recurrent state in a :class:`FrameVad`.
    """

    def __init__(self) -> None:
        self._model: Any = None
        self._lock: asyncio.Lock | None = None

    async def stream(self) -> FrameVad:
        """A fresh VAD stream on the shared model."""
        from voxserve.engines.vad import SileroVadModel, VadStream

        if self._lock is None:  # created here, not in __init__, so it binds to the running loop
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(SileroVadModel, 1)
        return FrameVad(VadStream(self._model))


class FrameVad:
    """Adapts a Silero ``VadStream`` to the session's ``VadProtocol`` (512-sample frames)."""

    frame_samples = 512

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def process(self, frame: FloatAudio) -> float:
        """Speech probability of one 512-sample frame at 16 kHz."""
        p: float = self._stream.process(frame)
        return p
