"""Slow clients against a real ``voxserve serve`` (corpus L7, L8): headers that do not arrive in
``header_timeout_s`` get 408 and a closed connection; a stalled body gets 408; a WebSocket, whose
handshake was on time, is not touched by either deadline; a speak client that stops reading its audio
is ended after ``ws_send_timeout_s`` and frees its session."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server
from tests.timing import scaled, until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
SEND_TIMEOUT_S = 2.0


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
            "VOXSERVE_WS_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
            "VOXSERVE_MAX_SPEAK_SESSIONS": "1",
            # Pings far apart, so that only the send timeout can end a client that stopped reading.
            "VOXSERVE_WS_PING_INTERVAL_S": "300",
        },
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def raw(server: Server) -> socket.socket:
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=scaled(10))
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    """Everything the server sends until it closes (giving up after ``limit_s``, nominal, scaled).

    How soon after the deadline the server closes is benchmarks/reaction_bench.py's number."""
    sock.settimeout(scaled(limit_s))
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {scaled(limit_s)} s; got {data[:200]!r}") from None
        if not chunk:
            return data
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
        data = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


def test_a_silent_connection_is_closed(server: Server) -> None:
    with raw(server) as sock:
        data = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    assert data == b""


def test_a_second_request_on_a_kept_alive_connection_has_its_own_deadline(server: Server) -> None:
    with raw(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"status":"ok"}'), first[:300]
        time.sleep(HEADER_TIMEOUT_S / 2)  # the client's own pace: idle, not yet a request
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        data = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]


def test_a_stalled_body_gets_408(server: Server) -> None:
    body = b'{"model": "tts-1", "voice": "alloy", "input": "Hello there."}'
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        data = read_until_closed(sock, BODY_TIMEOUT_S + 5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert b"request_timeout" in data


def test_normal_requests_and_websockets_outlive_the_deadlines(server: Server) -> None:
    r = httpx.post(
        server.url + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "espeak/en-us", "input": "Hello there.", "response_format": "wav"},
        timeout=60,
    )
    assert r.status_code == 200 and len(r.content) > 1000
    with connect(server.url.replace("http://", "ws://") + "/v1/stream/speak", open_timeout=scaled(30)) as ws:
        ws.send(json.dumps({"type": "config", "voice": "espeak/en-us"}))
        assert json.loads(ws.recv(timeout=scaled(30)))["type"] == "ready"
        # Past the header deadline the socket is the app's: an observation window (there is no
        # request whose answer would prove the deadline timer has fired) in which nothing arrives
        # and nothing closes.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=scaled(HEADER_TIMEOUT_S + 0.5))
        ws.send(json.dumps({"type": "text", "text": "Still here."}))
        ws.send(json.dumps({"type": "end"}))
        events = []
        while True:
            message = ws.recv(timeout=scaled(30))
            if isinstance(message, str):
                events.append(json.loads(message)["type"])
                if events[-1] in ("done", "error"):
                    break
    assert events[-1] == "done" and "sentence" in events


def speak_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/stream/speak"


def test_a_client_that_stops_reading_audio_is_ended_and_frees_its_session(server: Server) -> None:
    url = urlsplit(server.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server blocks soon
    sock.connect((url.hostname, url.port))
    paragraph = "This sentence is here to make a lot of audio that nobody will ever read. " * 50
    # max_queue=1: the client library stops reading the socket once one message waits unread; no
    # client pings, which it could not answer either.
    with connect(
        speak_url(server),
        sock=sock,
        max_queue=1,
        ping_interval=None,
        open_timeout=scaled(30),
        close_timeout=1,
    ) as reader:
        reader.send(json.dumps({"type": "config", "voice": "espeak/en-us", "response_format": "pcm"}))
        assert json.loads(reader.recv(timeout=scaled(30)))["type"] == "ready"
        for _ in range(3):  # about 10 minutes of audio
            reader.send(json.dumps({"type": "text", "text": paragraph[:4000]}))
        reader.send(json.dumps({"type": "end"}))
        t0 = time.monotonic()

        def slot_is_free() -> bool:
            with connect(speak_url(server), open_timeout=scaled(30)) as other:
                try:
                    other.send(json.dumps({"type": "config", "voice": "espeak/en-us"}))
                    ready: bool = json.loads(other.recv(timeout=scaled(30)))["type"] == "ready"
                    return ready
                except ConnectionClosed:
                    assert other.close_code == 1013  # at capacity: still the stalled session
                    return False

        # The one speak session is held until the server gives up on the reader; then a new one fits.
        until(slot_is_free, 20, 0.5, message="the stalled session frees the only speak slot")
    assert time.monotonic() - t0 >= SEND_TIMEOUT_S - 0.5  # not before ws_send_timeout_s
