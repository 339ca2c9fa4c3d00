"""The WebSocket front end and the limits, end to end, as a user meets them (issue 10's defects).

Every test here failed before the one session front end (api/ws/) existed: a backlog dropped the
socket, speak and chat sessions outlived ``max_session_s``, ``uvicorn --factory`` accepted 16 MiB
messages, deeply nested JSON ended in a RecursionError, a stalled reader kept its connection, the
Realtime dialect came from the query, refused handshakes logged ERROR, and a 404 echoed its whole id.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Server, free_port, start_server, stop_server
from tests.e2e.ws_helpers import drain, pcm16
from tests.speech_dev import utterances
from tests.stub_llm import StubLLM
from tests.timing import deadline_in, remaining, scaled, until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

LIMITS = {
    "VOXSERVE_MAX_SESSION_S": "4",
    "VOXSERVE_WS_PING_INTERVAL_S": "1",
    "VOXSERVE_WS_PING_TIMEOUT_S": "1",
    "VOXSERVE_WS_SEND_TIMEOUT_S": "2",
    "VOXSERVE_HEADER_TIMEOUT_S": "2",
    "VOXSERVE_ENGINES": '["espeak"]',
    "VOXSERVE_DEFAULT_VOICE": "espeak/en-us",
    "VOXSERVE_STT_MODELS": '["tiny.en"]',
    "VOXSERVE_UI_ENABLED": "false",
}
NESTED = "[" * 100_000 + "]" * 100_000  # 200 KB: under the 256 KiB message limit


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def start_factory_server(tmp: Path, env: dict[str, str]) -> Server:
    """The same app served the other documented way: ``uvicorn --factory``, with uvicorn's defaults."""
    port = free_port()
    log = tmp / f"uvicorn-{port}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1", **env}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "voxserve.api.app:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)

    def ready() -> bool:
        assert process.poll() is None, server.log_text()
        try:
            return httpx.get(server.url + "/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    until(ready, timeout=180, interval=0.5, message="uvicorn --factory serving /ready")
    return server


@pytest.fixture(scope="module", params=["voxserve serve", "uvicorn --factory"])
def limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stub: StubLLM
) -> Iterator[Server]:
    """A server with short session limits, served both ways; chat goes to the stub LLM."""
    env = LIMITS | {
        "VOXSERVE_LLM_BASE_URL": stub.url,
        "VOXSERVE_LLM_MODEL": "stub-model",
        "VOXSERVE_LLM_API_KEY": "sekret",
    }
    tmp = tmp_path_factory.mktemp("limited")
    srv = start_server(tmp, env=env) if request.param == "voxserve serve" else start_factory_server(tmp, env)
    try:
        yield srv
    finally:
        stop_server(srv)


def recv_json(ws: ClientConnection, timeout_s: float = 30) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=scaled(timeout_s))))


SPEAK_CONFIG = {"type": "config", "voice": "espeak/en-us", "response_format": "pcm"}
AUDIO_CONFIG = {"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}
CHAT_CONFIG = AUDIO_CONFIG | {"response_format": "pcm"}  # the server's default voice


@contextlib.contextmanager
def open_session(server: Server, route: str) -> Iterator[ClientConnection]:
    """A configured session on ``route``, its first event (ready / created) read."""
    path = {
        "speak": "/v1/stream/speak",
        "transcribe": "/v1/stream/transcribe",
        "chat": "/v1/stream/chat",
        "realtime": "/v1/realtime?intent=transcription",
    }[route]
    with connect(ws_url(server, path), open_timeout=scaled(30)) as ws:
        if route == "realtime":
            assert recv_json(ws, 60)["type"] == "session.created"
        else:
            config = {"speak": SPEAK_CONFIG, "transcribe": AUDIO_CONFIG, "chat": CHAT_CONFIG}[route]
            ws.send(json.dumps(config))
            assert recv_json(ws, 60)["type"] == "ready"
        yield ws


# --- deeply nested JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["transcribe", "speak", "chat", "realtime"])
def test_nested_json_is_invalid_json_and_the_session_stays_open(limited: Server, route: str) -> None:
    with open_session(limited, route) as ws:
        ws.send(NESTED)
        error = recv_json(ws)
        if route == "realtime":
            assert error["type"] == "error" and error["error"]["code"] == "invalid_json"
            ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "e1"}))
            assert recv_json(ws)["type"] == "input_audio_buffer.cleared"  # still serving
        else:
            assert error == {"type": "error", "code": "invalid_json", "message": error["message"]}
            ws.send(json.dumps({"type": "end"}))
            events, code = drain(ws)
            assert code == 1000, events  # the session went on to end normally
    assert "RecursionError" not in limited.log_text() and "Exception in ASGI" not in limited.log_text()


# --- limits that belong to the app, whichever way it is served ----------------------------------------


