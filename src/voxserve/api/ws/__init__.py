"""The WebSocket session front end shared by every voxserve WebSocket endpoint (see :mod:`.session`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, WebSocket

from voxserve.api.ws.session import (
    DRAIN_TIMEOUT_S,
    EndSession,
    ErrorEncoder,
    WsConnection,
    WsHandler,
    close_websockets,
    serve_ws,
)
from voxserve.errors import VoxserveError
from voxserve.protocol.common import ErrorEvent
from voxserve.runtime.admission import Admission
from voxserve.state import AppState
from voxserve.stt.transcriber import Transcriber

__all__ = [
    "DRAIN_TIMEOUT_S",
    "EndSession",
    "ErrorEncoder",
    "WsConnection",
    "WsHandler",
    "close_websockets",
    "serve_ws",
    "TranscribingHandler",
    "simple_error",
    "websocket_route",
]


def simple_error(exc: VoxserveError, event_id: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "code", "message"}``: the error event of the transcribe, speak and chat
    protocols (they have no event ids)."""
    return ErrorEvent.from_error(exc).to_json()


def websocket_route(
    router: APIRouter,
    path: str,
    *,
    admission: Callable[[AppState], Admission],
    open_session: Callable[[WsConnection, AppState], Awaitable[WsHandler]],
    encode_error: ErrorEncoder = simple_error,
) -> None:
    """Serve ``path`` on ``router`` through :func:`serve_ws`: ``admission`` picks the server's cap for
    this kind of session, ``open_session`` opens the endpoint's handler."""

    async def endpoint(ws: WebSocket) -> None:
        state: AppState = ws.app.state.vox
        await serve_ws(
            ws,
            settings=state.settings,
            admission=admission(state),
            encode_error=encode_error,
            open_session=lambda conn: open_session(conn, state),
        )

    router.add_api_websocket_route(path, endpoint)


class TranscribingHandler:
    """What the handlers of the streaming-transcription sockets share: a transcriber whose accepted
    audio is finished (its finals delivered) when the session ends on an error or a limit."""

    transcriber: Transcriber | None = None

    async def drain(self, timeout_s: float) -> None:
        if self.transcriber is not None:
            await self.transcriber.finish(timeout_s=timeout_s)

    async def aclose(self) -> None:
        if self.transcriber is not None:
            await self.transcriber.close()
