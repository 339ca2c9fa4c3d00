"""The WebSocket session front end (api/ws/session.py) against a fake socket: limits, timers, sends
serialised with a timeout, and one mapping from errors to error events and close codes."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from tests.timing import scaled

from voxserve.api.ws import EndSession, WsConnection, serve_ws, simple_error
from voxserve.config import Settings
from voxserve.errors import EngineFailure, InvalidRequest, Unavailable
from voxserve.observability import Metrics, RepeatLimiter
from voxserve.runtime.admission import Admission


class FakeApp:
    class state:  # noqa: N801 - mimics Starlette's app.state
        open_sockets: set[Any] = set()


class FakeSocket:
    """Just enough of Starlette's WebSocket: ``incoming`` is what the client sends; sends wait for
    ``readable`` (the client reading)."""

    def __init__(self, incoming: list[dict[str, Any]] | None = None, reading: bool = True) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in incoming or []:
            self.incoming.put_nowait(message)
        self.readable = asyncio.Event()
        if reading:
            self.readable.set()
        self.sent: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.accepted = False
        self.scope: dict[str, Any] = {"type": "websocket"}
        self.app = FakeApp()

    async def accept(self) -> None:
        self.accepted = True

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        await self.readable.wait()
        self.sent.append(json.loads(message["text"]) if "text" in message else message["bytes"])

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.readable.wait()
        self.closed = (code, reason)

    def events(self) -> list[Any]:
        return [m["type"] if isinstance(m, dict) else m for m in self.sent]


def text(obj: Any) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": json.dumps(obj)}


def settings(**overrides: Any) -> Settings:
    return Settings(ui_enabled=False, **overrides)


class Handler:
    """Echoes ``{"type": "echo"}``; other messages raise what ``raises`` maps them to."""

    def __init__(self, conn: WsConnection, raises: dict[str, BaseException] | None = None) -> None:
        self.conn = conn
        self.raises = raises or {}
        self.drained = False
        self.closed = False

    async def on_message(self, data: str | bytes) -> None:
        kind = json.loads(data)["type"]
        if kind in self.raises:
            raise self.raises[kind]
        await self.conn.send_json({"type": "echo"})

    async def drain(self, timeout_s: float) -> None:
        self.drained = True
        await self.conn.send_json({"type": "final"})

    async def aclose(self) -> None:
        self.closed = True


async def serve(ws: FakeSocket, config: Settings, raises: dict[str, BaseException] | None = None) -> Handler:
    handlers: list[Handler] = []

    async def open_session(conn: WsConnection) -> Handler:
        handlers.append(Handler(conn, raises))
        return handlers[0]

    async with asyncio.timeout(scaled(10)):
        await serve_ws(
            ws,  # type: ignore[arg-type]
            settings=config,
            admission=Admission(1),
            encode_error=simple_error,
            open_session=open_session,
        )
    assert handlers and handlers[0].closed
    return handlers[0]


async def test_a_bad_message_gets_an_error_event_and_the_session_goes_on() -> None:
    bad = InvalidRequest("nope", code="invalid_text")
    ws = FakeSocket([text({"type": "bad"}), text({"type": "echo"}), text({"type": "end"})])
    handler = await serve(ws, settings(), {"bad": bad, "end": EndSession(1000, "done")})
    assert ws.sent == [{"type": "error", "code": "invalid_text", "message": "nope"}, {"type": "echo"}]
    assert ws.closed == (1000, "done") and not handler.drained


@pytest.mark.parametrize(
    ("error", "code"),
    [(Unavailable("behind", code="transcription_backlog"), 1013), (EngineFailure("boom"), 1011)],
)
async def test_an_error_mid_stream_drains_then_sends_the_error_and_its_close_code(
    error: Exception, code: int
) -> None:
    ws = FakeSocket([text({"type": "echo"}), text({"type": "fail"})])
    handler = await serve(ws, settings(), {"fail": error})
    assert handler.drained
    assert ws.events() == ["echo", "final", "error"]
    assert ws.sent[-1]["code"] == error.code
    assert ws.closed is not None and ws.closed[0] == code


async def test_an_unexpected_exception_is_internal_error_1011_not_a_dropped_socket() -> None:
    ws = FakeSocket([text({"type": "fail"})])
    await serve(ws, settings(), {"fail": KeyError("x")})
    assert ws.sent[-1] == {
        "type": "error",
        "code": "internal_error",
        "message": "the server failed while serving this session",
    }
    assert ws.closed == (1011, "internal error")


async def test_a_message_over_the_limit_is_message_too_large_1009() -> None:
    limit = 2048
    ws = FakeSocket(
        [text({"type": "echo", "pad": "x" * (limit - 40)}), text({"type": "echo", "pad": "x" * limit})]
    )
    await serve(ws, settings(ws_max_message_bytes=limit))
    assert ws.events() == ["echo", "final", "error"] and ws.sent[-1]["code"] == "message_too_large"
    assert ws.closed is not None and ws.closed[0] == 1009


async def test_multibyte_text_counts_its_utf8_bytes() -> None:
    limit = 1024
    fits = {
        "type": "websocket.receive",
        "text": json.dumps({"type": "echo", "pad": "é" * 400}, ensure_ascii=False),
    }
    ws = FakeSocket([fits])  # 400 chars, 800 bytes and some
    ws.incoming.put_nowait({"type": "websocket.receive", "text": "é" * 600})  # 600 chars, 1200 bytes
    await serve(ws, settings(ws_max_message_bytes=limit))
    assert ws.sent[0] == {"type": "echo"} and ws.sent[-1]["code"] == "message_too_large"


async def test_the_idle_timeout_closes_1000() -> None:
    ws = FakeSocket()
    handler = await serve(ws, settings(session_idle_timeout_s=0.05))
    assert ws.closed == (1000, "idle timeout: no message received") and not handler.drained


async def test_max_session_s_ends_with_an_error_after_draining() -> None:
    ws = FakeSocket()
    handler = await serve(ws, settings(max_session_s=0.05, session_idle_timeout_s=30))
    assert handler.drained
    assert ws.sent[-1]["code"] == "max_session_reached" and ws.closed is not None and ws.closed[0] == 1008


async def test_a_full_server_accepts_then_closes_1013() -> None:
    ws = FakeSocket([text({"type": "echo"})])
    admission = Admission(0)

    async def open_session(conn: WsConnection) -> Handler:
        raise AssertionError("not admitted")

    await serve_ws(
        ws,  # type: ignore[arg-type]
        settings=settings(),
        admission=admission,
        encode_error=simple_error,
        open_session=open_session,
    )
    assert ws.accepted and ws.closed == (1013, "at capacity; try again later") and admission.active == 0


async def test_a_client_that_stops_reading_ends_its_session_without_waiting_for_it() -> None:
    ws = FakeSocket([text({"type": "echo"})], reading=False)
    ws.scope["voxserve.protocol"] = protocol = FakeProtocol()
    # Give-up bound: the send times out after ws_send_timeout_s, the close is not even tried (the
    # frame could not go out either) and the connection is aborted.
    handler = await serve(ws, settings(ws_send_timeout_s=0.1))
    assert ws.sent == [] and ws.closed is None and protocol.transport.aborted and not handler.drained


class FakeTransport:
    aborted = False

    def get_extra_info(self, name: str) -> None:
        return None

    def abort(self) -> None:
        self.aborted = True


class FakeProtocol:
    def __init__(self) -> None:
        self.transport = FakeTransport()


async def test_a_request_to_end_from_another_task_ends_the_session() -> None:
    ws = FakeSocket()

    async def open_session(conn: WsConnection) -> Handler:
        asyncio.get_running_loop().call_soon(conn.end, EndSession(1000, "done"))
        return Handler(conn)

    await serve_ws(
        ws,  # type: ignore[arg-type]
        settings=settings(),
        admission=Admission(1),
        encode_error=simple_error,
        open_session=open_session,
    )
    assert ws.closed == (1000, "done")


async def test_a_bad_config_is_an_error_event_and_its_close_code() -> None:
    ws = FakeSocket([text({"type": "config"})])

    async def open_session(conn: WsConnection) -> Handler:
        await conn.receive_config()
        raise InvalidRequest("bad config", code="invalid_config")

    await serve_ws(
        ws,  # type: ignore[arg-type]
        settings=settings(),
        admission=Admission(1),
        encode_error=simple_error,
        open_session=open_session,
    )
    assert ws.sent == [{"type": "error", "code": "invalid_config", "message": "bad config"}]
    assert ws.closed == (1008, "bad config")


# --- errors are visible: logged once (rate-limited) and counted --------------------------------------


class MetricsApp:
    """An app whose ``state.vox.metrics`` is a real :class:`Metrics`, as ``create_app`` builds it."""

    def __init__(self) -> None:
        self.state = SimpleNamespace(open_sockets=set(), vox=SimpleNamespace(metrics=Metrics()))

    def count(self, code: str, route: str = "/v1/test") -> float:
        value = self.state.vox.metrics.registry.get_sample_value(
            "voxserve_ws_errors_total", {"code": code, "route": route}
        )
        return value or 0.0


def counted_socket(incoming: list[dict[str, Any]] | None = None) -> tuple[FakeSocket, MetricsApp]:
    ws = FakeSocket(incoming)
    app = MetricsApp()
    ws.app = app  # type: ignore[assignment]
    ws.scope["path"] = "/v1/test"
    return ws, app


def ws_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "voxserve.ws"]


async def test_an_error_event_is_logged_with_its_code_route_and_session_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "voxserve.ws")
    bad = InvalidRequest("nope", code="invalid_text")
    ws, app = counted_socket([text({"type": "bad"}), text({"type": "end"})])
    ids: list[str] = []

    async def open_session(conn: WsConnection) -> Handler:
        ids.append(conn.session_id)
        return Handler(conn, {"bad": bad, "end": EndSession(1000, "done")})

    await serve_ws(
        ws,  # type: ignore[arg-type]
        settings=settings(),
        admission=Admission(1),
        encode_error=simple_error,
        open_session=open_session,
    )
    [line] = ws_lines(caplog)
    assert line.levelno == logging.INFO
    assert len(ids[0]) == 8 and f"session {ids[0]}" in line.getMessage()
    assert "/v1/test" in line.getMessage() and "error invalid_text: nope" in line.getMessage()
    assert app.count("invalid_text") == 1
    assert app.count("close_1000") == 0  # a normal close is no error


async def test_repeats_are_held_back_and_counted_on_the_next_line_but_the_counter_counts_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "voxserve.ws")
    bad = InvalidRequest("nope", code="invalid_text")
    ws, app = counted_socket([*(text({"type": "bad"}) for _ in range(5)), text({"type": "end"})])
    await serve(ws, settings(), {"bad": bad, "end": EndSession(1000, "done")})
    assert [m["code"] for m in ws.sent] == ["invalid_text"] * 5  # the client gets every one
    lines = [r.getMessage() for r in ws_lines(caplog)]
    # The first goes out at once; the session's end reports the last of the four held back.
    assert len(lines) == 2 and lines[1].endswith("nope (3 more)")
    assert app.count("invalid_text") == 5


async def test_an_error_that_closes_is_one_warning_with_its_close_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "voxserve.ws")
    ws, app = counted_socket([text({"type": "fail"})])
    await serve(ws, settings(), {"fail": Unavailable("behind", code="transcription_backlog")})
    [line] = ws_lines(caplog)
    assert (
        line.levelno == logging.WARNING
        and "error transcription_backlog, close 1013: behind" in line.getMessage()
    )
    assert app.count("transcription_backlog") == 1 and app.count("close_1013") == 0


async def test_a_client_mistake_that_closes_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "voxserve.ws")
    limit = 1024
    ws, app = counted_socket([text({"type": "echo", "pad": "x" * limit})])
    await serve(ws, settings(ws_max_message_bytes=limit))
    [line] = ws_lines(caplog)
    assert line.levelno == logging.INFO and "error message_too_large, close 1009" in line.getMessage()
    assert app.count("message_too_large") == 1


async def test_an_internal_error_is_logged_as_a_warning_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "voxserve.ws")
    ws, app = counted_socket([text({"type": "fail"})])
    await serve(ws, settings(), {"fail": KeyError("x")})
    reported = [r for r in ws_lines(caplog) if "error internal_error, close 1011" in r.getMessage()]
    assert len(reported) == 1 and reported[0].levelno == logging.WARNING
    assert app.count("internal_error") == 1


async def test_a_full_server_counts_and_logs_at_capacity(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "voxserve.ws")
    ws, app = counted_socket()

    async def open_session(conn: WsConnection) -> Handler:
        raise AssertionError("not admitted")

    await serve_ws(
        ws,  # type: ignore[arg-type]
        settings=settings(),
        admission=Admission(0),
        encode_error=simple_error,
        open_session=open_session,
    )
    assert ws.closed == (1013, "at capacity; try again later")
    [line] = ws_lines(caplog)
    assert line.levelno == logging.WARNING and "error at_capacity, close 1013" in line.getMessage()
    assert app.count("at_capacity") == 1


async def test_error_events_sent_as_plain_json_are_counted_in_either_shape() -> None:
    ws, app = counted_socket()

    async def open_session(conn: WsConnection) -> Handler:
        await conn.send_json({"type": "error", "code": "synthesis_failed", "message": "engine"})
        await conn.send_json({"type": "error", "error": {"code": "model_not_found", "message": "x"}})
        await conn.send_json({"type": "error"})
        raise EndSession(1000, "done")

    await serve_ws(
        ws,  # type: ignore[arg-type]
        settings=settings(),
        admission=Admission(1),
        encode_error=simple_error,
        open_session=open_session,
    )
    assert (app.count("synthesis_failed"), app.count("model_not_found"), app.count("error")) == (1, 1, 1)


async def test_a_client_that_stops_reading_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "voxserve.ws")
    ws, app = counted_socket([text({"type": "echo"})])
    ws.readable.clear()
    ws.scope["voxserve.protocol"] = FakeProtocol()
    await serve(ws, settings(ws_send_timeout_s=0.1))
    [line] = ws_lines(caplog)
    assert line.levelno == logging.WARNING and "client_not_reading, close 1008" in line.getMessage()
    assert "unread for 0.1 s" in line.getMessage() and app.count("client_not_reading") == 1


def test_the_repeat_limiter_names_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.repeats")
    now = [0.0]
    limiter = RepeatLimiter(logging.getLogger("test.repeats"), 10.0, clock=lambda: now[0], max_keys=2)
    assert limiter.log("a", logging.INFO, "a1")
    assert not limiter.log("a", logging.INFO, "a2") and not limiter.log("a", logging.WARNING, "a3")
    assert limiter.log("b", logging.INFO, "b1")  # another key is not held back
    now[0] = 10.0
    assert limiter.log("a", logging.INFO, "a4")
    assert not limiter.log("a", logging.INFO, "a5")
    limiter.flush()
    limiter.flush()  # nothing left
    assert [r.getMessage() for r in caplog.records] == ["a1", "b1", "a4 (2 more)", "a5"]
    for key in "cdefg":  # only max_keys keys are remembered
        limiter.log(key, logging.INFO, key)
    assert len(limiter._last) == 2
