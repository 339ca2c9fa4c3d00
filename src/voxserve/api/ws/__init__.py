"""The WebSocket session front end shared by every voxserve WebSocket endpoint (see :mod:`.session`)."""

from __future__ import annotations

from typing import Any

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

__all__ = [
    "DRAIN_TIMEOUT_S",
    "EndSession",
    "ErrorEncoder",
    "WsConnection",
    "WsHandler",
    "close_websockets",
    "serve_ws",
    "simple_error",
]


def simple_error(exc: VoxserveError, event_id: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "code", "message"}``: the error event of the transcribe, speak and chat
    protocols (they have no event ids)."""
    return ErrorEvent.from_error(exc).to_json()
