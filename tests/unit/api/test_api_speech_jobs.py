"""``/v1/audio/speech/jobs`` through the real app and middleware, with one fake-engine worker process.

The app's lifespan is not run (it would start the real engines): the test starts the job store and a
pool of :class:`tests.fakes.FakeEngine` itself and puts that pool in the registry.
"""

from __future__ import annotations

import contextlib
import json
import re
import wave
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.timing import until_async

from voxserve.api.app import create_app
from voxserve.api.state import AppState
from voxserve.config import Settings
from voxserve.runtime.messages import EngineSpec
from voxserve.runtime.pool import EnginePool

RATE = 16000
SPEC = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.01, "steps": 2})
JOBS = "/v1/audio/speech/jobs"
# The fake speaks 0.05 s per word.
TEXT = "\n\n".join(f"Paragraph {i} has exactly seven words here." for i in range(40))  # 1.9k characters


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    async with serving(tmp_path) as pair:
        yield pair


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, engine: str = "fake", **extra: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    settings = Settings(
        **extra,
        engines=["espeak"],
        default_voice="espeak/en-us",
        ui_enabled=False,
        output_sample_rate=RATE,
        max_input_chars=200,
        max_job_chars=5000,
        max_jobs=2,
        job_batch_chars=200,
        jobs_dir=tmp_path / "jobs",
    )
    app = create_app(settings)
    state: AppState = app.state.vox
    pool = EnginePool(SPEC, 1, start_timeout_s=60, cancel_grace_s=0.5, queue_timeout_s=5)
    state.registry.pools = {engine: pool}
    await pool.start()
    await state.jobs.start()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            yield client, state
    finally:
        await state.jobs.stop()
        await pool.stop()


def body(text: str = TEXT, **extra: Any) -> dict[str, Any]:
    return {"model": "tts-1", "voice": "a", "input": text, "response_format": "wav", **extra}


async def wait_status(client: httpx.AsyncClient, job_id: str, *statuses: str) -> dict[str, Any]:
    async def job_in_status() -> dict[str, Any] | None:
        job: dict[str, Any] = (await client.get(f"{JOBS}/{job_id}")).json()
        return job if job["status"] in statuses else None

    return await until_async(job_in_status, 30, message=f"job {job_id} reaches {statuses}")


