"""``voxserve serve --backend ray`` against a real Ray cluster on this machine (docs/scaling.md).

A Ray head (``ray start --head --block``, stopped by its PID) runs in Ray's single-machine mode on
127.0.0.1: Ray 2.60 in cluster mode swaps a node IP of 127.0.0.1 for the machine's routable address and
listens on every interface, so a second node process cannot join a loopback-only head (see
docs/scaling.md); every listening socket of the cluster and the front ends is checked to be on
127.0.0.1. A front end joins it with ``--ray-address``; the engines (Piper, Whisper tiny.en) run as
Serve deployments, one replica each. Covered: speech (REST), transcription (REST and WebSocket), a
replica killed with SIGKILL mid-request (``worker_crashed`` for that request only, the other engine
goes on, Ray replaces the replica), a second front end that scales Piper to two replicas and shares
them, and the cluster gone (``/ready`` and requests answer 503 at once; the front end stays up).

The tests share one cluster and run in file order (the last one stops the cluster). Ray is a test
dependency (scripts/setup installs the ``ray`` extra): without it this file fails, it does not skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import ray  # noqa: F401  (a missing extra fails here, loudly)
from tests.e2e.conftest import Server, free_port, start_server, stop_server
from tests.e2e.ws_helpers import drain, pcm16
from tests.speech_dev import by_name
from tests.timing import scaled, until
from tests.wer import errors
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e

RAY = Path(sys.executable).with_name("ray")
LONG = " ".join(f"Sentence {i} keeps the replica busy for a while longer." for i in range(60))
SPEECH = {"model": "tts-1", "voice": "alloy", "response_format": "wav"}


@dataclass
class Cluster:
    address: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path


def ray_env() -> dict[str, str]:
    """What the head and every front end share: single-machine mode, a token of their own (no file in
    the user's home), no usage reports."""
    return {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "HF_HUB_OFFLINE": "1",
        "ORT_DISABLE_TELEMETRY": "1",
    }


def gcs_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_head(tmp: Path) -> Cluster:
    port = free_port()
    env = ray_env()
    log = tmp / "ray-head.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(RAY),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=3",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    cluster = Cluster(f"127.0.0.1:{port}", proc, env, log)
    try:
        until(lambda: proc.poll() is None and gcs_answers(port), 90, 0.2, message="Ray head GCS")
    except AssertionError:
        stop_head(cluster)
        raise AssertionError(f"the Ray head did not start:\n{log.read_text(errors='replace')}") from None
    return cluster


def stop_head(cluster: Cluster) -> None:
    """SIGTERM to ``ray start --block`` stops every process of the node (it drains first)."""
    if cluster.process.poll() is None:
        cluster.process.send_signal(signal.SIGTERM)
        try:
            cluster.process.wait(scaled(60))
        except subprocess.TimeoutExpired:
            kill_head(cluster)


def kill_head(cluster: Cluster) -> None:
    """SIGKILL to every process of the head node at once: the cluster is gone, as in a crash."""
    for pid in tree(cluster.process.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    cluster.process.wait(scaled(10))


def front_end(tmp: Path, cluster: Cluster, **extra: str) -> Server:
    env = {
        **cluster.env,
        "VOXSERVE_ENGINES": '["piper"]',
        "VOXSERVE_STT_MODELS": '["tiny.en"]',
        "VOXSERVE_WORKERS_PER_ENGINE": "1",
        "VOXSERVE_STT_WORKERS": "1",
        "VOXSERVE_UI_ENABLED": "false",
        "VOXSERVE_RAY_PROBE_S": "0.5",
        "VOXSERVE_RAY_APP_PREFIX": "vxtest",
        **extra,
    }
    return start_server(
        tmp, "--backend", "ray", "--ray-address", cluster.address, env=env, ready_timeout_s=240
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    head = start_head(tmp_path_factory.mktemp("ray"))
    try:
        yield head
    finally:
        stop_head(head)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[Server]:
    srv = front_end(tmp_path_factory.mktemp("front"), cluster)
    try:
        yield srv
    finally:
        stop_server(srv)


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def replica_pids(cluster: Cluster, app: str = "vxtest-piper") -> list[int]:
    """The processes of an application's replicas on this test's cluster (Ray titles them
    ``ray::ServeReplica:APP:engine``; other clusters on the machine are not looked at)."""
    pids = []
    for pid in tree(cluster.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"ServeReplica:{app}:".encode() in cmdline:
            pids.append(pid)
    return pids


def listening(pids: list[int]) -> set[str]:
    """The local addresses of the TCP sockets these processes listen on."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address = fields[1].split(":")[0]
                found.add(_ip(address, width))
    return found


def _ip(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/ready", timeout=scaled(10))


def speak(url: str, text: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json=SPEECH | {"input": text}, timeout=scaled(60))


def test_speech_over_rest_from_a_replica(cluster: Cluster, server: Server) -> None:
    body = ready(server.url).json()
    piper = body["engines"]["piper"]
    assert body["status"] == "ready"
    assert piper["backend"] == "ray" and piper["deployment"] == "vxtest-piper"
    assert piper["cluster"] == "available" and piper["workers"] == 1
    r = speak(server.url, "Hello from a Ray replica. This is the second sentence.")
    assert r.status_code == 200 and r.content[:4] == b"RIFF" and len(r.content) > 50_000
    # Every socket of the cluster and the front end listens on loopback only.
    pids = tree(cluster.process.pid) + tree(server.process.pid) + replica_pids(cluster)
    assert listening(pids) <= {"127.0.0.1", "::ffff:127.0.0.1"}


def test_transcription_over_rest_and_a_round_trip(server: Server) -> None:
    u = by_name("librispeech_1272-141231-0002.wav")
    with open(u.path, "rb") as f:
        r = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            files={"file": ("speech.wav", f, "audio/wav")},
            data={"model": "whisper-1"},
            timeout=scaled(120),
        )
    assert r.status_code == 200, r.text
    e, n = errors(u.text, r.json()["text"])
    assert e / n <= 0.25, r.json()["text"]
    audio = speak(server.url, "The quick brown fox jumps over the lazy dog.").content
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("tts.wav", audio, "audio/wav")},
        data={"model": "whisper-1"},
        timeout=scaled(120),
    )
    assert "fox" in r.json()["text"].lower()


def test_streaming_transcription_over_websocket(server: Server) -> None:
    u = by_name("librispeech_1272-141231-0002.wav")
    pcm = pcm16(u.path)
    url = server.url.replace("http://", "ws://") + "/v1/stream/transcribe"
    with connect(url) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
        assert json.loads(ws.recv(timeout=scaled(30)))["type"] == "ready"
        for i in range(0, len(pcm), 32000):  # one second per message, as fast as it goes
            ws.send(pcm[i : i + 32000])
        ws.send(json.dumps({"type": "end"}))
        events, code = drain(ws, timeout_s=120)
    assert code == 1000
    finals = [e["results"][0] for e in events if e["type"] == "result" and e["results"][0]["is_final"]]
    text = " ".join(f["alternatives"][0]["transcript"] for f in finals)
    e, n = errors(u.text, text)
    assert e / n <= 0.3, text


def test_a_replica_killed_mid_request_fails_that_request_only(cluster: Cluster, server: Server) -> None:
    (old,) = replica_pids(cluster)
    transcribed: list[httpx.Response] = []
    u = by_name("librispeech_1272-141231-0002.wav")

    def transcribe() -> None:  # the other engine, meanwhile
        with open(u.path, "rb") as f:
            transcribed.append(
                httpx.post(
                    f"{server.url}/v1/audio/transcriptions",
                    files={"file": ("speech.wav", f, "audio/wav")},
                    data={"model": "whisper-1"},
                    timeout=scaled(120),
                )
            )

    body = SPEECH | {"input": LONG, "response_format": "pcm"}
    with (
        httpx.Client(timeout=scaled(60)) as c,
        c.stream("POST", f"{server.url}/v1/audio/speech", json=body) as r,
    ):
        assert r.status_code == 200
        chunks = r.iter_raw()
        next(chunks)
        other = threading.Thread(target=transcribe)
        other.start()
        os.kill(old, signal.SIGKILL)
        # The body ends with a transfer error (never looks like complete, shorter audio), no hang.
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    other.join(scaled(120))
    assert transcribed and transcribed[0].status_code == 200 and transcribed[0].json()["text"]
    # Ray replaces the replica; the next speech request is served by it.
    new = until(lambda: [p for p in replica_pids(cluster) if p != old], 120, 0.5, message="new replica")
    assert new
    r = until(lambda: (r := speak(server.url, "Back again.")).status_code == 200 and r, 60, 0.5)
    assert len(r.content) > 10_000
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'voxserve_worker_restarts_total{engine="piper"} 1.0' in metrics


def test_a_second_front_end_scales_piper_to_two_replicas_and_shares_them(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, server: Server
) -> None:
    second = front_end(tmp_path_factory.mktemp("front2"), cluster, VOXSERVE_RAY_REPLICAS='{"piper": 2}')
    try:
        until(lambda: len(replica_pids(cluster)) == 2, 120, 0.5, message="two piper replicas")
        assert ready(second.url).json()["engines"]["piper"]["workers"] == 2
        results: dict[str, int] = {}

        def request(name: str, url: str) -> None:
            results[name] = speak(url, LONG[:400]).status_code

        threads = [
            threading.Thread(target=request, args=(n, u)) for n, u in (("a", server.url), ("b", second.url))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(120))
        assert results == {"a": 200, "b": 200}
    finally:
        stop_server(second)
    # A front end that joined a cluster leaves its deployments to the others.
    assert len(replica_pids(cluster)) == 2
    assert speak(server.url, "Still here.").status_code == 200


def test_the_cluster_gone_is_503_at_once_and_the_front_end_stays(cluster: Cluster, server: Server) -> None:
    kill_head(cluster)
    until(lambda: ready(server.url).status_code == 503, 30, 0.2, message="/ready says the cluster is gone")
    body = ready(server.url).json()
    assert body["engines"]["piper"]["cluster"] == "unavailable"
    assert body["engines"]["piper"]["state"] == "unavailable"
    # Refused at once, not left to hang (a request that waited would hit this read timeout).
    r = httpx.post(
        f"{server.url}/v1/audio/speech", json=SPEECH | {"input": "Anyone there?"}, timeout=scaled(10)
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "cluster_unavailable"
    assert server.process.poll() is None
    # A clean stop: uvicorn re-raises the SIGTERM it handled once it is done (no abort, no kill).
    assert stop_server(server) in (0, -signal.SIGTERM)
