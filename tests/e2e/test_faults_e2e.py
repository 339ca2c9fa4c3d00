"""A worker killed with SIGKILL mid-request: a clean error, then a replacement serves new requests."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server
from tests.timing import deadline_in, scaled, until

pytestmark = pytest.mark.e2e

LONG = " ".join(f"Sentence {i} keeps the worker busy for a while longer." for i in range(60))


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("faults"),
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "1",
            "VOXSERVE_MAX_STT_SESSIONS": "1",
            "VOXSERVE_SESSION_IDLE_TIMEOUT_S": "2",
            "VOXSERVE_MAX_SESSION_S": "4",
            "VOXSERVE_MAX_QUEUED_REQUESTS": "1",
            "VOXSERVE_WS_PING_INTERVAL_S": "0.5",
            "VOXSERVE_WS_PING_TIMEOUT_S": "0.5",
        },
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def worker_pid(url: str) -> int:
    pids = httpx.get(f"{url}/ready").json()["engines"]["piper"]["pids"]
    assert len(pids) == 1
    return int(pids[0])


def wait_replaced(url: str, old: int, timeout_s: float = 30) -> int:
    def replacement() -> int | None:
        r = httpx.get(f"{url}/ready")
        if r.status_code == 200:
            pids = r.json()["engines"]["piper"]["pids"]
            if pids and pids[0] != old and r.json()["engines"]["piper"]["alive"] == 1:
                return int(pids[0])
        return None

    return until(replacement, timeout_s, 0.1, message=f"worker {old} replaced")


def test_kill_during_audio_stream_aborts_the_body(one_worker: Server) -> None:
    url = one_worker.url
    pid = worker_pid(url)
    body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}
    with httpx.Client(timeout=30) as c, c.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        chunks = r.iter_raw()
        next(chunks)
        os.kill(pid, signal.SIGKILL)
        # The body must end with a transfer error (never look like complete, shorter audio), not hang
        # until the client's read timeout (how soon: benchmarks/reaction_bench.py).
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    new = wait_replaced(url, pid)
    assert new != pid
    r = httpx.post(f"{url}/v1/audio/speech", json=body | {"input": "Back again."}, timeout=30)
    assert r.status_code == 200 and len(r.content) > 10000
    metrics = httpx.get(f"{url}/metrics").text
    assert 'voxserve_worker_restarts_total{engine="piper"} 1.0' in metrics


def test_kill_during_sse_ends_with_error_event(one_worker: Server) -> None:
    url = one_worker.url
    pid = worker_pid(url)
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": LONG,
        "response_format": "pcm",
        "stream_format": "sse",
    }
    events = []
    with httpx.Client(timeout=30) as c, c.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        killed = False
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(json.loads(line[6:]))
            if not killed:
                os.kill(pid, signal.SIGKILL)
                killed = True
    assert events[0]["type"] == "speech.audio.delta"
    assert events[-1]["type"] == "speech.audio.error"
    assert events[-1]["error"]["code"] == "worker_crashed"
    wait_replaced(url, pid)


def test_killed_workers_leave_no_processes(one_worker: Server) -> None:
    worker_pid(one_worker.url)
    engines = httpx.get(f"{one_worker.url}/ready").json()["engines"]
    current = sorted(p for e in engines.values() for p in e["pids"])
    pid = one_worker.process.pid
    # Children are listed per thread: workers are spawned from a helper thread, off the event loop.
    children = [
        c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()
    ]
    workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert sorted(workers) == current


def test_streaming_sessions_at_capacity_close_1013(one_worker: Server) -> None:
    from tests.e2e.ws_helpers import drain
    from websockets.sync.client import connect

    url = one_worker.url.replace("http://", "ws://") + "/v1/stream/transcribe"
    config = json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"})
    with connect(url) as first:  # N = max_stt_sessions = 1: accepted
        first.send(config)
        assert json.loads(first.recv(timeout=scaled(30)))["type"] == "ready"
        with connect(url) as second:  # N + 1: told to come back later
            _, code = drain(second, timeout_s=5)
        # Refused, not queued: closed while the first session still holds the slot (how fast:
        # benchmarks/load_bench.py, against the 100 ms goal).
        assert code == 1013
    with connect(url) as again:  # the slot is free again
        again.send(config)
        assert json.loads(again.recv(timeout=scaled(30)))["type"] == "ready"


def test_silent_stream_is_closed_after_the_idle_timeout(one_worker: Server) -> None:
    from tests.e2e.ws_helpers import drain
    from websockets.sync.client import connect

    url = one_worker.url.replace("http://", "ws://") + "/v1/stream/transcribe"
    with connect(url) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
        assert json.loads(ws.recv(timeout=scaled(30)))["idle_timeout_s"] == 2.0
        t0 = time.monotonic()
        _, code = drain(ws, timeout_s=10)
        elapsed = time.monotonic() - t0
        reason = ws.close_reason
    assert code == 1000 and "idle" in (reason or "")
    # Not before the 2 s idle timeout (a lower bound holds on any machine; how soon after it:
    # benchmarks/reaction_bench.py).
    assert elapsed > 1.9


def test_stream_longer_than_max_session_s_is_closed_1008(one_worker: Server) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = one_worker.url.replace("http://", "ws://") + "/v1/stream/transcribe"
    with connect(url) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
        assert json.loads(ws.recv(timeout=scaled(30)))["max_session_s"] == 4.0
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            for _ in range(int(scaled(200))):  # 100 ms of silence at a time, at real-time pace
                ws.send(b"\x00\x00" * 1600)
                time.sleep(0.1)
        elapsed = time.monotonic() - t0
    assert ws.close_code == 1008 and "maximum session length" in (ws.close_reason or ""), ws.close_reason
    assert elapsed > 3.5  # not before max_session_s = 4 (how soon after: benchmarks/reaction_bench.py)


def test_realtime_idle_and_max_session(one_worker: Server) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = one_worker.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    with connect(url) as silent:
        # A GA client: no OpenAI-Beta header, whatever the query says.
        assert json.loads(silent.recv(timeout=scaled(30)))["type"] == "session.created"
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            silent.recv(timeout=scaled(10))
        assert silent.close_code == 1000 and "idle" in (silent.close_reason or "")
        assert time.monotonic() - t0 > 1.9  # not before the 2 s idle timeout
    with connect(url) as talker:
        talker.recv(timeout=scaled(30))
        t0 = time.monotonic()
        chunk = json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()}
        )
        with pytest.raises(ConnectionClosed):
            for _ in range(int(scaled(200))):  # 100 ms of silence at a time, at real-time pace
                talker.send(chunk)
                time.sleep(0.1)
        assert talker.close_code == 1008, talker.close_reason
        assert time.monotonic() - t0 > 3.5  # not before max_session_s = 4


def test_shutdown_closes_streams_1001_and_leaves_no_processes(tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    srv = start_server(
        tmp_path,
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_UI_ENABLED": "0",
        },
    )
    try:
        engines = httpx.get(f"{srv.url}/ready").json()["engines"]
        pids = [pid for pool in engines.values() for pid in pool["pids"]]
        ws_url = srv.url.replace("http://", "ws://")
        with (
            connect(ws_url + "/v1/stream/transcribe") as transcribe,
            connect(ws_url + "/v1/stream/speak") as speak,
            connect(ws_url + "/v1/realtime?intent=transcription") as realtime,
        ):
            sockets = [transcribe, speak, realtime]
            transcribe.send(json.dumps({"type": "config"}))
            speak.send(json.dumps({"type": "config"}))
            for ws in sockets:
                assert "type" in json.loads(ws.recv(timeout=scaled(30)))
            srv.process.send_signal(signal.SIGTERM)
            # Each socket gets its 1001 close (how soon after SIGTERM: benchmarks/reaction_bench.py).
            for ws in sockets:
                with pytest.raises(ConnectionClosed):
                    for _ in range(1000):  # bounded: events the server may still send first
                        ws.recv(timeout=scaled(10))
                assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
        srv.process.wait(scaled(30))
    finally:
        stop_server(srv)
    until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
        10,
        0.1,
        message=lambda: f"no orphan worker processes: {[p for p in pids if Path(f'/proc/{p}').exists()]}",
    )


def test_over_capacity_requests_get_503_at_once(one_worker: Server) -> None:
    """One worker busy, one request queued (max_queued_requests = 1): the next is refused at once, not
    queued (benchmarks/load_bench.py measures how fast against the 100 ms goal)."""
    import threading

    url = one_worker.url
    body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}
    queued: list[int] = []
    with httpx.Client(timeout=60) as c, c.stream("POST", f"{url}/v1/audio/speech", json=body) as busy:
        assert busy.status_code == 200
        chunks = busy.iter_raw()
        next(chunks)  # the only worker is now busy

        def wait_in_queue() -> None:
            r = httpx.post(f"{url}/v1/audio/speech", json=body | {"input": "Queued."}, timeout=60)
            queued.append(r.status_code)

        waiter = threading.Thread(target=wait_in_queue)
        waiter.start()
        until(
            lambda: httpx.get(f"{url}/ready").json()["engines"]["piper"]["queued"] == 1,
            10,
            message="the second request reaches the queue",
        )
        # Refused while the queue is still full: the answer comes before the busy request ends, so it
        # was not queued (how fast: benchmarks/load_bench.py, against the 100 ms goal).
        refused = httpx.post(
            f"{url}/v1/audio/speech", json=body | {"input": "One too many."}, timeout=scaled(10)
        )
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "at_capacity"
        assert "retry-after" in refused.headers
        assert queued == []
    # The busy client left (its job is cancelled): the queued request is served.
    waiter.join(scaled(60))
    assert queued == [200]


def test_killing_one_worker_leaves_the_other_request_whole(tmp_path: Path) -> None:
    """Two requests on two workers; one worker is killed: its request fails, the other completes."""
    import threading

    srv = start_server(
        tmp_path,
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "2",
            "VOXSERVE_UI_ENABLED": "0",
        },
    )
    try:
        url = srv.url
        body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}
        outcomes: list[str] = []
        started = threading.Barrier(3, timeout=scaled(60))

        def request() -> None:
            with httpx.Client(timeout=120) as c, c.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
                chunks = r.iter_raw()
                next(chunks)
                started.wait()
                try:
                    size = sum(len(chunk) for chunk in chunks)
                    outcomes.append(f"complete {size}")
                except httpx.RemoteProtocolError:
                    outcomes.append("aborted")

        threads = [threading.Thread(target=request) for _ in range(2)]
        for t in threads:
            t.start()
        started.wait()  # both requests stream, each on its own worker
        pids = httpx.get(f"{url}/ready").json()["engines"]["piper"]["pids"]
        os.kill(pids[0], signal.SIGKILL)
        for t in threads:
            t.join(scaled(120))
        assert sorted(o.split()[0] for o in outcomes) == ["aborted", "complete"], outcomes
        complete = next(o for o in outcomes if o.startswith("complete"))
        assert int(complete.split()[1]) > 48000 * 60  # minutes of audio, not a truncated body
    finally:
        stop_server(srv)


def test_a_peer_that_ignores_pings_is_dropped(one_worker: Server) -> None:
    """A raw WebSocket client that never answers the server's pings (ws_ping_interval_s = 0.5,
    ws_ping_timeout_s = 0.5 here, before the 2 s idle timeout) is closed with 1011 (keepalive
    timeout) and disconnected; the server goes on."""
    import base64 as b64
    import socket
    import struct

    host, port = one_worker.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=scaled(10)) as sock:
        key = b64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /v1/stream/transcribe HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        received = b""
        deadline = deadline_in(15)
        while time.monotonic() < deadline:  # bounded: read until the server hangs up
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    head, _, frames = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    opcodes = []
    while len(frames) >= 2:  # server frames are unmasked; these are all short
        opcodes.append(frames[0] & 0x0F)
        length = frames[1] & 0x7F
        if opcodes[-1] == 0x8 and length >= 2:
            (close_code,) = struct.unpack("!H", frames[2:4])
        frames = frames[2 + length :]
    assert 0x9 in opcodes, opcodes  # the server pinged
    # Then gave up on us (how soon after the ping timeout: benchmarks/reaction_bench.py).
    assert opcodes[-1] == 0x8 and close_code == 1011, opcodes
    assert httpx.get(f"{one_worker.url}/health").status_code == 200
