"""Slow clients against a real ``voxserve serve`` (corpus L7): headers that do not arrive in
``header_timeout_s`` get 408 and a closed connection; a stalled body gets 408; a WebSocket, whose
handshake was on time, is not touched by either deadline."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("deadlines"),
        env={
            "VOXSERVE_ENGINES": '["espeak"]',
            "VOXSERVE_PRELOAD_ENGINES": '["espeak"]',
            "VOXSERVE_DEFAULT_VOICE": "espeak/en-us",
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_STT_WORKERS": "1",
            "VOXSERVE_UI_ENABLED": "false",
            "VOXSERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "VOXSERVE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def raw(server: Server) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    t0 = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {limit_s} s; got {data[:200]!r}") from None
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (headers and body may come in several segments)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or pytest.fail(f"closed mid-headers: {data!r}")
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536) or pytest.fail(f"closed mid-body: {data!r}")
    return head + b"\r\n\r\n" + body


def test_trickled_headers_get_408_and_a_close(server: Server) -> None:
    with raw(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        data, took = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert took <= HEADER_TIMEOUT_S + 1.5


def test_a_silent_connection_is_closed(server: Server) -> None:
    with raw(server) as sock:
        data, took = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    assert data == b"" and took <= HEADER_TIMEOUT_S + 1.5


def test_a_second_request_on_a_kept_alive_connection_has_its_own_deadline(server: Server) -> None:
    with raw(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"status":"ok"}'), first[:300]
        time.sleep(HEADER_TIMEOUT_S / 2)  # the client's own pace: idle, not yet a request
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        data, _ = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]


def test_a_stalled_body_gets_408(server: Server) -> None:
    body = b'{"model": "tts-1", "voice": "alloy", "input": "Hello there."}'
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        data, took = read_until_closed(sock, BODY_TIMEOUT_S + 5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert b"request_timeout" in data
    assert took <= BODY_TIMEOUT_S + 1.5


def test_normal_requests_and_websockets_outlive_the_deadlines(server: Server) -> None:
    r = httpx.post(
        server.url + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "espeak/en-us", "input": "Hello there.", "response_format": "wav"},
        timeout=60,
    )
    assert r.status_code == 200 and len(r.content) > 1000
    with connect(server.url.replace("http://", "ws://") + "/v1/stream/speak", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config", "voice": "espeak/en-us"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        time.sleep(HEADER_TIMEOUT_S + 0.5)  # past the header deadline: the socket is the app's now
        ws.send(json.dumps({"type": "text", "text": "Still here."}))
        ws.send(json.dumps({"type": "end"}))
        events = []
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, str):
                events.append(json.loads(message)["type"])
                if events[-1] in ("done", "error"):
                    break
    assert events[-1] == "done" and "sentence" in events
