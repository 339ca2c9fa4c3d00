"""``voxserve serve --backend ray`` against a real Ray cluster on this machine (docs/scaling.md).

A Ray head (``ray start --head --block``, stopped by its PID) runs in Ray's single-machine mode on
127.0.0.1: Ray 2.60 in cluster mode swaps a node IP of 127.0.0.1 for the machine's routable address and
listens on every interface (see docs/scaling.md). A second node joins it: ``ray start --address=...``
refuses to start a worker node in single-machine mode, so ``tests/e2e/ray_node.py`` starts one as Ray's
own ``ray.cluster_utils.Cluster.add_node`` does (``ray._private.node.Node(..., head=False)``), also on
127.0.0.1. Every listening socket of both nodes, the front ends and the helper drivers is checked to be
on 127.0.0.1. A front end joins the head with ``--ray-address``; the engines (Piper, Whisper tiny.en)
run as Serve deployments, one replica each. Covered: speech (REST), transcription (REST and
WebSocket), a replica killed with SIGKILL mid-request (``worker_crashed`` for that request only, the
other engine goes on, Ray replaces the replica), the second node joining, a front end that scales
Piper to two replicas with one of them on the second node (a helper driver holds the head's last free
CPU while it deploys), then that whole node killed with SIGKILL mid-request (the request on its
replica ends as a worker crash, the concurrent one on the head's replica completes, Ray replaces the
lost replica on the head), another front end sharing the two replicas, and the cluster gone
(``/ready`` and requests answer 503 at once; the front end stays up).

The tests share one cluster and run in file order (the last one stops the cluster). Ray is a test
dependency (scripts/setup installs the ``ray`` extra): without it this file fails, it does not skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
NODE = Path(__file__).with_name("ray_node.py")
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}
LONG = " ".join(f"Sentence {i} keeps the replica busy for a while longer." for i in range(60))
SPEECH = {"model": "tts-1", "voice": "alloy", "response_format": "wav"}
SCALED_CPUS = '{"piper": 1.2, "whisper-tiny.en": 0.5}'
"""CPUs per replica of the front ends that run Piper on two replicas (see the node test)."""


@dataclass
class Node:
    """The second node: ``ray_node.py node``, whose process tree is every process of the node."""

    process: subprocess.Popen[bytes]
    log: Path


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
    command = [
        str(RAY),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=3",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    proc = spawn(command, env, log, lambda: gcs_answers(port), 90, "the Ray head")
    return Cluster(f"127.0.0.1:{port}", proc, env, log)


def spawn(
    command: list[str],
    env: dict[str, str],
    log: Path,
    ready: Callable[[], object],
    timeout_s: float,
    what: str,
) -> subprocess.Popen[bytes]:
    """Start ``command`` (output to ``log``) and wait until it runs and ``ready()``; if it does not in
    ``timeout_s`` (scaled), stop its process tree and fail with its log."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        until(lambda: proc.poll() is None and ready(), timeout_s, 0.2, message=what)
    except AssertionError:
        stop_tree(proc)
        raise AssertionError(f"{what} did not start:\n{_text(log)}") from None
    return proc


def start_node(tmp: Path, cluster: Cluster) -> Node:
    """A second Ray node (2 CPUs) joined to the head, on 127.0.0.1 (``tests/e2e/ray_node.py``)."""
    log = tmp / "ray-node.log"
    command = [sys.executable, str(NODE), "node", cluster.address, "2"]
    registered = re.compile(r"^node [0-9a-f]+$", re.M)
    proc = spawn(command, cluster.env, log, lambda: registered.search(_text(log)), 120, "the second Ray node")
    return Node(proc, log)


def hold_head_cpus(tmp: Path, cluster: Cluster, cpus: int) -> subprocess.Popen[bytes]:
    """A Ray driver that keeps ``cpus`` CPUs of the head reserved until it is stopped."""
    log = tmp / "ray-hold.log"
    command = [sys.executable, str(NODE), "hold", cluster.address, str(cpus)]
    return spawn(command, cluster.env, log, lambda: "held" in _text(log).splitlines(), 120, "the CPU hold")


