"""A deadline for request headers, which uvicorn does not have (slowloris; corpus row L7).

uvicorn's h11 protocol arms no timer while a request's headers arrive: a client that opens a
connection and sends nothing, or trickles a header byte every few seconds, holds the connection (and
its file descriptor) for as long as it likes. :func:`header_deadline_protocol` returns uvicorn's
h11 protocol with one timer more: from the connection's start (and from the first byte of each later
request on a kept-alive connection) the headers must be complete within ``header_timeout_s``;
otherwise the client gets ``408 request_timeout`` (or, if it sent nothing at all, the connection is
simply closed) and the connection is closed.

Bodies have their own deadline in :class:`voxserve.api.app.BodyLimitMiddleware`, where the body is
read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from voxserve.errors import RequestTimeout

__all__ = ["header_deadline_protocol"]


def _timeout_response() -> bytes:
    err = RequestTimeout("the request headers did not arrive in time", code="request_timeout")
    body = json.dumps(err.to_dict()).encode()
    head = (
        f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _HeaderDeadlineProtocol(H11Protocol):
    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._got_bytes = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting_for_headers = self.cycle is None or self.cycle.response_complete
        if waiting_for_headers and self._deadline is None:
            self._arm()  # the first byte of a later request on a kept-alive connection
        self._got_bytes = self._got_bytes or bool(data)
        super().data_received(data)
        upgraded = self.transport.get_protocol() is not self
        if upgraded or (self.cycle is not None and not self.cycle.response_complete):
            self._disarm()  # the headers are in: the request (or WebSocket) is the app's now

    def _arm(self) -> None:
        self._disarm()
        self._got_bytes = False
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        if self._got_bytes:
            self.transport.write(_timeout_response())
        self.transport.close()


def header_deadline_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol class, with request headers due within ``header_timeout_s``."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
