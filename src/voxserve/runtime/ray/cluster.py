"""One front end's view of a Ray cluster: connect (or start a local one), deploy engines, watch it.

Without ``ray_address`` a local Ray instance starts inside this process's session, pinned to 127.0.0.1
(node IP), without a dashboard and without usage reports; with it, the front end joins that cluster
(``ray start --head`` on a head node, or KubeRay). Serve's HTTP proxy is never started: voxserve is
the front end and reaches the engines through deployment handles.

Each engine pool is one Serve application named ``{ray_app_prefix}-{pool}`` (``voxserve-piper``,
``voxserve-whisper-tiny.en``) holding one deployment. Front ends that share a cluster share its
deployments: the first one deploys, the others find the same application (a redeploy with the same
settings changes nothing: ``apps.code_version``).

The cluster is watched with a plain TCP connect to its GCS port every ``ray_probe_s``: when it stops
answering, ``available`` turns false, :meth:`RayCluster.on_lost` listeners fail the requests in flight
(``worker_crashed``) and the pools refuse new ones with 503 ``cluster_unavailable`` until it answers
again. No Ray call is made for this, so a cluster that is gone cannot make the probe hang.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxserve.config import Settings
from voxserve.engines.base import EngineSpec
from voxserve.errors import EngineFailure

__all__ = ["RayCluster", "descendants", "is_loopback", "ray_environment", "stop_processes"]

_log = logging.getLogger("voxserve.ray")

LOOPBACK = "127.0.0.1"

_SUBMIT_ATTEMPTS = 4

_PROBE_FAILURES = 2
"""Consecutive failed probes before the cluster counts as gone (one can be a busy machine's hiccup)."""


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (``host:port``; ``None``: a local instance) stays on this machine."""
    if address is None:
        return True
    host = address.rpartition(":")[0] if ":" in address else address
    return host.strip("[]") in {"127.0.0.1", "localhost", "::1"}


def ray_environment(address: str | None) -> dict[str, str]:
    """Environment for this front end's Ray driver (and a local instance it starts): no usage reports,
    and a driver that outlives a lost cluster (Ray ends a driver that cannot reach the GCS for a minute
    by default; voxserve must stay up to answer 503 and ``/ready``).

    On loopback, Ray's single-machine mode: in cluster mode Ray 2.60 replaces a node IP of 127.0.0.1
    with the machine's routable address and its gRPC servers listen on every interface; in
    single-machine mode every server listens on 127.0.0.1 only (``ray start --address`` then refuses
    to start another node; the e2e test starts one through Ray's own node API, tests/e2e/ray_node.py)."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_gcs_rpc_server_reconnect_timeout_s": str(365 * 24 * 3600),
    }
    if is_loopback(address):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


class RayCluster:
    """The Ray cluster of one voxserve server (shared by its :class:`voxserve.runtime.ray.pool.RayPool` s)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.address = settings.ray_address
        self.available = True
        """False while the cluster's GCS does not answer (set by the probe)."""
        self.gcs_address: str | None = None
        self.started_local = False
        self._connected: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._apps: set[str] = set()
        self._submitting = asyncio.Lock()
        self._ray_lock = threading.Lock()
        """Held by every Ray call made from a thread, so that stopping never meets one midway (Ray
        ends the process when its driver is used after shutdown)."""
        self._stopping = False
        self._reaper: subprocess.Popen[bytes] | None = None

    @property
    def connected(self) -> bool:
        return self._connected is not None and self._connected.done() and not self._connected.cancelled()

    def on_lost(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time the cluster is found gone."""
        self._listeners.append(listener)

    async def connect(self) -> None:
        """Join the cluster (or start the local one), and start Serve; idempotent, shared by the pools."""
        if self._connected is None:
            self._connected = asyncio.create_task(self._connect(), name="ray-connect")
        try:
            await asyncio.shield(self._connected)
        except BaseException:
            if self._connected.done():
                self._connected = None  # let a later request try again
            raise

    async def _connect(self) -> None:
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._connect_sync), self.settings.worker_start_timeout_s
            )
        except TimeoutError:
            raise EngineFailure(
                f"the Ray cluster did not answer within {self.settings.worker_start_timeout_s:g} s",
                code="engine_start_failed",
            ) from None
        except ImportError:
            raise EngineFailure(
                "the Ray backend needs the ray extra: pip install 'voxserve[ray]'", code="engine_start_failed"
            ) from None
        _log.info(
            "ray: %s %s in %.1f s (GCS %s)",
            "started a local instance" if self.started_local else "joined",
            self.address or LOOPBACK,
            time.monotonic() - t0,
            self.gcs_address,
        )
        self._probe = asyncio.create_task(self._watch(), name="ray-probe")

    def _connect_sync(self) -> None:
        # Read by Ray when it is imported: set before the first import of ray in this process.
        for key, value in ray_environment(self.address).items():
            os.environ.setdefault(key, value)
        import ray
        from ray import serve

        s = self.settings
        common: dict[str, Any] = {
            "_node_ip_address": LOOPBACK,
            "log_to_driver": s.ray_log_to_driver,
            "configure_logging": False,
            "include_dashboard": False,
        }
        if self.address:
            ray.init(address=self.address, **common)
        else:
            # "local": a new instance even when RAY_ADDRESS names another cluster.
            ray.init(address="local", num_cpus=s.ray_num_cpus, **common)
            self.started_local = True
            # Whatever way this process ends, the instance's processes end with it (runtime/ray/reaper.py).
            self._reaper = subprocess.Popen(
                [sys.executable, "-m", "voxserve.runtime.ray.reaper", str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self.gcs_address = ray.get_runtime_context().gcs_address
        serve.start(proxy_location="Disabled", http_options={"host": LOOPBACK})

    def app_name(self, pool_name: str) -> str:
        return f"{self.settings.ray_app_prefix}-{pool_name}"

    async def deploy(self, pool_name: str, spec: EngineSpec, replicas: int) -> Any:
        """Deploy (or find) the engine's application and return its handle once it is running;
        ``engine_start_failed`` if it fails, or is not running within ``worker_start_timeout_s``."""
        await self.connect()
        name = self.app_name(pool_name)
        timeout_s = self.settings.worker_start_timeout_s
        try:
            handle = None
            if self.settings.ray_deploy:
                handle = await self._submit(name, pool_name, spec, replicas)
            deadline = time.monotonic() + timeout_s
            while True:
                status, message = await asyncio.to_thread(self._status_sync, name)
                if status == "RUNNING":
                    break
                if status == "DEPLOY_FAILED":
                    raise EngineFailure(
                        f"the Ray deployment {name} failed to start: {message[:300]}",
                        code="engine_start_failed",
                    )
                if time.monotonic() > deadline:
                    raise EngineFailure(
                        f"the Ray deployment {name} did not start within {timeout_s:g} s ({status})",
                        code="engine_start_failed",
                    )
                await asyncio.sleep(0.25)
        except EngineFailure:
            raise
        except Exception as exc:
            _log.error("ray: deploying %s failed: %s", name, exc)
            raise EngineFailure(
                f"the Ray deployment {name} failed to start: {type(exc).__name__}", code="engine_start_failed"
            ) from None
        if handle is None:  # deployed by someone else (a KubeRay RayService): look it up
            handle = await asyncio.to_thread(self._app_handle_sync, name)
        self._apps.add(name)
        return handle

    def _app_handle_sync(self, name: str) -> Any:
        from ray import serve

        with self._ray_lock:
            return serve.get_app_handle(name)

    async def _submit(self, name: str, pool_name: str, spec: EngineSpec, replicas: int) -> Any:
        # Serve 2.60 serialises a deployment's request router with a process-wide pickling switch that
        # its own router thread flips too: a submission that meets it fails with a ValueError ("... is
        # not registered for pickle by value"). Submit one at a time, and try again when that happens.
        for attempt in range(_SUBMIT_ATTEMPTS):
            try:
                async with self._submitting:
                    return await asyncio.to_thread(self._submit_sync, name, pool_name, spec, replicas)
            except ValueError as exc:
                if "pickle by value" not in str(exc) or attempt == _SUBMIT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _submit_sync(self, name: str, pool_name: str, spec: EngineSpec, replicas: int) -> Any:
        from ray import serve

        from voxserve.runtime.ray.apps import engine_application

        app = engine_application(self.settings, pool_name, spec, replicas)
        target = serve.RunTarget(target=app, name=name, route_prefix=None)
        with self._ray_lock:
            if self._stopping:
                raise EngineFailure("the server is stopping", code="engine_start_failed")
            (handle,) = serve.run_many([target], wait_for_applications_running=False)
        return handle

    def _status_sync(self, name: str) -> tuple[str, str]:
        from ray import serve

        with self._ray_lock:
            if self._stopping:
                raise EngineFailure("the server is stopping", code="engine_start_failed")
            app = serve.status().applications.get(name)
        if app is None:
            return "NOT_STARTED", ""
        return str(app.status.value), app.message

    async def _watch(self) -> None:
        assert self.gcs_address is not None
        host, _, port = self.gcs_address.rpartition(":")
        failures = 0
        while True:
            await asyncio.sleep(self.settings.ray_probe_s)
            ok = await _reachable(host, int(port), timeout_s=max(self.settings.ray_probe_s, 1.0))
            failures = 0 if ok else failures + 1
            if ok and not self.available:
                _log.warning("ray: the cluster answers again (GCS %s)", self.gcs_address)
                self.available = True
            elif failures >= _PROBE_FAILURES and self.available:
                _log.error("ray: the cluster is gone (GCS %s does not answer)", self.gcs_address)
                self.available = False
                for listener in list(self._listeners):
                    listener()

    async def stop(self) -> None:
        """Stop watching; a local instance is shut down (Serve, then Ray). A joined cluster keeps its
        deployments: other front ends may share them."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._connected is None:
            return
        if not self._connected.done():
            self._connected.cancel()
            with contextlib.suppress(BaseException):
                await self._connected
            return
        self._connected = None
        await asyncio.to_thread(self._stop_sync)
        _log.info("ray: %s", "local instance stopped" if self.started_local else "left the cluster")

    def _stop_sync(self) -> None:
        import ray
        from ray import serve

        started = descendants(os.getpid()) if self.started_local else []
        with self._ray_lock:
            self._stopping = True
            if not self.available and not self.started_local:
                # A driver whose cluster is gone aborts the process in ray.shutdown() (at exit too):
                # leave Ray alone, the process is ending.
                atexit.unregister(ray.shutdown)
                return
            if self.started_local and self.available:
                with contextlib.suppress(Exception):
                    serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
        # Ray's node agents (dashboard agent, runtime-env agent) are children of its raylet and
        # outlive it: stop every process the local instance started, by PID.
        stop_processes(started, grace_s=2.0)


async def _reachable(host: str, port: int, *, timeout_s: float) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below ``pid`` as ``(pid, start time)`` (Linux ``/proc``; empty elsewhere)."""
    out: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                started = _start_time(child)
                if started is not None:
                    out.append((child, started))
                    todo.append(child)
    return out


def _start_time(pid: int) -> str | None:
    """A process's start time (field 22 of ``/proc/PID/stat``): with the PID, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def stop_processes(processes: list[tuple[int, str]], *, grace_s: float) -> None:
    """SIGTERM each process still running (the same PID and start time), then SIGKILL after ``grace_s``."""
    alive = [(pid, t) for pid, t in processes if _start_time(pid) == t]
    for pid, _ in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        alive = [(pid, t) for pid, t in alive if _start_time(pid) == t and not _zombie(pid)]
        if alive:
            time.sleep(0.05)
    for pid, _ in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
