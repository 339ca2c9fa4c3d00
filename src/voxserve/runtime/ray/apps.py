"""The Serve application of one engine pool, for a front end and for a declarative deployment.

:func:`engine_application` is what a front end deploys (``--backend ray`` with ``ray_deploy`` on).
:func:`build` is the same application as a Serve *application builder*, for clusters whose
deployments are declared rather than made by a front end: a KubeRay ``RayService``'s
``serveConfigV2`` or ``serve deploy`` name ``import_path: voxserve.runtime.ray.apps:build`` with
``args: {pool: piper}``; the replicas read the rest of the configuration from ``VOXSERVE_*``
variables (the same ones the front ends use), and the front ends run with ``ray_deploy=false`` so that
they look the applications up instead of deploying their own (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from typing import Any

from voxserve.config import Settings
from voxserve.engines.base import EngineSpec
from voxserve.runtime.ray.replica import EngineReplica

__all__ = ["REPLICA_NICENESS_VAR", "build", "code_version", "engine_application", "pool_specs"]

REPLICA_NICENESS_VAR = "RAY_worker_niceness"
"""Ray's setting of the nice value its worker processes take (15 by default), set to 0 for replicas."""


def engine_application(settings: Settings, pool_name: str, spec: EngineSpec, replicas: int) -> Any:
    """The bound Serve application of pool ``pool_name`` (one deployment, ``engine``)."""
    from ray import serve

    # Thread pools sized before the replica's process imports anything: Ray's worker imports numpy
    # (OpenBLAS) long before the engine's worker code could set them, as a worker process does.
    threads = str(spec.threads)
    env = {"ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    env |= {var: threads for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    # Ray starts its worker processes at nice 15 (``worker_niceness``) so that its own daemons come
    # first; an engine replica is the work itself, and a local worker process runs at nice 0. At 15, a
    # replica's engine thread got a few percent of a core beside other busy processes at 0 (a 0.5 s
    # decode had not ended after 30 s beside 8 of them, and the replica was replaced as hung; the STT
    # final at load 10-14 was 2.8 s against 0.6 s locally). Ray's core worker reads the variable as
    # the process starts (Ray's own job supervisor is started at 0 the same way).
    env[REPLICA_NICENESS_VAR] = "0"
    actor: dict[str, Any] = {
        "num_cpus": settings.ray_cpus_per_replica.get(pool_name, float(spec.threads)),
        "runtime_env": {"env_vars": env},
    }
    gpus = settings.ray_gpus_per_replica.get(pool_name)
    if gpus:
        actor["num_gpus"] = gpus
    options: dict[str, Any] = {
        "name": "engine",
        # A replica runs one job at a time, as a worker process does (EngineReplica.run holds a lock),
        # and a front end sends it one job per slot. Serve may still hand it a second one: the next
        # job of a slot whose previous job Serve has not yet counted as finished (its cancel still
        # draining, or its last message still in flight). It waits in the replica and starts the
        # moment the first ends, instead of backing off in Serve's router for up to half a second.
        "max_ongoing_requests": 2,
        "request_router_config": {"initial_backoff_s": 0.005, "max_backoff_s": 0.05},
        "ray_actor_options": actor,
        "health_check_period_s": settings.ray_health_check_period_s,
        "health_check_timeout_s": max(settings.ray_health_check_period_s * 3, 10.0),
        "graceful_shutdown_timeout_s": max(settings.worker_cancel_grace_s * 2, 2.0),
        # An engine that cannot start fails the deployment after a few tries, not twenty.
        "max_constructor_retry_count": 3,
        # One access-log line per streamed request costs a replica time on the first audio's path;
        # the front end logs requests already.
        "logging_config": {"enable_access_log": False},
    }
    autoscaling = settings.ray_autoscaling.get(pool_name)
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = settings.ray_replicas.get(pool_name, replicas)
    deployment = serve.deployment(**options)(EngineReplica)
    args = (spec, settings.worker_start_timeout_s, settings.worker_cancel_grace_s)
    # Serve gives every deploy made from code a random code version, and a new version restarts every
    # replica: each front end that started cut the requests of the front ends already sharing them. A
    # version made of what a replica runs instead makes a redeploy with the same settings change
    # nothing and a new replica count only add or remove replicas (Serve's own versions are private;
    # the attribute is what serve.run reads).
    deployment._version = code_version(args, actor)
    return deployment.bind(*args)


def code_version(args: tuple[Any, ...], actor: dict[str, Any]) -> str:
    """What a replica runs, as a short stable hash: voxserve's version, the replica's arguments (the
    engine spec) and its actor options (CPUs, GPUs, thread variables)."""
    # The installed distribution's version: the package's __version__ is a layer above the runtime.
    version = importlib.metadata.version("voxserve")
    text = json.dumps([version, repr(args), actor], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pool_specs(settings: Settings) -> dict[str, tuple[EngineSpec, int]]:
    """Every pool of a server with these settings: ``{pool name: (engine spec, size)}``, as the
    registry builds them (nothing starts)."""
    from voxserve.runtime.registry import EngineRegistry

    local = settings.model_copy(update={"backend": "local"})
    registry = EngineRegistry(local)
    pools = [*registry.pools.values(), *registry.stt_pools.values()]
    return {pool.name: (pool.spec, pool.size) for pool in pools}


def build(args: dict[str, Any]) -> Any:
    """Serve application builder: ``args["pool"]`` names the pool (``piper``, ``whisper-tiny.en``)."""
    settings = Settings()
    specs = pool_specs(settings)
    pool = str(args.get("pool", ""))
    if pool not in specs:
        raise ValueError(f"unknown voxserve pool {pool!r}; these settings have {sorted(specs)}")
    spec, size = specs[pool]
    return engine_application(settings, pool, spec, size)
