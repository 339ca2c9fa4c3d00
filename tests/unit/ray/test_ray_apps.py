"""The Serve application of a pool: what a front end deploys, and the builder a RayService names."""

from __future__ import annotations

import pytest

from voxserve.config import Settings
from voxserve.runtime.ray.apps import REPLICA_NICENESS_VAR, build, engine_application, pool_specs

# Importing ray.serve (the first test that builds an application) meets Serve's own pydantic models.
pytestmark = pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`:DeprecationWarning")


def settings(**extra: object) -> Settings:
    return Settings(engines=["piper"], stt_models=["tiny.en"], workers_per_engine=2, stt_workers=1, **extra)


def test_pool_specs_are_the_registry_pools() -> None:
    specs = pool_specs(settings(backend="ray"))
    assert sorted(specs) == ["piper", "whisper-tiny.en"]
    piper, size = specs["piper"]
    assert piper.engine == "piper" and size == 2
    assert specs["whisper-tiny.en"][0].engine == "whisper" and specs["whisper-tiny.en"][1] == 1


def test_the_application_carries_the_ray_settings() -> None:
    s = settings(
        ray_replicas={"piper": 3},
        ray_cpus_per_replica={"piper": 2.0},
        ray_gpus_per_replica={"piper": 0.5},
    )
    spec, size = pool_specs(s)["piper"]
    app = engine_application(s, "piper", spec, size)
    deployment = app._bound_deployment
    assert deployment.name == "engine"
    assert deployment.num_replicas == 3 and deployment.max_ongoing_requests == 2
    assert deployment.ray_actor_options["num_cpus"] == 2.0
    assert deployment.ray_actor_options["num_gpus"] == 0.5
    scaled = settings(ray_autoscaling={"piper": {"min_replicas": 1, "max_replicas": 4}})
    auto = engine_application(scaled, "piper", spec, size)._bound_deployment
    assert auto._deployment_config.autoscaling_config.max_replicas == 4


def test_replicas_run_at_the_niceness_of_a_local_worker() -> None:
    """Ray starts worker processes at nice 15; a replica's engine at 15 starved beside other busy
    processes (the STT final 2.8 s on Ray against 0.6 s locally on a loaded machine), so every
    replica's process asks Ray for nice 0, as a local worker process runs."""
    s = settings()
    for pool, (spec, size) in pool_specs(s).items():
        actor = engine_application(s, pool, spec, size)._bound_deployment.ray_actor_options
        env = actor["runtime_env"]["env_vars"]
        assert REPLICA_NICENESS_VAR == "RAY_worker_niceness"
        assert env[REPLICA_NICENESS_VAR] == "0", pool
        assert env["OMP_NUM_THREADS"] == str(spec.threads)


def test_the_builder_builds_a_named_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXSERVE_ENGINES", '["piper"]')
    monkeypatch.setenv("VOXSERVE_STT_MODELS", '["tiny.en"]')
    assert build({"pool": "whisper-tiny.en"})._bound_deployment.name == "engine"
    with pytest.raises(ValueError, match="unknown voxserve pool 'kokoro'"):
        build({"pool": "kokoro"})


def test_the_code_version_is_what_the_replica_runs() -> None:
    """Same settings, same version (a redeploy changes nothing); a new replica count keeps it (Serve
    only scales); other CPUs or another engine make a new one (Serve restarts the replicas)."""

    def version(s: Settings, pool: str = "piper") -> str:
        spec, size = pool_specs(s)[pool]
        deployment = engine_application(s, pool, spec, size)._bound_deployment
        assert isinstance(deployment.version, str) and len(deployment.version) == 16
        return str(deployment.version)

    base = version(settings())
    assert version(settings()) == base
    assert version(settings(ray_replicas={"piper": 3})) == base
    assert version(settings(ray_cpus_per_replica={"piper": 1.5})) != base
    assert version(settings(), "whisper-tiny.en") != base
