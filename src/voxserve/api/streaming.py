"""A streaming response that always cancels the work behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["AbortingStreamingResponse"]


class AbortingStreamingResponse(StreamingResponse):
    """Calls ``on_close`` when the response ends for any reason, even if the body never started.

    Starlette only closes a body iterator that it started; a client that goes away first would
    otherwise leave the worker job running.
    """

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
