"""Reaction-time benchmark: how soon the server acts on its timers, on faults, and on a user's barge-in.

The e2e tests assert that each of these happens (and not too early); how soon is measured here, on a
machine of your choosing, so a busy CI runner cannot fail a test for being slow. Starts ``voxserve
serve`` on a free loopback port (one Piper worker, tiny.en, short timers, a stub LLM for the chat) and
prints, for ``--runs`` tries each, the median and the worst:

1. timers, as the time past the setting: the idle timeout (``WS /v1/stream/transcribe`` and the
   Realtime socket, 2 s), ``max_session_s`` (4 s), a peer that never answers pings (0.5 s + 0.5 s),
   the header and body deadlines (1 s each, to the 408);
2. faults: a worker killed with SIGKILL mid-stream, until the body ends with a transfer error; a client
   that disconnects mid-stream, until a short request is served (against the same request on an idle
   worker);
3. speech jobs (one worker shared, section by section): a live request while a job runs, and the
   ``DELETE`` of a running job;
4. chat barge-in (``WS /v1/stream/chat``): the user starts speaking over the answer, from the
   ``speech_started`` event to the ``cancelled`` event;
5. shutdown, once: SIGTERM with three WebSockets open, until all three have their 1001 close, and
   until the process has exited.

Usage: python benchmarks/reaction_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import Server, start_server, stop_server  # noqa: E402
from tests.e2e.ws_helpers import pcm16  # noqa: E402
from tests.speech_dev import by_name  # noqa: E402
from tests.stub_llm import start_stub_llm  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

IDLE_S, MAX_SESSION_S, PING_S, HEADER_S, BODY_S = 2.0, 4.0, 0.5, 1.0, 1.0
LONG = " ".join(f"Sentence {i} keeps the worker busy for a while longer." for i in range(60))
SPEECH = {"model": "tts-1", "voice": "alloy", "response_format": "pcm"}
CHAT_CONFIG = {"type": "config", "sample_rate_hz": 16000, "encoding": "linear16", "voice": "alloy"}


def ws(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def until_closed(sock: object) -> None:
    """Read a WebSocket until the server closes it (bounded)."""
    with_recv: Callable[..., object] = sock.recv  # type: ignore[attr-defined]
    try:
        for _ in range(10_000):
            with_recv(timeout=60)
    except ConnectionClosed:
        return
    raise RuntimeError("the server never closed the socket")


def idle_transcribe(server: Server) -> float:
    with connect(ws(server, "/v1/stream/transcribe")) as s:
        s.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
        s.recv(timeout=60)
        t0 = time.monotonic()
        until_closed(s)
    return time.monotonic() - t0 - IDLE_S


def idle_realtime(server: Server) -> float:
    with connect(ws(server, "/v1/realtime?intent=transcription")) as s:
        s.recv(timeout=60)
        t0 = time.monotonic()
        until_closed(s)
    return time.monotonic() - t0 - IDLE_S


def max_session(server: Server) -> float:
    with connect(ws(server, "/v1/stream/transcribe")) as s:
        s.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
        s.recv(timeout=60)
        t0 = time.monotonic()
        try:
            for _ in range(600):  # 100 ms of silence at a time, at real-time pace
                s.send(b"\x00\x00" * 1600)
                time.sleep(0.1)
        except ConnectionClosed:
            pass
    return time.monotonic() - t0 - MAX_SESSION_S


def raw_socket(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def ping_ignored(server: Server) -> float:
    with raw_socket(server) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /v1/stream/transcribe HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        t0 = time.monotonic()
        read_to_close(sock)
    return time.monotonic() - t0 - 2 * PING_S


def header_deadline(server: Server) -> float:
    with raw_socket(server) as sock:
        t0 = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert read_to_close(sock).startswith(b"HTTP/1.1 408 ")
    return time.monotonic() - t0 - HEADER_S


def body_deadline(server: Server) -> float:
    body = json.dumps(SPEECH | {"input": "Hello there."}).encode()
    with raw_socket(server) as sock:
        t0 = time.monotonic()
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        assert read_to_close(sock).startswith(b"HTTP/1.1 408 ")
    return time.monotonic() - t0 - BODY_S


def piper(server: Server) -> dict[str, object]:
    engines: dict[str, dict[str, object]] = httpx.get(f"{server.url}/ready", timeout=30).json()["engines"]
    return engines["piper"]


def wait_for_worker(server: Server, not_pid: int | None = None) -> None:
    for _ in range(600):
        state = piper(server)
        pids = state["pids"]
        assert isinstance(pids, list)
        if state["alive"] == 1 and pids and pids[0] != not_pid and state["busy"] == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"no idle Piper worker: {piper(server)}")


def worker_killed(server: Server) -> float:
    wait_for_worker(server)
    pids = piper(server)["pids"]
    assert isinstance(pids, list)
    with (
        httpx.Client(timeout=60) as c,
        c.stream("POST", f"{server.url}/v1/audio/speech", json=SPEECH | {"input": LONG}) as r,
    ):
        chunks = r.iter_raw()
        next(chunks)
        os.kill(pids[0], signal.SIGKILL)
        t0 = time.monotonic()
        try:
            for _ in chunks:
                pass
        except httpx.RemoteProtocolError:
            took = time.monotonic() - t0
        else:
            raise RuntimeError("the body ended as if complete")
    wait_for_worker(server, not_pid=pids[0])
    return took


def short_request(server: Server) -> float:
    t0 = time.monotonic()
    r = httpx.post(f"{server.url}/v1/audio/speech", json=SPEECH | {"input": "Hello again."}, timeout=60)
    assert r.status_code == 200
    return time.monotonic() - t0


def after_disconnect(server: Server) -> float:
    wait_for_worker(server)
    with (
        httpx.Client(timeout=60) as c,
        c.stream("POST", f"{server.url}/v1/audio/speech", json=SPEECH | {"input": LONG}) as r,
    ):
        next(r.iter_raw())
    return short_request(server)  # measured from the disconnect


def job_reactions(server: Server) -> tuple[float, float]:
    """(a live request while a job runs, the DELETE of the running job)."""
    wait_for_worker(server)
    text = "\n\n".join(
        f"Paragraph {i} is long enough to keep the worker busy for a good while." * 5 for i in range(30)
    )
    jobs = f"{server.url}/v1/audio/speech/jobs"
    job = httpx.post(
        jobs, json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}, timeout=60
    ).json()
    for _ in range(1200):
        if httpx.get(f"{jobs}/{job['id']}", timeout=30).json()["chars_done"] > 0:
            break
        time.sleep(0.05)
    live = short_request(server)
    t0 = time.monotonic()
    r = httpx.delete(f"{jobs}/{job['id']}", timeout=60)
    assert r.status_code == 200, r.text
    return live, time.monotonic() - t0


def chat_barge_in(server: Server, speech: bytes) -> float:
    with connect(ws(server, "/v1/stream/chat")) as s:
        s.send(json.dumps(CHAT_CONFIG))
        kinds: dict[str, float] = {}

        def pump_until(kind: str) -> None:
            while kind not in kinds:
                message = s.recv(timeout=60)
                if isinstance(message, str):
                    kinds.setdefault(json.loads(message)["type"], time.monotonic())
                elif kind == "audio":
                    kinds["audio"] = time.monotonic()

        pump_until("ready")
        s.send(json.dumps({"type": "text", "text": "Tell me a long story."}))
        pump_until("audio")
        for i in range(0, 3200 * 15, 3200):  # 1.5 s of speech
            s.send(speech[i : i + 3200])
        pump_until("cancelled")
        s.send(json.dumps({"type": "end"}))
    return kinds["cancelled"] - kinds["speech_started"]


def shutdown(server: Server) -> tuple[float, float]:
    """(all three sockets closed 1001, process exited), from SIGTERM."""
    sockets = [
        connect(ws(server, "/v1/stream/transcribe")),
        connect(ws(server, "/v1/stream/speak")),
        connect(ws(server, "/v1/realtime?intent=transcription")),
    ]
    sockets[0].send(json.dumps({"type": "config"}))
    sockets[1].send(json.dumps({"type": "config"}))
    for s in sockets:
        s.recv(timeout=60)
    t0 = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for s in sockets:
        until_closed(s)
        assert s.close_code == 1001, s.close_code
    closed = time.monotonic() - t0
    server.process.wait(60)
    return closed, time.monotonic() - t0


def measure(name: str, fn: Callable[[], float], runs: int, results: dict[str, list[float]]) -> None:
    results[name] = [fn() for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    llm = start_stub_llm(tmp / "stub.log", delay_ms=30, sentences=40)
    server = start_server(
        tmp,
        "--llm-base-url",
        llm.url,
        "--llm-model",
        "stub-model",
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "1",
            "VOXSERVE_UI_ENABLED": "false",
            "VOXSERVE_SESSION_IDLE_TIMEOUT_S": str(IDLE_S),
            "VOXSERVE_MAX_SESSION_S": str(MAX_SESSION_S),
            "VOXSERVE_WS_PING_INTERVAL_S": str(PING_S),
            "VOXSERVE_WS_PING_TIMEOUT_S": str(PING_S),
            "VOXSERVE_HEADER_TIMEOUT_S": str(HEADER_S),
            "VOXSERVE_BODY_TIMEOUT_S": str(BODY_S),
            "VOXSERVE_JOB_BATCH_CHARS": "400",
        },
    )
    results: dict[str, list[float]] = {}
    speech = pcm16(by_name("librispeech_1272-141231-0002.wav").path)
    try:
        runs = args.runs
        measure(
            f"idle close, transcribe socket (past the {IDLE_S:g} s setting)",
            lambda: idle_transcribe(server),
            runs,
            results,
        )
        measure(
            f"idle close, Realtime socket (past the {IDLE_S:g} s setting)",
            lambda: idle_realtime(server),
            runs,
            results,
        )
        measure(
            f"max_session_s close (past the {MAX_SESSION_S:g} s setting)",
            lambda: max_session(server),
            runs,
            results,
        )
        measure(
            f"unanswered pings, drop (past {PING_S:g} s + {PING_S:g} s)",
            lambda: ping_ignored(server),
            runs,
            results,
        )
        measure(
            f"header deadline, 408 (past the {HEADER_S:g} s setting)",
            lambda: header_deadline(server),
            runs,
            results,
        )
        measure(
            f"body deadline, 408 (past the {BODY_S:g} s setting)",
            lambda: body_deadline(server),
            runs,
            results,
        )
        measure("worker SIGKILL mid-stream -> body aborted", lambda: worker_killed(server), runs, results)
        measure(
            "short request on an idle worker",
            lambda: (wait_for_worker(server), short_request(server))[1],
            runs,
            results,
        )
        measure(
            "client disconnect mid-stream -> short request served",
            lambda: after_disconnect(server),
            runs,
            results,
        )
        jobs = [job_reactions(server) for _ in range(runs)]
        results["live request while a speech job runs"] = [live for live, _ in jobs]
        results["DELETE of a running speech job"] = [delete for _, delete in jobs]
        measure(
            "chat barge-in, speech_started -> cancelled", lambda: chat_barge_in(server, speech), runs, results
        )
        closed, exited = shutdown(server)
        results["SIGTERM -> 1001 on three open sockets"] = [closed]
        results["SIGTERM -> process exited"] = [exited]
    finally:
        stop_server(server)
        llm.stop()
    print(f"reaction times ({args.runs} tries each; shutdown once):")
    for name, times in results.items():
        print(f"  {name}: median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
