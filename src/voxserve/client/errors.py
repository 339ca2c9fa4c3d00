"""The client's one exception, and how every failure the server reports becomes one.

:class:`ClientError` (a :class:`voxserve.errors.VoxserveError`) carries the server's stable ``code``,
its ``message`` and where it came from: the HTTP ``status``, or the WebSocket ``close_code``. The
functions below build it from an HTTP error response, a WebSocket error event or a close code; they
are pure (the front ends call them with what the transport gave them).
"""

from __future__ import annotations

import json
from typing import Any

from voxserve.errors import VoxserveError

__all__ = [
    "CLOSE_CODES",
    "ClientError",
    "closed_early",
    "error_from_close",
    "error_from_event",
    "error_from_response",
    "invalid_event",
    "transport_error",
]

CLOSE_CODES = {
    1001: "going_away",
    1003: "unsupported_data",
    1006: "connection_lost",
    1007: "invalid_data",
    1008: "policy_violation",
    1009: "message_too_big",
    1011: "server_error",
    1013: "at_capacity",
}
"""The ``code`` of a :class:`ClientError` raised for an abnormal WebSocket close."""


class ClientError(VoxserveError):
    """An error reported by the server (or the connection to it).

    ``code`` is the server's stable error code (``unknown_voice``, ``at_capacity``, ...); ``status``
    the HTTP status (``None`` on a WebSocket); ``close_code`` the WebSocket close code of an abnormal
    close (``None`` for HTTP and for an error event, which names the problem itself).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        close_code: int | None = None,
        error_type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, code=code, param=param)
        self._status = status
        self._close_code = close_code
        self._error_type = error_type or (
            "server_error" if (status or 500) >= 500 else "invalid_request_error"
        )

    # The base class declares these per subclass; a client error carries the server's values.
    @property
    def status(self) -> int | None:  # type: ignore[override]
        return self._status

    @property
    def close_code(self) -> int | None:  # type: ignore[override]
        return self._close_code

    @property
    def error_type(self) -> str:  # type: ignore[override]
        return self._error_type

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else f"close {self.close_code}"
        if self.status is None and self.close_code is None:
            where = "error event"
        return f"{self.message} ({self.code}, {where})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.message, self.code, self.status, self.close_code, self.param))


def _rebuild(
    message: str, code: str, status: int | None, close_code: int | None, param: str | None
) -> ClientError:
    return ClientError(message, code=code, status=status, close_code=close_code, param=param)


def error_from_response(status: int, body: bytes | str) -> ClientError:
    """The :class:`ClientError` for an HTTP error response (OpenAI's envelope, or anything else)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return ClientError(
            str(err.get("message") or f"HTTP {status}"),
            code=str(err.get("code") or f"http_{status}"),
            status=status,
            error_type=str(err["type"]) if err.get("type") else None,
            param=str(err["param"]) if err.get("param") is not None else None,
        )
    if isinstance(obj, dict) and isinstance(obj.get("detail"), str):
        text = obj["detail"]
    return ClientError(text.strip()[:300] or f"HTTP {status}", code=f"http_{status}", status=status)


def error_from_event(event: dict[str, Any], close_code: int | None = None) -> ClientError:
    """The :class:`ClientError` for a WebSocket error event: voxserve's ``{"type": "error", "code",
    "message"}`` or the Realtime API's ``{"type": "error", "error": {...}}``."""
    body = event.get("error") if isinstance(event.get("error"), dict) else event
    assert isinstance(body, dict)
    return ClientError(
        str(body.get("message") or "the server reported an error"),
        code=str(body.get("code") or "server_error"),
        close_code=close_code,
        error_type=str(body["type"]) if body.get("type") not in (None, "error") else None,
        param=str(body["param"]) if body.get("param") is not None else None,
    )


def error_from_close(code: int | None, reason: str = "") -> ClientError | None:
    """The :class:`ClientError` for a WebSocket close, or ``None`` for a normal one (1000)."""
    if code == 1000:
        return None
    name = CLOSE_CODES.get(code or 1006, f"close_{code}")
    return ClientError(
        reason or f"the server closed the connection ({name})", code=name, close_code=code or 1006
    )


def closed_early(message: str, close_code: int | None = 1000) -> ClientError:
    """``closed``: the server closed normally, but before the exchange was complete."""
    return ClientError(message, code="closed", close_code=close_code)


def invalid_event() -> ClientError:
    """``invalid_event``: the server sent a message that is not a JSON event."""
    return ClientError("the server sent an event that is not JSON", code="invalid_event")


def transport_error(exc: Exception) -> ClientError:
    """``connection_error``: the server could not be reached, or a body was cut off mid-stream."""
    return ClientError(f"{type(exc).__name__}: {exc}", code="connection_error")
