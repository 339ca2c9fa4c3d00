"""Start ``voxserve serve`` as a user would, on a free loopback port, and stop it by its PID."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from benchmarks.procmem import tree
from tests.stub_llm import StubLLM, start_stub_llm
from tests.timing import WaitTimeout, scaled, until

pytestmark = pytest.mark.e2e


# Ports for the servers the tests start: above Ray's worker ports (10002-19999) and below the kernel's
# ephemeral range (32768-60999 here). A port the kernel handed out (``bind(0)``) is free only until
# the server binds it, seconds later; meanwhile any outgoing connection may take it as its local
# port (Ray's processes open many), and the server exits with "address already in use" (it did, in
# a clean-clone CI run). Nothing takes a port from this range unless it names it.
_TEST_PORTS = range(20000, 32768)


def free_port() -> int:
    """A loopback port that is free now and outside the ranges other processes draw from."""
    for _ in range(200):
        port = random.choice(_TEST_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_TEST_PORTS}")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 180,
    scheme: str = "http",
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
) -> Server:
    """``scheme="https"`` for a server started with ``--ssl-certfile``/``--ssl-keyfile`` (``verify``:
    an SSL context trusting its certificate); ``headers`` for the readiness polls (an API key)."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
        # Jobs in a temporary folder of this server's own unless the caller names VOXSERVE_JOBS_DIR
        # (the default, in the user's data folder, is shared and locked by one server at a time).
        "VOXSERVE_JOBS_TEMPORARY": "1",
        **(env or {}),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxserve.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = Server(f"{scheme}://127.0.0.1:{port}", proc, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_text()}")
        r = httpx.get(f"{server.url}/ready", timeout=scaled(2), verify=verify, headers=headers)
        return r.status_code == 200

    try:
        until(ready, ready_timeout_s, 0.2, ignore=(httpx.TransportError,), message="server /ready")
    except WaitTimeout as exc:
        stop_server(server)
        raise RuntimeError(f"{exc}:\n{server.log_text()}") from None
    return server


def stop_server(server: Server, timeout_s: float = 20) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(scaled(timeout_s))
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)
    return server.process.returncode


def kill_server(server: Server) -> None:
    """``kill -9`` the server, as the OOM killer or a crash would, then its worker processes (by the
    PIDs it had: they would notice their parent gone only at their next message)."""
    descendants = [pid for pid in tree(server.process.pid) if pid != server.process.pid]
    server.process.kill()
    server.process.wait(scaled(10))
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with every engine, shared by the e2e tests."""
    tmp = tmp_path_factory.mktemp("server")
    srv = start_server(tmp)
    # Wait for the background engines too, so tests do not race their start-up.
    httpx.get(f"{srv.url}/v1/audio/voices", timeout=scaled(180))
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


CHAT_SENTENCES = 4  # the stub's answer: "You said: ..." and four more sentences, a word every 30 ms


@pytest.fixture(scope="session")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubLLM]:
    """A stub OpenAI-compatible LLM (tests/stub_llm.py) that wants the API key ``sekret``."""
    llm = start_stub_llm(
        tmp_path_factory.mktemp("llm") / "stub.log", delay_ms=30, sentences=CHAT_SENTENCES, api_key="sekret"
    )
    try:
        yield llm
    finally:
        llm.stop()


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory: pytest.TempPathFactory, stub: StubLLM) -> Iterator[Server]:
    """A server with ``--llm-base-url`` set to the stub, piper and tiny.en, two chats at most."""
    srv = start_server(
        tmp_path_factory.mktemp("chat"),
        "--llm-base-url",
        stub.url,
        "--llm-model",
        "stub-model",
        env={
            "VOXSERVE_LLM_API_KEY": "sekret",
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_MAX_CHAT_SESSIONS": "2",
        },
    )
    try:
        yield srv
    finally:
        stop_server(srv)
