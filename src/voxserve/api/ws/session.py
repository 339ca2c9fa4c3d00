"""The one WebSocket session front end: every voxserve WebSocket endpoint runs through :func:`serve_ws`.

An endpoint supplies two things: how its protocol writes an error (an :data:`ErrorEncoder`) and a
:class:`WsHandler` that opens the session (reads the config, answers ``ready``) and applies each client
message. Everything else is here, once:

- admission (a full server accepts, then closes 1013 so the client sees why) and the list of open
  sockets that shutdown closes with 1001;
- the keepalive ping settings and the message-size limit (``message_too_large``, close 1009), applied
  by the app, so any ASGI server enforces the limit the ``ready`` event announces;
- the idle timer (close 1000) and ``max_session_s`` (error ``max_session_reached``, close 1008);
- sends serialised across tasks, and a send timeout: a client that leaves its audio unread for
  ``ws_send_timeout_s`` ends its session (close 1008 if the frame can still be sent) and loses its
  connection;
- one mapping from :class:`~voxserve.errors.VoxserveError` to the protocol's error event and the
  error's close code. A bad message (an :class:`~voxserve.errors.InvalidRequest`) gets an error event
  and the session stays open. Any other error, raised mid-stream too, first lets the session deliver
  what it had accepted (a transcriber's finals), then sends the error event and closes with the
  error's ``close_code`` (``transcription_backlog``: 1013). An unexpected exception is logged and
  becomes ``internal_error`` with close 1011. The socket is never just dropped;
- every error event sent (through :meth:`WsConnection.send_error` or as any JSON event of type
  ``error``) and every close with an error code (not 1000 or 1001) is logged once on ``voxserve.ws``,
  with its code, the close code, the route and the connection's short session id, and counted in
  ``voxserve_ws_errors_total{code,route}``. A close that follows an error event is one line and one
  count. Client mistakes log at INFO, server-side failures (5xx errors, closes 1011 and 1013) at
  WARNING; the same code on the same session logs at most once per :data:`ERROR_LOG_INTERVAL_S`, and
  the next line (or the session's end) says how many were held back. The counter always counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from voxserve.api.transport import abort_connection, apply_keepalive
from voxserve.config import Settings
from voxserve.errors import InvalidRequest, TextTooLong, VoxserveError
from voxserve.observability import RepeatLimiter
from voxserve.protocol.json import dumps
from voxserve.runtime.admission import Admission

__all__ = [
    "DRAIN_TIMEOUT_S",
    "ERROR_LOG_INTERVAL_S",
    "EndSession",
    "ErrorEncoder",
    "WsConnection",
    "WsHandler",
    "close_websockets",
    "serve_ws",
]

_log = logging.getLogger("voxserve.ws")

DRAIN_TIMEOUT_S = 10.0
"""How long a session that ends on an error or a limit may take to deliver what it had accepted."""

ERROR_LOG_INTERVAL_S = 10.0
"""The same error code on the same session is logged at most once per this many seconds."""

_NORMAL_CLOSES = frozenset({1000, 1001})
_SERVER_SIDE_CLOSES = frozenset({1011, 1013})
# Codes logged at WARNING whatever their status: error events sent as plain JSON (a speak session's
# failed sentence, a chat's LLM error) carry no status, and a client that stops reading holds a session.
_WARNING_CODES = frozenset(
    {
        "internal_error",
        "synthesis_failed",
        "worker_crashed",
        "worker_unavailable",
        "output_error",
        "client_not_reading",
    }
)
_MAX_LOGGED_MESSAGE = 200

ErrorEncoder = Callable[[VoxserveError, "str | None"], dict[str, Any]]
"""A protocol's error event for an error (and the client event id it answers, where it has one)."""


