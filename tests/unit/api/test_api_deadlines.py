"""Deadlines for slow clients: a stalled or trickling request body is cut with 408 (corpus L7).

Driven through the ASGI interface with a hand-made ``receive``, so the timing is the test's own; the
header deadline lives in the HTTP protocol and is tested against a real server in
``tests/e2e/test_deadlines_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.types import Message

from voxserve.api.app import BodyLimitMiddleware

Receive = Callable[[], Awaitable[Message]]


def app_reading_the_body() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/slow-answer")
    async def slow_answer(request: Request) -> StreamingResponse:
        await request.body()

        async def parts():  # type: ignore[no-untyped-def]
            for _ in range(3):
                await asyncio.sleep(0.15)  # the answer outlasts the body deadline
                yield b"x"

        return StreamingResponse(parts())

    return app


async def call(path: str, receive: Receive, **limits: float) -> tuple[int, bytes]:
    middleware = BodyLimitMiddleware(
        app_reading_the_body(),
        max_body_bytes=1 << 20,
        max_upload_bytes=1 << 20,
        **limits,  # type: ignore[arg-type]
    )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-type", b"application/octet-stream")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    await asyncio.wait_for(middleware(scope, receive, send), 5)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def chunks(parts: list[tuple[float, bytes, bool]]) -> Receive:
    """A client that sends ``(delay, data, more)`` pieces, then waits (it never disconnects)."""
    pending = list(parts)

    async def receive() -> Message:
        if not pending:
            await asyncio.Event().wait()  # the client stays connected
        delay, data, more = pending.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": data, "more_body": more}

    return receive


async def test_a_stalled_body_is_408() -> None:
    status, body = await call(
        "/echo", chunks([(0, b"a" * 100, True), (1.0, b"b", False)]), body_timeout_s=0.2
    )
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_a_body_slower_than_the_minimum_rate_is_408() -> None:
    trickle = [(0.05, b"x", True)] * 20 + [(0, b"", False)]  # 20 B/s for a second
    status, body = await call("/echo", chunks(trickle), body_timeout_s=0.3, body_min_bytes_per_s=1000)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


async def test_a_body_at_or_over_the_rate_is_read() -> None:
    steady = [(0.05, b"x" * 100, True)] * 10 + [(0, b"", False)]  # 2000 B/s, 0.5 s in all
    status, body = await call("/echo", chunks(steady), body_timeout_s=0.3, body_min_bytes_per_s=1000)
    assert status == 200 and json.loads(body) == {"bytes": 1000}


async def test_waiting_for_a_disconnect_after_the_body_is_not_timed() -> None:
    # The streaming answer listens for a disconnect for longer than body_timeout_s: no 408, all sent.
    status, body = await call("/slow-answer", chunks([(0, b"hi", False)]), body_timeout_s=0.1)
    assert status == 200 and body == b"xxx"
