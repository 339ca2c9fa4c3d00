"""The Transcribe tab's microphone session: its chunk queue is bounded and says so when full."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voxserve.errors import Unavailable
from voxserve.ui.transcribe import MAX_QUEUED_CHUNKS, MicSession


class StuckTranscriber:
    """Never finishes feeding: the STT has fallen behind."""

    def __init__(self) -> None:
        self.fed = 0
        self.gate = asyncio.Event()

    async def feed(self, pcm: np.ndarray) -> None:
        self.fed += 1
        await self.gate.wait()

    async def close(self) -> None:
        pass


async def test_a_session_that_falls_behind_ends_with_backlog_full(tmp_path: object) -> None:
    transcriber = StuckTranscriber()
    released: list[bool] = []
    session = MicSession(transcriber, lambda: released.append(True))  # type: ignore[arg-type]
    try:
        for _ in range(MAX_QUEUED_CHUNKS):
            session.feed_file("/nonexistent/chunk.wav")  # queued, not read yet
        with pytest.raises(Unavailable) as info:
            session.feed_file("/nonexistent/chunk.wav")
        assert info.value.code == "backlog_full"
        with pytest.raises(Unavailable):  # the session stays failed
            session.feed_file("/nonexistent/chunk.wav")
    finally:
        await session.close()
    assert released == [True]