def test_an_oversized_message_is_message_too_large_1009(limited: Server) -> None:
    with open_session(limited, "transcribe") as ws:
        ws.send(bytes(300_000))  # over the 256 KiB the ready event announced
        events, code = drain(ws)
    assert code == 1009
    assert events[-1]["type"] == "error" and events[-1]["code"] == "message_too_large"


def test_trickled_headers_get_408_under_either_server(limited: Server) -> None:
    # The header deadline is the server's (headers arrive before any app runs): the app sets it on
    # uvicorn's configuration at lifespan start-up, so uvicorn --factory has it too.
    with socket.create_connection(("127.0.0.1", int(limited.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        sock.settimeout(scaled(15))
        data = b""
        while chunk := sock.recv(65536):  # bounded by the socket timeout: the server must close first
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


@pytest.mark.parametrize("route", ["speak", "chat"])
def test_max_session_s_ends_speak_and_chat_sessions(limited: Server, route: str) -> None:
    with open_session(limited, route) as ws:
        # Keep the session busy with messages so that only the session limit (4 s) can end it.
        def ended() -> bool:
            try:
                ws.send(json.dumps({"type": "flush" if route == "speak" else "cancel"}))
            except ConnectionClosed:
                return True
            return False

        until(ended, timeout=30, interval=0.5, message="the session limit ended the session")
        assert ws.close_code == 1008


def test_the_app_applies_its_ping_settings(limited: Server) -> None:
    # A peer that never answers a ping (ping every 1 s, 1 s to answer) is closed by the server, under
    # uvicorn --factory too, whose own default would wait 20 + 20 s.
    with connect(ws_url(limited, "/v1/stream/speak"), open_timeout=scaled(30), ping_interval=None) as ws:
        send_frame = ws.protocol.send_frame

        def no_pongs(frame: Frame) -> None:  # a peer that never answers a ping
            if frame.opcode is not Opcode.PONG:
                send_frame(frame)

        ws.protocol.send_frame = no_pongs  # type: ignore[method-assign]
        ws.send(json.dumps(SPEAK_CONFIG))
        assert recv_json(ws)["type"] == "ready"
        with pytest.raises(ConnectionClosed):
            while True:  # bounded by recv's timeout: the close must come before it
                ws.recv(timeout=scaled(15))
        assert ws.close_code == 1011  # keepalive ping timeout


# --- a client that stops reading loses its connection -------------------------------------------------


def server_connection_open(server: Server, client_port: int) -> bool:
    """Whether the server's end of the TCP connection from ``client_port`` still exists."""
    server_port = int(server.url.rsplit(":", 1)[1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote = line.split()[1:3]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return True
    return False


def test_a_speak_client_that_stops_reading_loses_its_connection(limited: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", int(limited.url.rsplit(":", 1)[1])))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client_port = sock.getsockname()[1]
    with connect(
        ws_url(limited, "/v1/stream/speak"),
        sock=sock,
        max_queue=1,
        ping_interval=None,
        open_timeout=scaled(30),
    ) as ws:
        ws.send(json.dumps(SPEAK_CONFIG))
        assert recv_json(ws)["type"] == "ready"
        text = "This sentence is spoken again and again, and nobody listens to it. " * 50
        ws.send(json.dumps({"type": "text", "text": text}))
        ws.send(json.dumps({"type": "flush"}))
        # The client reads nothing more. After ws_send_timeout_s (2 s) the session ends, and its
        # connection goes with it: the server's end of the TCP connection disappears.
        until(
            lambda: not server_connection_open(limited, client_port),
            timeout=60,
            interval=0.5,
            message="the server dropped the stalled connection",
        )
    assert "did not read" in limited.log_text() or "unread" in limited.log_text()


# --- the Realtime dialect comes from the handshake, not the query ------------------------------------


def test_a_ga_client_with_the_transcription_query_gets_the_ga_dialect(limited: Server) -> None:
    with connect(ws_url(limited, "/v1/realtime?intent=transcription"), open_timeout=scaled(30)) as ws:
        first = recv_json(ws, 60)
    assert first["type"] == "session.created" and first["session"]["type"] == "transcription"


def test_a_beta_client_is_known_by_its_openai_beta_header(limited: Server) -> None:
    headers = {"OpenAI-Beta": "realtime=v1"}
    with connect(ws_url(limited, "/v1/realtime"), additional_headers=headers, open_timeout=scaled(30)) as ws:
        first = recv_json(ws, 60)
    assert first["type"] == "transcription_session.created"


async def test_the_openai_sdk_ga_client_with_intent_transcription(limited: Server) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=limited.url + "/v1", api_key="unused")
    async with client.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as conn:
        first = await conn.recv()
    assert first.type == "session.created"
    assert first.session.type == "transcription"


# --- a backlog is an error and 1013, after the finals of what was accepted ----------------------------


def long_speech_s16(seconds: float, rate: int) -> bytes:
    """Real speech, the speech_dev utterances back to back (again from the first if need be), at least
    ``seconds`` long (s16le at ``rate``)."""
    every = b"".join(pcm16(u.path, rate) for u in utterances())
    return every * (1 + int(seconds * rate * 2) // len(every))


def drain_all(ws: ClientConnection, timeout_s: float) -> tuple[list[dict[str, Any]], int | None]:
    """The JSON events until the server closes (binary frames, the chat's answer audio, skipped)."""
    events: list[dict[str, Any]] = []
    deadline = deadline_in(timeout_s)
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            message = ws.recv(timeout=remaining(deadline))
            if isinstance(message, str):
                events.append(json.loads(message))
    return events, ws.close_code


@pytest.mark.parametrize("route", ["transcribe", "realtime", "chat"])
def test_a_backlog_is_an_error_event_and_1013_after_the_accepted_finals(
    chat_server: Server, route: str
) -> None:
    rate = 24000 if route == "realtime" else 16000  # Realtime's pcm16 is 24 kHz
    pcm = long_speech_s16(150, rate)
    with open_session(chat_server, route) as ws:
        sent = 0
        step = 2 * rate  # one second per message
        try:
            while sent < len(pcm):  # as fast as the socket takes it: far faster than real time
                frame = pcm[sent : sent + step]
                if route == "realtime":
                    ws.send(
                        json.dumps(
                            {"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()}
                        )
                    )
                else:
                    ws.send(frame)
                sent += step
        except ConnectionClosed:
            pass
        events, code = drain_all(ws, timeout_s=120)
    assert code == 1013, [e.get("type") for e in events]
    errors = [e for e in events if e["type"] == "error"]
    code_of = (lambda e: e["error"]["code"]) if route == "realtime" else (lambda e: e["code"])
    assert [code_of(e) for e in errors] == ["transcription_backlog"]
    assert events[-1] is errors[0], "the error is the last event before the close"
    finals = {
        "transcribe": [e for e in events if e["type"] == "result" and e["results"][0]["is_final"]],
        "realtime": [
            e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
        ],
        "chat": [e for e in events if e["type"] == "transcript" and e["is_final"]],
    }[route]
    assert finals, "the audio accepted before the backlog still yields its finals"
    assert "Exception in ASGI application" not in chat_server.log_text()


# --- refusals are not server errors; a 404 does not echo a huge id ------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("keyed"),
        "--api-key",
        "k1",
        env={k: v for k, v in LIMITS.items() if k.split("_")[1] in ("ENGINES", "DEFAULT", "STT", "UI")},
        headers={"Authorization": "Bearer k1"},
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def test_a_refused_handshake_logs_no_error(keyed: Server) -> None:
    for _ in range(3):
        with pytest.raises(InvalidStatus) as info:
            connect(ws_url(keyed, "/v1/stream/speak"), open_timeout=scaled(30))
        assert info.value.response.status_code == 401
    # A positive sync point: the request after the refusals is logged, so theirs lines are written.
    marker = "/health?after-refusals"
    assert httpx.get(keyed.url + marker, timeout=scaled(10)).status_code == 200
    until(lambda: marker in keyed.log_text(), timeout=10, message="the access log line of the marker request")
    log = keyed.log_text()
    assert "without completing handshake" not in log and "Exception in ASGI" not in log, log[-2000:]


def test_a_404_for_a_huge_job_id_does_not_echo_it(keyed: Server) -> None:
    job_id = "x" * 10_000
    r = httpx.get(
        keyed.url + "/v1/audio/speech/jobs/" + job_id,
        headers={"Authorization": "Bearer k1"},
        timeout=scaled(10),
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_job"
    assert len(r.content) < 1000


# --- a final's confidence comes from the model ---------------------------------------------------------


def test_a_finals_confidence_comes_from_the_model(limited: Server) -> None:
    finals = []
    for name in ("librispeech_1272-141231-0002.wav", "fleurs_en_007.wav"):
        pcm = pcm16(next(u.path for u in utterances() if u.path.name == name))
        with open_session(limited, "transcribe") as ws:
            for i in range(0, len(pcm), 32000):
                ws.send(pcm[i : i + 32000])
            ws.send(json.dumps({"type": "end"}))
            events, code = drain(ws)
        assert code == 1000
        finals += [
            e["results"][0]["alternatives"][0]["confidence"]
            for e in events
            if e["type"] == "result" and e["results"][0]["is_final"]
        ]
    assert finals and all(0.0 < c <= 1.0 for c in finals)
    assert len(set(finals)) > 1, f"one constant for every final: {finals}"  # it was always 0.9