class EndSession(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a handler (or requested with :meth:`WsConnection.end`) to end the session: close with
    ``code``; ``error`` is sent first as the protocol's error event; ``drain`` lets the session deliver
    what it had accepted before."""

    def __init__(self, code: int, reason: str, *, error: VoxserveError | None = None, drain: bool = False):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error = error
        self.drain = drain


class WsHandler(Protocol):
    """One endpoint's session logic behind :func:`serve_ws`."""

    async def on_message(self, data: str | bytes) -> None:
        """Apply one client message. Raise :class:`~voxserve.errors.InvalidRequest` for a bad one
        (error event, the session goes on), :class:`EndSession` to end normally, any other
        :class:`~voxserve.errors.VoxserveError` to end with that error."""

    async def drain(self, timeout_s: float) -> None:
        """Deliver what the session accepted (finals of the audio received) within ``timeout_s``."""

    async def aclose(self) -> None:
        """Release everything the session holds (always called once)."""


class WsConnection:
    """A WebSocket as the handlers see it: typed sends, bounded receives, errors in the protocol's shape."""

    def __init__(self, ws: WebSocket, settings: Settings, encode_error: ErrorEncoder) -> None:
        self.ws = ws
        self.settings = settings
        self.encode_error = encode_error
        self.started = time.monotonic()
        self.session_id = secrets.token_hex(4)
        """A short random id that names this connection in the server's log."""
        self.route = _route(ws)
        self._send_lock = asyncio.Lock()
        self._end: asyncio.Future[EndSession] = asyncio.get_running_loop().create_future()
        self._closed = False
        self.stalled = False
        self._errors_counted = _ws_error_counter(ws)
        self._error_log = RepeatLimiter(_log, ERROR_LOG_INTERVAL_S)
        self._close_reported = False

    # --- errors: logged once (rate-limited) and counted ----------------------------------------------

    def report_error(
        self, code: str, message: str, *, status: int | None = None, close: int | None = None
    ) -> None:
        """Log (rate-limited) and count an error this session sends: an error event, with ``close``
        when the session closes with that code right after it, or a bare close."""
        if close is not None:
            self._close_reported = True
        if self._errors_counted is not None:
            self._errors_counted.labels(code, self.route).inc()
        server_side = (
            (status is not None and status >= 500)
            or close in _SERVER_SIDE_CLOSES
            or code in _WARNING_CODES
            or (status is None and code.startswith("llm_"))
        )
        if len(message) > _MAX_LOGGED_MESSAGE:
            message = message[:_MAX_LOGGED_MESSAGE] + "…"
        closing = f", close {close}" if close is not None else ""
        self._error_log.log(
            (code, close),
            logging.WARNING if server_side else logging.INFO,
            f"WebSocket {self.route} session {self.session_id}: error {code}{closing}: {message}",
        )

    def flush_error_log(self) -> None:
        """Log the repeats still held back (at the end of the session)."""
        self._error_log.flush()

    # --- sending ------------------------------------------------------------------------------------

    async def send_json(self, obj: Any) -> None:
        """Send a JSON event: a dict, or a typed message with ``to_json()``."""
        data = obj.to_json() if hasattr(obj, "to_json") else obj
        if isinstance(data, dict) and data.get("type") == "error" and not self._closed and not self.stalled:
            code, message = _error_fields(data)
            self.report_error(code, message)
        text = dumps(data)
        await self._send({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame (audio)."""
        await self._send({"type": "websocket.send", "bytes": data})

    async def send_error(
        self, exc: VoxserveError, event_id: str | None = None, *, closing: int | None = None
    ) -> None:
        """Send ``exc`` as the protocol's error event; the session goes on, unless ``closing`` says it
        closes with that code next (logged and counted as one)."""
        if not self._closed and not self.stalled:
            self.report_error(exc.code, exc.message, status=exc.status, close=closing)
        text = dumps(self.encode_error(exc, event_id))
        await self._send({"type": "websocket.send", "text": text})

    async def _send(self, message: dict[str, Any]) -> None:
        # Sends come from the receive loop and from background tasks (synthesis, decodes): one at a
        # time. A send that waits longer than ws_send_timeout_s means the client stopped reading.
        if self._closed or self.stalled:
            return
        async with self._send_lock:
            try:
                async with asyncio.timeout(self.settings.ws_send_timeout_s):
                    await self.ws.send(message)
            except TimeoutError:
                # Logged and counted once, when the session closes (client_not_reading, 1008).
                self.stalled = True
                unread = f"the client left its data unread for {self.settings.ws_send_timeout_s:g} s"
                self.end(EndSession(1008, unread))
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                # Gone (or closing): later sends are dropped, and the receive loop sees the disconnect.
                _log.debug("send after the client left: %s", exc)
                self._closed = True
                self.end(EndSession(1000, "client gone"))

    # --- receiving ----------------------------------------------------------------------------------

    def end(self, end: EndSession) -> None:
        """Ask the session to end (from any task); the first request wins."""
        if not self._end.done():
            self._end.set_result(end)

    async def receive(self) -> str | bytes:
        """The next client message, or :class:`EndSession` when the session must end: an
        :meth:`end` request, the idle timeout, ``max_session_s`` or an oversized message."""
        settings = self.settings
        remaining = settings.max_session_s - (time.monotonic() - self.started)
        if remaining <= 0:
            raise _session_too_long()
        if self._end.done():
            raise self._end.result()
        receive: asyncio.Future[Any] = asyncio.ensure_future(self.ws.receive())
        waiting: set[asyncio.Future[Any]] = {receive, self._end}
        try:
            done, _ = await asyncio.wait(
                waiting,
                timeout=min(settings.session_idle_timeout_s, remaining),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not receive.done():
                receive.cancel()
        if self._end in done:
            raise self._end.result()
        if receive not in done:
            if remaining <= settings.session_idle_timeout_s:
                raise _session_too_long()
            raise EndSession(1000, "idle timeout: no message received")
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        size = len(data) if isinstance(data, bytes) else _utf8_size(data, settings.ws_max_message_bytes)
        if size > settings.ws_max_message_bytes:
            raise EndSession(
                1009,
                "message too large",
                error=TextTooLong(
                    f"a message may hold at most {settings.ws_max_message_bytes} bytes",
                    code="message_too_large",
                ),
                drain=True,
            )
        return data

    async def receive_config(self) -> str | bytes:
        """The first message (a config): like :meth:`receive`, but no message within the idle timeout
        closes with 1000 and says so."""
        try:
            return await self.receive()
        except EndSession as end:
            if end.code == 1000 and end.error is None:
                raise EndSession(1000, "idle timeout: no config received") from None
            raise

    # --- closing ------------------------------------------------------------------------------------

    async def close(self, code: int, reason: str, *, error_code: str | None = None) -> None:
        """Close with ``code``; a connection whose close frame cannot be sent (the client stopped
        reading) is aborted, so an ended session never keeps its connection. A close with an error
        code that no error event announced is logged and counted as ``error_code`` (default
        ``close_<code>``)."""
        if self._closed:
            return
        if code not in _NORMAL_CLOSES and not self._close_reported:
            self.report_error(error_code or f"close_{code}", reason, close=code)
        self._closed = True
        sent = False
        if not self.stalled:
            with contextlib.suppress(Exception):  # the socket may be gone already
                async with asyncio.timeout(1.0):
                    await self.ws.close(code=code, reason=reason[:120])
                    sent = True
        if not sent:
            abort_connection(self.ws.scope)


def _route(ws: WebSocket) -> str:
    # The route's path template (a fixed set, so the metric's labels stay bounded); the raw path
    # where no route is recorded.
    route = ws.scope.get("route")
    path = getattr(route, "path", None) or ws.scope.get("path")
    return path if isinstance(path, str) else "unknown"


def _ws_error_counter(ws: WebSocket) -> Any:
    # The app's voxserve_ws_errors_total (app.state.vox.metrics), if this app has one.
    try:
        return ws.app.state.vox.metrics.ws_errors
    except (AttributeError, KeyError):
        return None


def _error_fields(event: dict[str, Any]) -> tuple[str, str]:
    """The code and message of an error event: ``{"code", "message"}`` or OpenAI's nested
    ``{"error": {"code", "message"}}``."""
    inner = event.get("error")
    source = inner if isinstance(inner, dict) else event
    code, message = source.get("code"), source.get("message")
    return (code if isinstance(code, str) and code else "error"), (
        message if isinstance(message, str) else ""
    )


def _utf8_size(text: str, limit: int) -> int:
    # A str of n characters holds n to 4n UTF-8 bytes: encode only when the bound is not enough.
    return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))


def _session_too_long() -> EndSession:
    return EndSession(
        1008,
        "maximum session length reached",
        error=InvalidRequest("the session reached max_session_s", code="max_session_reached"),
        drain=True,
    )


async def serve_ws(
    ws: WebSocket,
    *,
    settings: Settings,
    admission: Admission,
    encode_error: ErrorEncoder,
    open_session: Callable[[WsConnection], Awaitable[WsHandler]],
) -> None:
    """Run one WebSocket session: admit, open the handler, feed it messages, end it cleanly."""
    apply_keepalive(ws.scope, settings.ws_ping_interval_s, settings.ws_ping_timeout_s)
    await ws.accept()
    conn = WsConnection(ws, settings, encode_error)
    if not admission.try_enter():
        # Accepted first so the client sees the close code, not a bare handshake refusal.
        await conn.close(1013, "at capacity; try again later", error_code="at_capacity")
        return
    sockets: set[WebSocket] = ws.app.state.open_sockets
    sockets.add(ws)
    try:
        await _run(conn, open_session)
    finally:
        sockets.discard(ws)
        admission.leave()
        conn.flush_error_log()


async def _run(conn: WsConnection, open_session: Callable[[WsConnection], Awaitable[WsHandler]]) -> None:
    handler: WsHandler | None = None
    try:
        try:
            handler = await open_session(conn)
        except VoxserveError as exc:  # a bad config: the session never started
            await conn.send_error(exc, closing=exc.close_code)
            await conn.close(exc.close_code, exc.message)
            return
        while True:
            data = await conn.receive()
            try:
                await handler.on_message(data)
            except InvalidRequest as exc:
                await conn.send_error(exc)
    except EndSession as end:
        await _end(conn, handler, end)
    except WebSocketDisconnect:
        pass
    except VoxserveError as exc:
        await _end(conn, handler, EndSession(exc.close_code, exc.message, error=exc, drain=True))
    except Exception:
        _log.exception("WebSocket session failed")
        error = VoxserveError("the server failed while serving this session", code="internal_error")
        await _end(conn, handler, EndSession(1011, "internal error", error=error))
    finally:
        if handler is not None:
            await handler.aclose()


async def _end(conn: WsConnection, handler: WsHandler | None, end: EndSession) -> None:
    if end.drain and handler is not None and not conn.stalled:
        try:
            await handler.drain(DRAIN_TIMEOUT_S)
        except Exception:  # what could be delivered was; the close still goes out
            _log.exception("draining the session failed")
    if end.error is not None:
        await conn.send_error(end.error, closing=end.code)
    await conn.close(end.code, end.reason, error_code="client_not_reading" if conn.stalled else None)


async def close_websockets(app: Any, code: int = 1001, reason: str = "server shutting down") -> int:
    """Close every admitted WebSocket of ``app`` (at shutdown); return how many were open."""
    sockets: set[WebSocket] = app.state.open_sockets
    open_now = list(sockets)

    async def close(ws: WebSocket) -> None:
        with contextlib.suppress(Exception):  # a socket may be closing on its own at the same time
            async with asyncio.timeout(2.0):
                await ws.close(code=code, reason=reason)

    await asyncio.gather(*(close(ws) for ws in open_now))
    return len(open_now)