async def test_job_lifecycle(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, state = env
    r = await client.post(JOBS, json=body())
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"{JOBS}/{job['id']}"
    assert set(job) >= {
        "id",
        "object",
        "status",
        "created_at",
        "input_chars",
        "chars_done",
        "audio_seconds",
        "response_format",
        "error",
    }
    assert job["object"] == "speech.job" and job["status"] in ("queued", "running")
    assert job["input_chars"] == len(TEXT) and job["response_format"] == "wav" and job["error"] is None
    assert job["voice"] == "fake/a"

    early = await client.get(f"{JOBS}/{job['id']}/audio")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_finished"

    done = await wait_status(client, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["chars_done"] == len(TEXT)
    expected_s = 0.05 * len(TEXT.split())
    assert done["audio_seconds"] == pytest.approx(expected_s, abs=0.01)

    audio = await client.get(f"{JOBS}/{job['id']}/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    assert int(audio.headers["content-length"]) == len(audio.content) == done["bytes"]
    assert audio.headers["content-disposition"] == f'attachment; filename="{job["id"]}.wav"'
    with wave.open(BytesIO(audio.content)) as w:
        assert w.getframerate() == RATE
        assert w.getnframes() / RATE == pytest.approx(expected_s, abs=0.01)

    listed = (await client.get(JOBS)).json()
    assert listed["object"] == "list" and [j["id"] for j in listed["data"]] == [job["id"]]

    deleted = await client.delete(f"{JOBS}/{job['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert not (state.jobs.directory / f"{job['id']}.wav").exists()
    for method, path in (("GET", ""), ("GET", "/audio"), ("DELETE", "")):
        r = await client.request(method, f"{JOBS}/{job['id']}{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_job", (method, path)


async def test_pcm_download_describes_itself(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, _ = env
    job = (await client.post(JOBS, json=body("Four words right here.", response_format="pcm"))).json()
    assert (await wait_status(client, job["id"], "succeeded", "failed"))["status"] == "succeeded"
    audio = await client.get(f"{JOBS}/{job['id']}/audio")
    assert audio.headers["content-type"] == "audio/pcm"
    assert audio.headers["x-audio-sample-rate"] == str(RATE)
    assert audio.headers["x-audio-encoding"] == "pcm_s16le"
    assert len(audio.content) == 2 * round(0.05 * 4 * RATE)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (body("a " * 2500 + "b"), 413, "text_too_long"),
        (body(voice="nobody"), 404, "unknown_voice"),
        (body(model="nope"), 404, "model_not_found"),
        (body("🎉 " * 300), 422, "no_speakable_text"),
        (body("Hello [pause = 1] there.", markup="strict"), 422, "invalid_tag"),
        (body("Say [this](/bad!/) now."), 422, "invalid_phonemes"),
        (body(speed=9), 422, "invalid_speed"),
        (body(response_format="ogg"), 422, "unsupported_format"),
        (body(stream=False), 422, "unknown_field"),
    ],
)
async def test_validation_before_202(
    env: tuple[httpx.AsyncClient, AppState], payload: dict[str, Any], status: int, code: str
) -> None:
    client, state = env
    r = await client.post(JOBS, json=payload)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert state.jobs.list_jobs() == []


async def test_input_over_max_input_chars_is_a_job(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, _ = env
    assert (await client.post("/v1/audio/speech", json=body())).status_code == 413
    assert (await client.post(JOBS, json=body())).status_code == 202


async def test_body_limit_fits_the_longest_job(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, state = env
    # 5000 emoji, each escaped as a surrogate pair: 60 kB, far over max_body_bytes (1 MiB here is
    # bigger, so shrink the comparison to the job limit itself).
    content = json.dumps(body("🎉" * 5000)).encode()
    assert len(content) > 5000 * 12
    r = await client.post(JOBS, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_speakable_text"  # read and parsed
    over = b" " * (state.settings.max_job_body_bytes + 1)
    r = await client.post(JOBS, content=over, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    # Other routes keep the ordinary limit.
    r = await client.post("/v1/audio/speech", content=b" " * (state.settings.max_body_bytes + 1))
    assert r.status_code == 413


async def test_too_many_jobs_and_delete_running(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, state = env
    long_text = "\n\n".join(["Many words to say in this paragraph, one after another."] * 60)
    first = (await client.post(JOBS, json=body(long_text))).json()
    second = (await client.post(JOBS, json=body(long_text))).json()
    third = await client.post(JOBS, json=body())
    assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_jobs"
    assert third.headers["retry-after"] == "30"

    running = await wait_status(client, first["id"], "running")
    assert (await client.get(f"{JOBS}/{second['id']}")).json()["status"] == "queued"

    async def started_writing() -> dict[str, Any] | None:
        job: dict[str, Any] = (await client.get(f"{JOBS}/{first['id']}")).json()
        return job if job["chars_done"] > 0 else None

    running = await until_async(started_writing, 20, message="the first job writes its first section")
    assert 0 < running["chars_done"] < running["input_chars"]

    spool = state.jobs.directory / f"{first['id']}.wav.part"  # the audio so far, until it is finished
    assert spool.exists()
    r = await client.delete(f"{JOBS}/{first['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert not spool.exists() and not spool.with_suffix("").exists()
    r = await client.delete(f"{JOBS}/{second['id']}")
    assert r.json()["status"] == "cancelled"
    assert (await client.post(JOBS, json=body("Room again."))).status_code == 202
    # The one worker was given back: a live request is served.
    live = await client.post("/v1/audio/speech", json=body("Live.", stream=False))
    assert live.status_code == 200, live.text


async def test_a_failing_fragment_fails_the_job(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, state = env
    job = (await client.post(JOBS, json=body("Hello there.\nFAIL\nMore words."))).json()
    done = await wait_status(client, job["id"], "succeeded", "failed")
    assert done["status"] == "failed"
    assert done["error"]["code"] == "synthesis_failed" and "secret" not in done["error"]["message"]
    r = await client.get(f"{JOBS}/{job['id']}/audio")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_failed"
    assert [p for p in state.jobs.directory.iterdir() if not p.name.startswith("jobs.")] == []  # the store


async def test_ready_reports_jobs(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, _ = env
    await client.post(JOBS, json=body())
    ready = (await client.get("/ready")).json()
    assert sum(ready["speech_jobs"].values()) == 1


async def test_metrics_report_jobs_and_their_bytes(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, state = env
    created = (await client.post(JOBS, json=body())).json()
    done = await wait_status(client, created["id"], "succeeded")
    text = (await client.get("/metrics")).text
    assert 'voxserve_speech_jobs{state="finished"} 1.0' in text
    reported = float(re.search(r"^voxserve_speech_job_bytes (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    # Every byte in the jobs folder: the job's file and the job store's own files.
    store = sum(p.stat().st_size for p in state.jobs.directory.glob("jobs.*"))
    assert reported == state.jobs.stored_bytes == done["bytes"] + store and done["bytes"] > 0


async def test_one_key_leaves_room_for_another(tmp_path: Path) -> None:
    keys = ["key-one-0123456789", "key-two-abcdefghij"]
    async with serving(tmp_path, api_keys=keys, max_jobs_per_key=1) as (client, _):
        one, two = ({"Authorization": f"Bearer {k}"} for k in keys)
        assert (await client.post(JOBS, json=body(TEXT), headers=one)).status_code == 202
        refused = await client.post(JOBS, json=body(), headers=one)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_jobs_for_key"
        assert refused.headers["retry-after"] == "30"
        assert (await client.post(JOBS, json=body(), headers=two)).status_code == 202


async def test_an_idempotency_key_makes_one_job(env: tuple[httpx.AsyncClient, AppState]) -> None:
    client, _ = env
    short = body("Just one job, however often it is sent.")
    first = await client.post(JOBS, json=short, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    # The same request again (a client whose POST timed out), spaced and ordered differently.
    again = await client.post(
        JOBS,
        content=json.dumps(dict(reversed(short.items())), indent=2),
        headers={"Idempotency-Key": "order-42", "Content-Type": "application/json"},
    )
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len((await client.get(JOBS)).json()["data"]) == 1
    other = await client.post(JOBS, json=body("Another text."), headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    bad = await client.post(JOBS, json=short, headers={"Idempotency-Key": "two words"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"


async def test_a_restart_resumes_a_running_job_through_the_route(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, _):
        job = (await client.post(JOBS, json=body())).json()

        async def some_written() -> dict[str, Any] | None:
            now: dict[str, Any] = (await client.get(f"{JOBS}/{job['id']}")).json()
            return now if now["chars_done"] > 0 else None

        early = await until_async(some_written, 20, message="the job writes its first section")
    assert early["status"] == "running" and early["chars_done"] < early["input_chars"]
    async with serving(tmp_path) as (client, _):  # the same jobs_dir: the job is read back
        done = await wait_status(client, job["id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done["error"]
        assert done["chars_done"] == done["input_chars"] == len(TEXT)
        audio = (await client.get(f"{JOBS}/{job['id']}/audio")).content
    with wave.open(BytesIO(audio)) as w:
        # The fake speaks 0.05 s per word: every word once, none twice, across the restart.
        assert w.getnframes() / w.getframerate() == pytest.approx(0.05 * len(TEXT.split()), abs=0.01)


async def test_a_job_whose_engine_is_gone_after_a_restart_fails_clearly(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, _):
        job = (await client.post(JOBS, json=body())).json()
    # The same jobs_dir on a server that no longer has the job's engine: the job cannot resume.
    async with serving(tmp_path, engine="other") as (client, _):
        done = await wait_status(client, job["id"], "succeeded", "failed")
    assert done["status"] == "failed" and done["error"]["code"] == "unknown_voice"
    assert "not served any more" in done["error"]["message"]
