"""The parts of RayCluster that need no Ray: loopback detection, the environment, the GCS probe, and
stopping a local instance's processes by PID (the real cluster: tests/e2e/test_ray_e2e.py)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
from tests.timing import scaled, until, until_async

from voxserve.config import Settings
from voxserve.errors import EngineFailure
from voxserve.runtime.ray.cluster import (
    RayCluster,
    _reachable,
    _start_time,
    _zombie,
    descendants,
    is_loopback,
    ray_environment,
    stop_processes,
)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (None, True),
        ("127.0.0.1:6379", True),
        ("localhost:6379", True),
        ("[::1]:6379", True),
        ("10.0.0.5:6379", False),
        ("ray-head.default.svc:6379", False),
        ("auto", False),
    ],
)
def test_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_environment_pins_loopback_clusters_to_single_machine_mode() -> None:
    local = ray_environment(None)
    assert local["RAY_USAGE_STATS_ENABLED"] == "0"
    assert local["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert int(local["RAY_gcs_rpc_server_reconnect_timeout_s"]) > 24 * 3600
    remote = ray_environment("10.0.0.5:6379")
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in remote


async def test_the_probe_reports_a_lost_cluster_and_its_return() -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cluster = RayCluster(Settings(backend="ray", ray_probe_s=0.05))
    cluster.gcs_address = f"127.0.0.1:{port}"
    lost: list[bool] = []
    cluster.on_lost(lambda: lost.append(True))
    cluster._probe = asyncio.ensure_future(cluster._watch())
    try:
        assert await _reachable("127.0.0.1", port, timeout_s=scaled(2))
        server.close()
        await server.wait_closed()
        await until_async(lambda: lost == [True], 10, message="cluster reported lost")
        assert not cluster.available
        # It answers again (same port): available again, and reported lost only once meanwhile.
        server = await asyncio.start_server(accept, "127.0.0.1", port)
        await until_async(lambda: cluster.available, 10, message="cluster back")
        assert lost == [True]
    finally:
        server.close()
        await cluster.stop()  # never connected: stops the probe only
    assert cluster._probe is None and not cluster.connected


async def test_deploy_without_a_cluster_is_a_clean_start_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = RayCluster(Settings(backend="ray", worker_start_timeout_s=5))

    def no_ray() -> None:
        raise ImportError("No module named 'ray'")

    monkeypatch.setattr(cluster, "_connect_sync", no_ray)
    with pytest.raises(EngineFailure) as err:
        await cluster.connect()
    assert err.value.code == "engine_start_failed" and "voxserve[ray]" in err.value.message
    assert cluster._connected is None  # a later request tries again
    assert cluster.app_name("piper") == "voxserve-piper"


def test_stop_processes_stops_a_tree_by_pid() -> None:
    # A child that ignores SIGTERM (as Ray's agents do for a while) and its own child.
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('up', flush=True); "
        "time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"up\n"
        (child,) = until(lambda: descendants(parent.pid), 10, message="grandchild started")
        started = _start_time(parent.pid)
        assert started is not None
        stop_processes([(parent.pid, started), child], grace_s=0.2)
        assert parent.wait(scaled(10)) == -signal.SIGKILL  # it ignored SIGTERM: killed after the grace
        until(lambda: _start_time(child[0]) != child[1], 10, message="grandchild stopped by SIGTERM")
        stop_processes([(parent.pid, started), child], grace_s=0.2)  # nothing left: harmless
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_the_reaper_stops_what_a_killed_parent_left_behind() -> None:
    from threading import Thread

    from voxserve.runtime.ray.reaper import watch

    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('up', flush=True); "
        "time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"up\n"
        (child,) = until(lambda: descendants(parent.pid), 10, message="grandchild started")
        remembered: list[int] = []
        options = {"interval_s": 0.05, "grace_s": 0.5, "on_scan": remembered.append}
        watcher = Thread(target=watch, args=(parent.pid,), kwargs=options)
        watcher.start()
        until(lambda: remembered and remembered[-1] == 1, 10, message="the reaper saw the grandchild")
        parent.kill()  # as a front end killed with SIGKILL: no cleanup of its own
        parent.wait(scaled(10))
        watcher.join(scaled(10))
        assert not watcher.is_alive()
        # The orphan was stopped (gone, or a zombie its new parent has not reaped yet).
        assert _start_time(child[0]) != child[1] or _zombie(child[0])
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
