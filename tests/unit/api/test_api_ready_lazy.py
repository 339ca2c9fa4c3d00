"""``/ready`` and ``/metrics`` with lazily started engines, through the real app: 503 until the engines
the server starts with are up, then 200 with every lazy engine listed by state; a lazy engine's first
request starts it, and its start time shows in ``/metrics``. The lifespan is not run: the test starts
the registry itself, with every pool on the fake engine (real spawned worker processes)."""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import AsyncIterator

import httpx
import pytest

from voxserve.api.app import create_app
from voxserve.api.state import AppState
from voxserve.config import Settings
from voxserve.runtime.messages import EngineSpec, SynthRequest
from voxserve.runtime.pool import collect

FAKE = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.01, "steps": 2})


@pytest.fixture
async def env() -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    settings = Settings(
        engines=["piper", "espeak", "kokoro"],
        preload_engines=["piper"],
        stt_models=["tiny.en", "base"],
        workers_per_engine=1,
        stt_workers=1,
        ui_enabled=False,
    )
    app = create_app(settings)
    state: AppState = app.state.vox
    for pool in [*state.registry.pools.values(), *state.registry.stt_pools.values()]:
        pool.spec = dataclasses.replace(FAKE)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            yield client, state
    finally:
        await state.registry.stop()


async def test_ready_waits_for_the_startup_engines_and_lists_the_lazy_ones(
    env: tuple[httpx.AsyncClient, AppState],
) -> None:
    client, state = env
    before = await client.get("/ready")
    assert before.status_code == 503 and before.json()["status"] == "starting"
    assert multiprocessing.active_children() == []  # creating the app started nothing

    await state.registry.start()
    r = await client.get("/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["lazy"] == {
        "espeak": "not_started",
        "kokoro": "not_started",
        "whisper/base": "not_started",
        "llm": "not_started",  # the embedded language model: never started by the server itself
    }
    assert body["engines"]["piper"]["state"] == "ready" and body["engines"]["piper"]["lazy"] is False
    assert body["engines"]["kokoro"]["state"] == "not_started" and body["engines"]["kokoro"]["workers"] == 0
    assert len(multiprocessing.active_children()) == 2  # piper and tiny.en, one worker each


async def test_a_lazy_engine_started_by_a_request_shows_in_ready_and_metrics(
    env: tuple[httpx.AsyncClient, AppState],
) -> None:
    client, state = env
    await state.registry.start()
    request = SynthRequest(voice="a", speed=1.0, fmt="pcm", sample_rate=16000, fragments=("hi there",))
    assert await collect(await state.registry.pool("espeak").synth(request))

    body = (await client.get("/ready")).json()
    assert body["lazy"]["espeak"] == "ready" and body["lazy"]["kokoro"] == "not_started"
    assert body["engines"]["espeak"]["start_s"] > 0
    metrics = (await client.get("/metrics")).text
    assert 'voxserve_engine_start_seconds{engine="espeak",trigger="first_use"}' in metrics
    assert 'voxserve_engine_start_seconds{engine="piper",trigger="startup"}' in metrics
    assert 'voxserve_engine_start_seconds{engine="kokoro"' not in metrics  # never started