def alive_nodes(cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster's alive nodes as Ray sees them (``ray.nodes()`` in a driver of its own)."""
    out = subprocess.run(
        [sys.executable, str(NODE), "nodes", cluster.address],
        capture_output=True,
        env=cluster.env,
        timeout=scaled(120),
        check=True,
    )
    nodes: list[dict[str, Any]] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return nodes


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def stop_tree(process: subprocess.Popen[bytes], grace_s: float = 60) -> None:
    """SIGTERM, then SIGKILL to every process of its tree if it has not ended after ``grace_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(scaled(grace_s))
        except subprocess.TimeoutExpired:
            kill_tree(process)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to ``process`` and every process below it at once, as in a crash of the machine."""
    for pid in tree(process.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    process.wait(scaled(10))


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
        stop_tree(head.process)  # SIGTERM to `ray start --block` stops every process of the node


@pytest.fixture(scope="module")
def second_node(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[Node]:
    node = start_node(tmp_path_factory.mktemp("node"), cluster)
    try:
        yield node
    finally:
        stop_tree(node.process)


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
    """The processes of an application's replicas on this test's head node (Ray titles them
    ``ray::ServeReplica:APP:engine``; other clusters on the machine are not looked at)."""
    return replicas_under(cluster.process.pid, app)


def replicas_under(root: int, app: str = "vxtest-piper") -> list[int]:
    """The processes of an application's replicas in the process tree of ``root`` (a node)."""
    pids = []
    for pid in tree(root):
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
    assert listening(pids) <= LOOPBACK
    # The engine runs at nice 0, as a local worker does (Ray's worker processes default to 15).
    for pid in replica_pids(cluster):
        assert niceness(pid) == {0}


def niceness(pid: int) -> set[int]:
    """The nice values of every thread of ``pid``."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            found.add(int(stat[stat.rindex(")") + 2 :].split()[16]))
    return found


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


def test_a_second_node_joins_on_loopback(cluster: Cluster, second_node: Node) -> None:
    nodes = alive_nodes(cluster)
    assert len(nodes) == 2, nodes
    assert {n["address"] for n in nodes} == {"127.0.0.1"}
    (joined,) = [n for n in nodes if not n["head"]]
    assert joined["resources"].get("voxserve_test_node") == 1
    # Every process of the second node (raylet, agents, workers) listens on loopback only.
    assert listening(tree(second_node.process.pid)) <= LOOPBACK


def read_to_end(chunks: Iterator[bytes]) -> tuple[int, Exception | None]:
    """The bytes of a streamed body, and the transfer error that ended it early, if any."""
    n = 0
    try:
        for chunk in chunks:
            n += len(chunk)
    except httpx.RemoteProtocolError as e:
        return n, e
    return n, None


def test_a_node_killed_mid_request_fails_that_request_only(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, server: Server, second_node: Node
) -> None:
    tmp = tmp_path_factory.mktemp("front3")
    assert len(replica_pids(cluster)) == 1
    body = SPEECH | {"input": LONG, "response_format": "pcm"}
    with contextlib.ExitStack() as stack:
        # A front end scales Piper to two replicas of 1.2 CPUs (Whisper: 0.5) while a driver holds
        # the head's last free CPU. A redeploy restarts every replica of both pools, in any order; at
        # any moment each node (2 CPUs free) has room for one Piper replica and the Whisper one, never
        # for two Piper replicas: one lands on the head, one on the second node.
        hold = hold_head_cpus(tmp, cluster, 1)
        stack.callback(stop_tree, hold)
        third = front_end(
            tmp,
            cluster,
            VOXSERVE_RAY_REPLICAS='{"piper": 2}',
            VOXSERVE_RAY_CPUS_PER_REPLICA=SCALED_CPUS,
        )
        stack.callback(stop_server, third)
        (remote,) = replicas_under(second_node.process.pid)
        (local,) = replica_pids(cluster)
        pids = tree(second_node.process.pid) + tree(hold.pid) + tree(third.process.pid)
        assert listening(pids) <= LOOPBACK
        stop_tree(hold)  # the head has room for a replacement (and Whisper's, were it there) again
        # Two long requests, one per replica: Serve routes the second to the replica that is idle.
        client = stack.enter_context(httpx.Client(timeout=scaled(60)))
        streams = []
        for _ in range(2):
            r = stack.enter_context(client.stream("POST", f"{third.url}/v1/audio/speech", json=body))
            assert r.status_code == 200
            chunks = r.iter_raw()
            next(chunks)
            streams.append(chunks)
        kill_tree(second_node.process)  # the whole node at once: raylet, agents, the replica
        # One request ends with a transfer error (never as complete, shorter audio), the other one
        # goes on to its end.
        (lost, lost_error), (kept, kept_error) = sorted(
            (read_to_end(chunks) for chunks in streams), key=lambda o: o[1] is None
        )
        assert isinstance(lost_error, httpx.RemoteProtocolError) and kept_error is None
        assert kept > 1_000_000 and lost < kept
        # The front ends stay ready; Ray replaces the lost replica, on the head.
        until(lambda: ready(third.url).status_code == 200, 60, 0.5, message="the front end ready")
        assert ready(server.url).status_code == 200
        until(lambda: len(replica_pids(cluster)) == 2, 180, 0.5, message="a replacement on the head")
        assert local in replica_pids(cluster)
        again = until(lambda: (x := speak(third.url, "Back again.")).status_code == 200 and x, 60, 0.5)
        assert again and len(again.content) > 10_000
        metrics = httpx.get(f"{third.url}/metrics").text
        assert 'voxserve_worker_restarts_total{engine="piper"} 1.0' in metrics
    # The front end that scaled Piper left; its two replicas stay for the others.
    assert len(replica_pids(cluster)) == 2


def test_a_second_front_end_shares_the_two_replicas(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, server: Server
) -> None:
    # Piper runs two replicas, both on the head, since the node test; this front end deploys the same
    # settings as the one that scaled it there, so its deploy changes nothing: no replica restarts
    # (each would cut the requests the other front ends have on it).
    before = {app: sorted(replica_pids(cluster, app)) for app in ("vxtest-piper", "vxtest-whisper-tiny.en")}
    assert len(before["vxtest-piper"]) == 2 and len(before["vxtest-whisper-tiny.en"]) == 1
    second = front_end(
        tmp_path_factory.mktemp("front2"),
        cluster,
        VOXSERVE_RAY_REPLICAS='{"piper": 2}',
        VOXSERVE_RAY_CPUS_PER_REPLICA=SCALED_CPUS,
    )
    try:
        assert {app: sorted(replica_pids(cluster, app)) for app in before} == before
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
    kill_tree(cluster.process)  # every process of the head at once: the cluster is gone, as in a crash
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
