"""The speak/chat WebSockets' sender: a client that leaves audio unread is ended, not waited on."""

from __future__ import annotations

import asyncio
import time

from voxserve.api.speak_ws import Sender
from voxserve.tts.stream import AudioData


class Socket:
    """A WebSocket whose sends wait for ``readable`` (the client reading)."""

    def __init__(self, reading: bool) -> None:
        self.readable = asyncio.Event()
        if reading:
            self.readable.set()
        self.sent: list[str | bytes] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        await self.readable.wait()
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.readable.wait()
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.readable.wait()
        self.closed = code


async def test_a_client_that_does_not_read_is_stalled_and_nothing_more_waits() -> None:
    ws = Socket(reading=False)
    send = Sender(ws, send_timeout_s=0.2)  # type: ignore[arg-type]
    t0 = time.monotonic()
    await send.event(AudioData(b"\x00" * 4800))
    assert send.stalled.is_set() and 0.2 <= time.monotonic() - t0 < 1.0
    t1 = time.monotonic()
    await send.json({"type": "sentence"})  # dropped at once: the session is ending
    await send.close_stalled()  # gives up after 1 s if the close frame cannot go out either
    assert time.monotonic() - t1 < 1.6
    assert ws.sent == [] and ws.closed is None


async def test_a_reading_client_gets_everything_in_order() -> None:
    ws = Socket(reading=True)
    send = Sender(ws, send_timeout_s=0.2)  # type: ignore[arg-type]
    await send.json({"type": "ready"})
    await send.event(AudioData(b"ab"))
    assert ws.sent == ['{"type":"ready"}', b"ab"] and not send.stalled.is_set()


async def test_a_slow_but_reading_client_is_not_stalled() -> None:
    ws = Socket(reading=False)
    send = Sender(ws, send_timeout_s=0.5)  # type: ignore[arg-type]
    asyncio.get_running_loop().call_later(0.2, ws.readable.set)  # reads after 0.2 s
    await send.event(AudioData(b"ab"))
    assert ws.sent == [b"ab"] and not send.stalled.is_set()
