"""RayPool and RaySlot over real replicas (EngineReplica) behind a fake Serve handle (ray/fakes.py).

What the routes rely on must hold as with local workers: admission, streams, cancellation confirmed by
the replica, ``worker_crashed`` when the replica dies mid-request (and the pool goes on), 503 when the
cluster is gone. The real cluster runs the same paths in tests/e2e/test_ray_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from tests.timing import scaled, until_async
from tests.unit.ray.fakes import FakeCluster, restore_environment

from voxserve.config import Settings
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import EngineFailure, Unavailable, UnknownVoice
from voxserve.runtime import messages as m
from voxserve.runtime.pool import collect
from voxserve.runtime.ray.cluster import RayCluster
from voxserve.runtime.ray.pool import RayPool, RaySlot
from voxserve.runtime.registry import EngineRegistry

SPEC = m.EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.02, "steps": 3})

environment = pytest.fixture(autouse=True)(restore_environment)


def request(*fragments: str, voice: str = "a") -> m.SynthRequest:
    return m.SynthRequest(
        voice=voice, speed=1.0, fmt="pcm", sample_rate=16000, fragments=fragments, parallel=True
    )


def make_pool(replicas: int = 2, **settings: Any) -> tuple[RayPool, FakeCluster, list[m.Done]]:
    cluster = FakeCluster(Settings(backend="ray", **settings), SPEC, replicas)
    done: list[m.Done] = []
    pool = RayPool(
        cluster,  # type: ignore[arg-type]
        SPEC,
        replicas,
        lazy=False,
        start_timeout_s=scaled(30),
        cancel_grace_s=scaled(2),
        queue_timeout_s=scaled(5),
        max_queued=4,
        hang_timeout_s=scaled(10),
        on_done=lambda name, d: done.append(d),
        name="fake",
    )
    return pool, cluster, done


@pytest.fixture
async def ray_pool() -> AsyncIterator[tuple[RayPool, FakeCluster, list[m.Done]]]:
    pool, cluster, done = make_pool()
    await pool.start()
    try:
        yield pool, cluster, done
    finally:
        await pool.stop()
        cluster.close()


async def test_start_deploys_and_makes_one_slot_per_replica(ray_pool: Any) -> None:
    pool, cluster, _ = ray_pool
    assert cluster.deployed == [("fake", 2)]
    assert pool.ready and pool.state == "ready"
    assert [v.id for v in pool.voices] == ["fake/a"]
    assert all(isinstance(w, RaySlot) for w in pool.workers) and pool.idle_workers == 2
    stats = pool.stats()
    assert stats["backend"] == "ray" and stats["deployment"] == "voxserve-fake"
    assert stats["cluster"] == "available" and stats["workers"] == 2 and stats["alive"] == 2


async def test_speech_streams_from_a_replica(ray_pool: Any) -> None:
    pool, cluster, done = ray_pool
    stream = await pool.synth(request("one two", "three"))
    assert len(await collect(stream)) == 2 * 2400
    assert stream.done is not None and not stream.done.cancelled and len(done) == 1
    (call,) = cluster.handle.calls
    # Parallel fragments are local-pool only: the replica got one whole job.
    assert call.replica.spec == SPEC
    await until_async(lambda: pool.idle_workers == 2, 5, message="slot back in the pool")


async def test_calls_and_errors_keep_their_codes(ray_pool: Any) -> None:
    pool, _, _ = ray_pool
    assert (await pool.call("phonemize", "Hey", "a")).phonemes == "hey"
    with pytest.raises(UnknownVoice):
        await pool.call("check_voice", "b")
    stream = await pool.synth(request("hi", voice="b"))
    with pytest.raises(UnknownVoice):
        await collect(stream)
    assert pool.restarts == 0
    await until_async(lambda: pool.idle_workers == 2, 5, message="slots back in the pool")


async def test_transcription_streams_items(ray_pool: Any) -> None:
    pool, _, _ = ray_pool
    stream = await pool.stream_call("transcribe", np.zeros(24000, np.float32), TranscribeOptions())
    values = [value async for value in stream]
    assert values[0].duration_s == 1.5
    assert [s.text for s in values[1:]] == [" word0", " word1", " word2"]


async def test_abort_cancels_on_the_replica_and_frees_the_slot(ray_pool: Any) -> None:
    pool, cluster, done = ray_pool
    stream = await pool.synth(request(*(["several words to say"] * 40)))
    first = await anext(stream)
    assert isinstance(first, m.Chunk)
    stream.abort()
    await until_async(lambda: any(d.cancelled for d in done), 5, message="cancel confirmed")
    (call,) = cluster.handle.calls
    await until_async(lambda: call.task.done(), 5, message="replica method cancelled")
    await until_async(lambda: pool.idle_workers == 2, 5, message="slot back in the pool")
    assert pool.restarts == 0
    # The replica stopped the engine: its next job is clean.
    again = await pool.synth(request("fine"))
    assert len(await collect(again)) == 2 * 800


async def test_a_replica_that_dies_mid_request_is_worker_crashed_and_the_pool_goes_on(ray_pool: Any) -> None:
    pool, cluster, _ = ray_pool
    restarted: list[str] = []
    pool.on_restart = restarted.append
    chunks = 0

    def die_on(msg: Any) -> bool:
        nonlocal chunks
        chunks += isinstance(msg, m.Chunk)
        return chunks == 2

    cluster.handle.die_on = die_on
    stream = await pool.synth(request(*(["a few words"] * 10)))
    assert isinstance(await anext(stream), m.Chunk)
    with pytest.raises(EngineFailure) as err:
        await collect(stream)
    assert err.value.code == "worker_crashed"
    cluster.handle.die_on = None
    await until_async(lambda: pool.restarts == 1 and pool.idle_workers == 2, 5, message="slot replaced")
    assert restarted == ["fake"] and len(pool.workers) == 2
    ok = await pool.synth(request("after the crash"))
    assert len(await collect(ok)) == 2 * 2400


async def test_a_lost_cluster_fails_requests_in_flight_and_refuses_new_ones(ray_pool: Any) -> None:
    pool, cluster, _ = ray_pool
    stream = await pool.synth(request(*(["words words words"] * 40)))
    assert isinstance(await anext(stream), m.Chunk)
    cluster.lose()
    with pytest.raises(EngineFailure) as err:
        await collect(stream)
    assert err.value.code == "worker_crashed"
    assert not pool.ready and pool.state == "unavailable"
    assert pool.stats()["cluster"] == "unavailable"
    with pytest.raises(Unavailable) as refused:
        await pool.synth(request("hello"))
    assert refused.value.code == "cluster_unavailable" and refused.value.status == 503
    cluster.available = True  # it answers again
    assert pool.ready


async def test_a_full_pool_answers_at_capacity() -> None:
    pool, cluster, _ = make_pool(1)
    pool.max_queued = 0
    await pool.start()
    try:
        busy = await pool.synth(request(*(["long text"] * 40)))
        with pytest.raises(Unavailable) as err:
            pool.check_admission()
        assert err.value.code == "at_capacity"
        busy.abort()
        await until_async(lambda: pool.idle_workers == 1, 5, message="slot back")
    finally:
        await pool.stop()
        cluster.close()


async def test_a_replica_silent_past_the_hang_timeout_is_worker_crashed() -> None:
    pool, cluster, _ = make_pool(1)
    pool.hang_timeout_s = 0.3
    await pool.start()
    try:
        stream = await pool.synth(request("HANG"))  # the fake engine sleeps 30 s in one piece
        with pytest.raises(EngineFailure) as err:
            await collect(stream)
        assert err.value.code == "worker_crashed"
        await until_async(lambda: pool.restarts == 1, 5, message="slot replaced")
    finally:
        await pool.stop()
        cluster.close()


def test_settings_size_the_pools() -> None:
    pool, cluster, _ = make_pool(2, ray_replicas={"fake": 3})
    assert pool.size == 3
    cluster.close()
    pool, cluster, _ = make_pool(1, ray_autoscaling={"fake": {"min_replicas": 1, "max_replicas": 4}})
    assert pool.size == 4
    cluster.close()


@pytest.fixture
def registry_settings() -> Settings:
    return Settings(
        backend="ray",
        engines=["espeak"],
        preload_engines=[],
        stt_models=["tiny.en"],
        default_voice="espeak/en-us",
    )


async def test_the_registry_builds_ray_pools_for_the_ray_backend(registry_settings: Settings) -> None:
    registry = EngineRegistry(registry_settings)
    assert isinstance(registry.pools["espeak"], RayPool)
    assert isinstance(registry.stt_pools["tiny.en"], RayPool)
    cluster = registry.pools["espeak"].cluster
    assert isinstance(cluster, RayCluster) and cluster is registry.stt_pools["tiny.en"].cluster
    assert cluster.app_name("whisper-tiny.en") == "voxserve-whisper-tiny.en"
    assert not cluster.connected
    await registry.stop()  # nothing started: nothing to stop, and no Ray imported for it


async def test_slot_protocol_details(ray_pool: Any) -> None:
    pool, _, _ = ray_pool
    slot = pool.workers[0]
    slot.ping()
    slot.send(m.Ping(1))  # a worker message with nothing to do on a replica
    slot.send(m.Cancel(12345))  # not its job: ignored
    await slot.start(1.0)
    slot.kill()
    with pytest.raises(EngineFailure) as err:
        slot.send(m.Ping(2))
    assert err.value.code == "worker_unavailable"
    await asyncio.wait_for(slot.stop(), scaled(5))
