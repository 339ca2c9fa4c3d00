"""Stream an audio file at real-time pace to ``WS /v1/stream/transcribe`` and print the results.

Used by ``voxserve listen``; also a compact example of the Python client's ``transcribe_stream``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

import numpy as np

from voxserve.audio.decode import decode_audio
from voxserve.client import AsyncClient, TranscriptResult

__all__ = ["listen"]

FRAME_S = 0.1


async def _paced(pcm: bytes, frame_bytes: int, pace: float) -> AsyncIterator[bytes]:
    """``pcm`` in frames of ``frame_bytes``, ``pace`` times faster than real time (0: at once)."""
    start = time.monotonic()
    for i in range(0, len(pcm), frame_bytes):
        yield pcm[i : i + frame_bytes]
        if pace > 0:
            due = start + (i // frame_bytes + 1) * FRAME_S / pace
            await asyncio.sleep(max(0.0, due - time.monotonic()))


async def listen(
    path: Path,
    server: str,
    *,
    pace: float = 1.0,
    show_partials: bool = True,
    out: TextIO = sys.stdout,
    api_key: str | None = None,
) -> list[TranscriptResult]:
    """Send ``path`` as 16 kHz linear16 in 100 ms frames; print partials (one updating line) and finals.

    Returns every result received, for callers that want them. Errors are raised as
    :class:`~voxserve.client.ClientError` (a refused handshake, an error event, an abnormal close).
    """
    data = await asyncio.to_thread(path.read_bytes)
    audio = await asyncio.to_thread(decode_audio, data, max_seconds=3600.0)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    frames = _paced(pcm, int(16000 * FRAME_S) * 2, pace)
    results: list[TranscriptResult] = []
    async with AsyncClient(server, api_key=api_key) as client:
        stream = client.transcribe_stream(frames, sample_rate_hz=16000, interim_results=show_partials)
        async for result in stream:
            results.append(result)
            if result.is_final:
                out.write(f"\r\033[K[{result.end_s:7.2f}s] {result.transcript}\n")
            elif show_partials:
                out.write(f"\r\033[K… {result.transcript}")
            out.flush()
    return results
