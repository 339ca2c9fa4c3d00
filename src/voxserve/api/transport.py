"""What ASGI does not reach: the server's connection settings, the connection under a WebSocket, and
uvicorn's handshake log.

ASGI gives an app messages, not its connection. Some limits need the server itself, and they must hold
however the app is served (``voxserve serve``, or ``uvicorn --factory voxserve.api.app:create_app``):

- the header deadline (``header_timeout_s``), h11's buffer for an incomplete request head (see
  :func:`head_buffer_bytes`), the WebSocket message cap and keepalive: uvicorn reads
  them from its ``Config`` each time it makes a connection's protocol, after the lifespan has started.
  At lifespan start-up the app reaches that ``Config`` (through the ``receive`` callable uvicorn hands
  the lifespan, a method of its lifespan object) and sets them from the app's settings: the
  header-deadline HTTP protocol, a WebSocket cap just above ``ws_max_message_bytes`` (the app answers an
  oversized message itself, with an error event and 1009), the ping interval and timeout. With
  ``--lifespan off`` the app never hears of the server; then only the per-connection hooks below apply.

- the WebSocket keepalive (``ws_ping_interval_s`` / ``ws_ping_timeout_s``): uvicorn pings on its own
  settings, fixed at start-up; the app sets them per connection before it accepts;
- a session that ended because its client stopped reading (``ws_send_timeout_s``) must let go of its
  connection: a close frame cannot reach a peer whose receive window is full, and a plain transport
  close waits to flush megabytes of queued audio first, so the connection is aborted;
- a handshake refused with an HTTP response (401 without a key) is not a server error: uvicorn logs
  it as ``ERROR: ASGI callable returned without completing handshake``, so anyone could fill the
  log. The refusal marks its task, and a log filter drops that one record for it.

uvicorn's protocols hand the app bound methods of the connection's protocol object (``send``); the
outermost middleware, :class:`TransportMiddleware`, records it in the scope. Under another server
the hooks find nothing and do nothing: that server's own settings apply.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import struct
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from voxserve.config import Settings

__all__ = [
    "WS_FRAME_MARGIN_BYTES",
    "TransportMiddleware",
    "apply_server_settings",
    "head_buffer_bytes",
    "server_config",
    "abort_connection",
    "apply_keepalive",
    "install_handshake_log_filter",
    "mark_refused_handshake",
]

_PROTOCOL_KEY = "voxserve.protocol"
_refused: contextvars.ContextVar[bool] = contextvars.ContextVar("voxserve_refused_handshake", default=False)
_UNFINISHED_HANDSHAKE = "ASGI callable returned without completing handshake"


def server_config(receive: Receive) -> Any:
    """The uvicorn ``Config`` behind the ``receive`` callable of a lifespan scope (``None`` elsewhere).

    Must see uvicorn's own callable: call it before any middleware wraps it (FastAPI wraps the
    lifespan's ``receive`` for its telemetry, so :class:`voxserve.api.app` does it in ``__call__``)."""
    return getattr(getattr(receive, "__self__", None), "config", None)


class TransportMiddleware:
    """Records the server's protocol object of each WebSocket connection in its scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            owner = getattr(send, "__self__", None)
            if owner is not None and hasattr(owner, "transport"):
                scope[_PROTOCOL_KEY] = owner
        await self.app(scope, receive, send)


def apply_server_settings(config: Any, settings: Settings) -> None:
    """Set a uvicorn ``Config``'s per-connection limits from ``settings`` (before it makes connections).

    A protocol class of the user's own (``--http my.module:Class``) is kept: only uvicorn's h11 and
    httptools protocols are replaced by the header-deadline one."""
    from voxserve.api.deadlines import header_deadline_protocol

    protocol_class = getattr(config, "http_protocol_class", None)
    if getattr(protocol_class, "__module__", "").startswith("uvicorn.protocols.http"):
        config.http_protocol_class = header_deadline_protocol(settings.header_timeout_s)
    config.h11_max_incomplete_event_size = head_buffer_bytes(settings)
    config.ws_max_size = settings.ws_max_message_bytes + WS_FRAME_MARGIN_BYTES
    config.ws_ping_interval = settings.ws_ping_interval_s
    config.ws_ping_timeout = settings.ws_ping_timeout_s


def head_buffer_bytes(settings: Settings) -> int:
    """How much of an incomplete request head h11 may buffer: well above ``max_header_bytes``.

    The app answers headers over ``max_header_bytes`` with 431 ``headers_too_large``, but only once
    h11 has the whole head. h11's own limit (16 KiB by default) counts what it holds before the head
    is complete: a 100 KB head that arrives in two reads (a loaded machine, a slow link) broke it, and
    uvicorn answered 400 and closed while the client was still sending, which the client saw as a
    connection reset. Heads larger than this still get uvicorn's 400; the header deadline bounds how
    long one may take."""
    return max(8 * settings.max_header_bytes, 256 * 1024)


WS_FRAME_MARGIN_BYTES = 65536
"""How far above ``ws_max_message_bytes`` the server's own WebSocket cap sits, so that the app's answer
to an oversized message (``message_too_large``, then 1009) is the one a client sees."""


def _protocol(scope: Scope) -> Any:
    return scope.get(_PROTOCOL_KEY)


def apply_keepalive(scope: Scope, interval_s: float, timeout_s: float) -> bool:
    """Set the connection's ping interval and pong timeout (call before accepting); ``False`` when
    the server does not let the app reach them."""
    protocol = _protocol(scope)
    if protocol is None or not hasattr(protocol, "ping_interval") or not hasattr(protocol, "ping_timeout"):
        return False
    protocol.ping_interval = interval_s
    protocol.ping_timeout = timeout_s
    return True


def abort_connection(scope: Scope) -> bool:
    """Drop the connection now, discarding what is queued for a peer that stopped reading.

    The kernel's send buffer holds megabytes of audio for such a peer, and a socket closed the usual
    way keeps trying to deliver them (FIN-WAIT-1) for minutes: a zero linger time makes the close a
    reset that frees the connection at once."""
    protocol = _protocol(scope)
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


def mark_refused_handshake() -> None:
    """Note that this task refused a WebSocket handshake on purpose (see the module docstring)."""
    _refused.set(True)


class _RefusedHandshakeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # The record is logged from the connection's own task after the app returned, so the mark
        # set inside the app is visible here, and only for that connection.
        return not (_refused.get() and record.getMessage().startswith(_UNFINISHED_HANDSHAKE))


def install_handshake_log_filter() -> None:
    """Drop uvicorn's ERROR line for handshakes the app refused on purpose (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _RefusedHandshakeFilter) for f in logger.filters):
        logger.addFilter(_RefusedHandshakeFilter())
