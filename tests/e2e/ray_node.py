"""Helper processes of ``tests/e2e/test_ray_e2e.py``, run as ``python tests/e2e/ray_node.py MODE ...``.

``node ADDRESS``: a second Ray node on this machine, joined to the head whose GCS is at ``ADDRESS``,
every server of it on 127.0.0.1. ``ray start --address=...`` refuses to start a worker node in Ray's
single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the mode a loopback head runs in); the
refusal is only in that command. This starts the node as Ray's own test helper
(``ray.cluster_utils.Cluster.add_node``) does: ``ray._private.node.Node(RayParams(...), head=False)``.
It prints ``node NODE_ID`` once the node is registered with the GCS, then blocks like
``ray start --block``: SIGTERM stops every process of the node.

``nodes ADDRESS``: a Ray driver that prints the cluster's alive nodes as JSON (``ray.nodes()``: address,
head or not, resources) and exits.

``hold ADDRESS CPUS``: a Ray driver that reserves ``CPUS`` CPUs of the head node with an idle actor
(pinned there by the head's ``node:__internal_head__`` resource), so that the test can steer a
replica onto the second node; it prints ``held`` and keeps the reservation until SIGTERM.

The environment is the head's (``ray_env()`` in the test): token authentication, single-machine mode.
"""

from __future__ import annotations

import json
import signal
import sys
import threading


def _until_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


def node(address: str, cpus: int) -> None:
    import ray._private.node
    import ray._private.services
    from ray._private.parameter import RayParams

    params = RayParams(
        gcs_address=address,
        node_ip_address="127.0.0.1",
        num_cpus=cpus,
        num_gpus=0,
        resources={"voxserve_test_node": 1.0},
        object_store_memory=100 * 1024 * 1024,
        min_worker_port=0,
        max_worker_port=0,
        node_manager_port=0,
        include_log_monitor=False,  # type: ignore[arg-type]  # a bool, as cluster_utils passes
        dashboard_agent_listen_port=None,
    )
    # shutdown_at_exit: a SIGTERM handler (and an atexit hook) that stop every process of the node;
    # spawn_reaper: the node's processes end with this one however it ends.
    n = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    ray._private.services.wait_for_node(n.gcs_address, n.plasma_store_socket_name, 60)
    print(f"node {n.node_id}", flush=True)
    while True:  # the node's SIGTERM handler stops its processes and exits
        signal.pause()


def nodes(address: str) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    alive = [
        {
            "address": n["NodeManagerAddress"],
            "head": "node:__internal_head__" in n["Resources"],
            "resources": n["Resources"],
        }
        for n in ray.nodes()  # type: ignore[no-untyped-call]
        if n["Alive"]
    ]
    print(json.dumps(alive), flush=True)
    ray.shutdown()


def hold(address: str, cpus: float) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)

    @ray.remote
    class Hold:
        def ready(self) -> bool:
            return True

    actor = Hold.options(  # type: ignore[attr-defined]
        num_cpus=cpus, resources={"node:__internal_head__": 0.001}
    ).remote()
    ray.get(actor.ready.remote(), timeout=120)
    print("held", flush=True)
    _until_sigterm()
    ray.shutdown()


if __name__ == "__main__":
    mode, address, *rest = sys.argv[1:]
    if mode == "node":
        node(address, int(rest[0]) if rest else 1)
    elif mode == "nodes":
        nodes(address)
    elif mode == "hold":
        hold(address, float(rest[0]) if rest else 1.0)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
