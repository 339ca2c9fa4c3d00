"""Stream an audio file at real-time pace to ``WS /v1/stream/transcribe`` and print the results.

Used by ``voxserve listen``; also a compact example of the mobile-app protocol.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from voxserve.audio.decode import decode_audio

__all__ = ["listen"]

FRAME_S = 0.1


def _ws_url(server: str) -> str:
    base = server.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return base + "/v1/stream/transcribe"


async def listen(
    path: Path,
    server: str,
    *,
    pace: float = 1.0,
    show_partials: bool = True,
    out: TextIO = sys.stdout,
    api_key: str | None = None,
) -> list[dict[str, Any]]:
    """Send ``path`` as 16 kHz linear16 in 100 ms frames; print partials (one updating line) and finals.

    Returns every result event received, for callers that want them.
    """
    import websockets

    data = await asyncio.to_thread(path.read_bytes)
    audio = await asyncio.to_thread(decode_audio, data, max_seconds=3600.0)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    frame_bytes = int(16000 * FRAME_S) * 2
    results: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with websockets.connect(_ws_url(server), max_size=2**20, additional_headers=headers) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "config",
                    "sample_rate_hz": 16000,
                    "encoding": "linear16",
                    "language": "en",
                    "interim_results": show_partials,
                }
            )
        )

        async def sender() -> None:
            start = time.monotonic()
            for i in range(0, len(pcm), frame_bytes):
                await ws.send(pcm[i : i + frame_bytes])
                if pace > 0:
                    due = start + (i // frame_bytes + 1) * FRAME_S / pace
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
            await ws.send(json.dumps({"type": "end"}))

        send_task = asyncio.create_task(sender())
        try:
            async for message in ws:
                event = json.loads(message)
                if event.get("type") == "result":
                    results.append(event)
                    r = event["results"][0]
                    text = r["alternatives"][0]["transcript"]
                    if r["is_final"]:
                        out.write(f"\r\033[K[{r['result_end_time']:7.2f}s] {text}\n")
                    elif show_partials:
                        out.write(f"\r\033[K… {text}")
                    out.flush()
                elif event.get("type") == "error":
                    out.write(f"\nerror: {event['code']}: {event['message']}\n")
        finally:
            send_task.cancel()
    return results
