"""Engines nobody has asked for start on first use: the registry starts only the preloaded engines and
the default STT model, a lazy engine's first request starts it and is served, and readiness never
waits for a lazy engine. Real spawned worker processes with the fake engine."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.timing import until_async

from voxserve.config import Settings
from voxserve.errors import EngineFailure
from voxserve.runtime.messages import EngineSpec, SynthRequest
from voxserve.runtime.pool import collect
from voxserve.runtime.registry import EngineRegistry, TimedPool

FAKE = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.01, "steps": 2})
BROKEN = EngineSpec(engine="fake", factory="tests.fakes:NoSuchEngine")


def job(text: str = "hello there") -> SynthRequest:
    return SynthRequest(voice="a", speed=1.0, fmt="pcm", sample_rate=16000, fragments=(text,))


def fake_registry(**overrides: Any) -> tuple[EngineRegistry, list[tuple[str, str, float]]]:
    """A registry of piper (preloaded), kokoro (lazy), tiny.en (default STT) and base (lazy), every
    pool running the fake engine; and the ``on_engine_started`` calls it makes."""
    started: list[tuple[str, str, float]] = []
    settings = Settings(
        **{
            "engines": ["piper", "kokoro"],
            "preload_engines": ["piper"],
            "stt_models": ["tiny.en", "base"],
            "workers_per_engine": 1,
            "stt_workers": 1,
            "worker_start_timeout_s": 60,
            "ui_enabled": False,
            "llm_embedded": False,  # the embedded LLM's lazy pool: tests/unit/api/test_api_ready_lazy.py
            **overrides,
        }
    )
    reg = EngineRegistry(settings, on_engine_started=lambda *a: started.append(a))
    for pool in [*reg.pools.values(), *reg.stt_pools.values()]:
        pool.spec = dataclasses.replace(FAKE)
    return reg, started


@pytest.fixture
async def reg() -> AsyncIterator[tuple[EngineRegistry, list[tuple[str, str, float]]]]:
    registry, started = fake_registry()
    try:
        yield registry, started
    finally:
        await registry.stop()


def test_building_a_registry_starts_nothing() -> None:
    reg, started = fake_registry()
    assert multiprocessing.active_children() == []
    assert started == []
    ready, lazy = reg.readiness()
    assert not ready
    assert lazy == {"kokoro": "not_started", "whisper/base": "not_started"}
    assert all(isinstance(p, TimedPool) and p.state == "not_started" for p in reg.pools.values())


def test_the_lend_margin_reaches_every_tts_pool() -> None:
    reg, _ = fake_registry(tts_lend_margin_s=2.5)
    assert {name: pool.lend_margin_s for name, pool in reg.pools.items()} == {"piper": 2.5, "kokoro": 2.5}
    assert fake_registry()[0].pools["piper"].lend_margin_s == 0.5


async def test_start_starts_only_the_preloaded_engines_and_the_default_stt_model(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, started = reg
    await registry.start()
    assert registry.pools["piper"].ready and registry.stt_pools["tiny.en"].ready
    assert not registry.pools["kokoro"].workers and not registry.stt_pools["base"].workers
    assert len(multiprocessing.active_children()) == 2  # one worker each: piper, tiny.en
    assert registry.readiness() == (True, {"kokoro": "not_started", "whisper/base": "not_started"})
    assert sorted((name, trigger) for name, trigger, _ in started) == [
        ("piper", "startup"),
        ("whisper-tiny.en", "startup"),
    ]
    assert all(seconds > 0 for *_, seconds in started)


async def test_the_first_request_of_a_lazy_engine_starts_it_and_is_served(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, started = reg
    await registry.start()
    audio = await collect(await registry.pool("kokoro").synth(job()))
    assert len(audio) > 0
    assert registry.pools["kokoro"].ready
    assert registry.readiness() == (True, {"kokoro": "ready", "whisper/base": "not_started"})
    first_use = [(name, s) for name, trigger, s in started if trigger == "first_use"]
    assert [name for name, _ in first_use] == ["kokoro"] and first_use[0][1] > 0
    stats = registry.pools["kokoro"].stats()
    assert stats["state"] == "ready" and stats["lazy"] is True and stats["start_s"] > 0


async def test_a_lazy_stt_model_starts_on_its_first_use(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, started = reg
    await registry.start()
    assert await registry.stt_pool("base").call("voices") is not None
    assert registry.readiness() == (True, {"kokoro": "not_started", "whisper/base": "ready"})
    assert ("whisper-base", "first_use") in [(n, t) for n, t, _ in started]


async def test_requests_racing_for_a_lazy_engine_start_it_once(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, started = reg

    async def speak(text: str) -> bytes:
        return await collect(await registry.pool("kokoro").synth(job(text)))

    results = await asyncio.gather(*(speak(f"request number {i}") for i in range(3)))
    assert all(results)
    pool = registry.pools["kokoro"]
    assert len(pool.workers) == 1 and pool.restarts == 0
    assert [name for name, *_ in started] == ["kokoro"]


async def test_a_lazy_engine_that_fails_to_start_is_reported_and_tried_again(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, _ = reg
    await registry.start()
    kokoro = registry.pools["kokoro"]
    kokoro.spec = BROKEN
    with pytest.raises(EngineFailure):
        await kokoro.synth(job())
    assert registry.readiness() == (True, {"kokoro": "failed", "whisper/base": "not_started"})
    kokoro.spec = dataclasses.replace(FAKE)
    assert await collect(await kokoro.synth(job()))
    assert registry.readiness()[1]["kokoro"] == "ready"


async def test_engine_start_background_starts_the_lazy_engines_without_waiting() -> None:
    registry, started = fake_registry(engine_start="background")
    try:
        await registry.start()
        assert registry.readiness()[0]  # ready without the lazy ones
        await until_async(lambda: registry.pools["kokoro"].ready, 60, message="kokoro starts")
        assert ("kokoro", "background") in [(n, t) for n, t, _ in started]
        assert not registry.stt_pools["base"].workers  # other STT models still wait for a request
    finally:
        await registry.stop()


async def test_a_bare_voice_name_asks_the_running_engines_first(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, _ = reg
    await registry.start()
    resolved = await registry.resolve("a")  # the fake engine's voice, in every pool
    assert resolved.engine == "piper"
    assert not registry.pools["kokoro"].workers


async def test_a_voice_listing_may_leave_the_lazy_engines_stopped(
    reg: tuple[EngineRegistry, list[tuple[str, str, float]]],
) -> None:
    registry, _ = reg
    await registry.start()
    assert [v.engine for v in await registry.voices(start_lazy=False)] == ["fake"]  # piper's pool only
    assert not registry.pools["kokoro"].workers
    assert len(await registry.voices()) == 2  # the default listing starts every engine
    assert registry.pools["kokoro"].ready
