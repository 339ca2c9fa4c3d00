"""The speech job store and runner, with a fake section synthesizer (no worker process, no HTTP)."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest
from tests.timing import holds_for_async, scaled, until_async

from voxserve.errors import Conflict, EngineFailure, OutputError, RateLimited, Unavailable, UnknownJob
from voxserve.text.markup import Fragment
from voxserve.tts.jobs import JobSpec, SpeechJob, SpeechJobs

RATE = 16000
SAMPLES_PER_WORD = 160  # 10 ms of audio per word


class FakeSynth:
    """Speaks each word fragment as ``SAMPLES_PER_WORD`` samples whose value is the word's length.

    ``gate``: each fragment waits for it (a test opens it to let the job go on). ``fail``: a word that
    raises that error; ``flaky``: how many times a word fails with ``worker_crashed`` before it works.
    """

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.fail: dict[str, Exception] = {}
        self.flaky: dict[str, int] = {}
        self.calls = 0
        self.closed = 0
        self.fragments_seen: list[Fragment] = []

    async def __call__(self, fragments: tuple[Fragment, ...]) -> AsyncGenerator[bytes, None]:
        self.calls += 1
        try:
            for fragment in fragments:
                self.fragments_seen.append(fragment)
                if self.gate is not None:
                    await self.gate.wait()
                else:
                    await asyncio.sleep(0)
                assert isinstance(fragment, str)
                if fragment in self.fail:
                    raise self.fail[fragment]
                if self.flaky.get(fragment, 0) > 0:
                    self.flaky[fragment] -= 1
                    raise EngineFailure("the worker serving this request stopped", code="worker_crashed")
                yield bytes([len(fragment), 0]) * SAMPLES_PER_WORD
        finally:
            self.closed += 1


def words(section: str) -> tuple[Fragment, ...]:
    return tuple(section.split())


def spec(synth: FakeSynth, text: str, fmt: str = "wav", section_chars: int = 20, **kw: object) -> JobSpec:
    from voxserve.tts.longform import split_sections

    return JobSpec(
        sections=tuple(split_sections(text, section_chars)),
        response_format=fmt,
        plan=words,
        synthesize=synth,
        **kw,  # type: ignore[arg-type]
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def jobs(tmp_path: Path, clock: Clock) -> AsyncIterator[SpeechJobs]:
    store = SpeechJobs(
        directory=tmp_path / "jobs",
        sample_rate=RATE,
        max_jobs=2,
        concurrency=1,
        ttl_s=60,
        retry_backoff_s=0.01,
        sweep_interval_s=3600,
        clock=clock,
    )
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


async def finished(job: SpeechJob) -> SpeechJob:
    assert job.task is not None
    await asyncio.wait([job.task], timeout=scaled(5))
    assert job.task.done()
    return job


TEXT = "one two three four five six seven eight nine ten eleven twelve"


async def test_a_job_speaks_every_section_into_an_exact_wav(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    job = jobs.submit(spec(synth, TEXT))
    assert job.status == "queued" and job.id.startswith("speechjob_")
    await finished(job)
    assert job.status == "succeeded", job.error
    assert job.chars_done == job.input_chars == len(TEXT)
    assert synth.calls == len(spec(synth, TEXT).sections) > 1
    assert job.audio_seconds == pytest.approx(12 * SAMPLES_PER_WORD / RATE)
    assert job.path.parent == jobs.directory and job.path.suffix == ".wav"
    with wave.open(str(job.check_audio())) as w:
        assert w.getnframes() == 12 * SAMPLES_PER_WORD
        first_samples = w.readframes(w.getnframes())[:: SAMPLES_PER_WORD * 2]
    assert list(first_samples) == [len(w) for w in TEXT.split()]  # every word, in order
    assert job.size_bytes == job.path.stat().st_size
    body = job.to_dict(ttl_s=60)
    assert {k: body[k] for k in ("object", "status", "input_chars", "chars_done", "error", "bytes")} == {
        "object": "speech.job",
        "status": "succeeded",
        "input_chars": len(TEXT),
        "chars_done": len(TEXT),
        "error": None,
        "bytes": job.size_bytes,
    }
    assert body["expires_at"] == body["finished_at"] + 60


async def test_compressed_format(jobs: SpeechJobs) -> None:
    job = await finished(jobs.submit(spec(FakeSynth(), TEXT, fmt="mp3")))
    assert job.status == "succeeded"
    assert job.path.read_bytes()[:1] == b"\xff"


async def test_progress_moves_section_by_section(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    job = jobs.submit(spec(synth, TEXT))
    await until_async(lambda: job.status == "running")
    seen = {job.chars_done}
    with pytest.raises(Conflict) as info:
        job.check_audio()
    assert info.value.status == 409 and info.value.code == "job_not_finished"
    async with asyncio.timeout(scaled(10)):  # give-up bound: one section per step of the gate
        while job.status == "running":
            synth.gate.set()
            await asyncio.sleep(0)
            synth.gate.clear()
            seen.add(job.chars_done)
            await asyncio.sleep(0.001)
    await finished(job)
    assert job.status == "succeeded"
    assert len(seen) > 2 and sorted(seen)[-2] < job.chars_done == len(TEXT)


async def test_a_failing_section_fails_the_job_and_deletes_the_file(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.fail["nine"] = OutputError("the engine produced silent audio for fragment 1")
    job = await finished(jobs.submit(spec(synth, TEXT)))
    assert job.status == "failed"
    assert job.error is not None and job.error.code == "output_error"
    assert 0 < job.chars_done < job.input_chars
    assert not job.path.exists()
    assert job.to_dict(60)["error"] == {
        "code": "output_error",
        "message": "the engine produced silent audio for fragment 1",
    }
    with pytest.raises(Conflict) as info:
        job.check_audio()
    assert info.value.code == "job_failed" and "silent" in info.value.message
    assert synth.calls == 3  # not retried: the engine's answer would be the same


async def test_an_unexpected_error_fails_the_job_without_details(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.fail["two"] = RuntimeError("boom /secret/path")
    job = await finished(jobs.submit(spec(synth, TEXT)))
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "job_failed" and "secret" not in job.error.message


async def test_a_crashed_worker_is_retried_without_repeating_audio(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.flaky["six"] = 2  # fails twice mid-section, then works: the third and last try
    job = await finished(jobs.submit(spec(synth, TEXT)))
    assert job.status == "succeeded", job.error
    with wave.open(str(job.path)) as w:
        assert w.getnframes() == 12 * SAMPLES_PER_WORD
    # The section ("five six seven") started again each time; the others ran once.
    assert synth.fragments_seen.count("five") == 3 and synth.fragments_seen.count("four") == 1


async def test_retries_are_bounded(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.flaky["five"] = 3
    job = await finished(jobs.submit(spec(synth, TEXT)))
    assert job.status == "failed" and job.error is not None and job.error.code == "worker_crashed"
    assert not job.path.exists()


async def test_busy_engine_is_retried(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.fail["three"] = Unavailable("busy")
    calls = 0
    real = synth.__call__

    def once(fragments: tuple[Fragment, ...]) -> AsyncGenerator[bytes, None]:
        nonlocal calls
        calls += 1
        if calls == 2:
            synth.fail.clear()
        return real(fragments)

    job = await finished(jobs.submit(JobSpec(spec(synth, TEXT).sections, "pcm", words, once)))
    assert job.status == "succeeded" and calls > 2


async def test_busy_retries_are_bounded_too(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.fail["three"] = Unavailable("busy")
    job = await finished(jobs.submit(spec(synth, TEXT)))
    assert job.status == "failed" and job.error is not None and job.error.code == "at_capacity"
    assert synth.calls == 10
    assert not job.path.exists()


async def test_one_job_at_a_time_and_at_most_max_jobs(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    first = jobs.submit(spec(synth, TEXT))
    second = jobs.submit(spec(synth, TEXT))
    await until_async(lambda: first.status == "running" and synth.calls == 1)
    # An observation window: the first job holds the gate, and nothing would signal a second job
    # starting beside it other than its status. 10 ms is many turns of the event loop here.
    await holds_for_async(lambda: second.status == "queued", 0.01, 0.001)
    with pytest.raises(RateLimited) as info:
        jobs.submit(spec(synth, TEXT))
    assert info.value.code == "too_many_jobs" and info.value.status == 429
    assert info.value.retry_after_s == 30
    assert jobs.counts == {"queued": 1, "running": 1, "finished": 0}
    synth.gate.set()
    await finished(first)
    await finished(second)
    third = await finished(jobs.submit(spec(synth, TEXT)))  # room again
    assert [j.status for j in (first, second, third)] == ["succeeded"] * 3
    assert [j.id for j in jobs.list_jobs()] == [first.id, second.id, third.id]


async def test_delete_cancels_a_running_job_at_once(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    job = jobs.submit(spec(synth, TEXT))
    await until_async(lambda: job.status == "running" and job.path.exists())
    # The gate never opens: a delete that waited for the section to end would never return.
    async with asyncio.timeout(scaled(5)):
        deleted = await jobs.delete(job.id)
    assert deleted is job and job.status == "cancelled"
    assert not job.path.exists()
    assert synth.closed == synth.calls  # the section's synthesis was closed (its worker job aborted)
    with pytest.raises(UnknownJob) as info:
        jobs.get(job.id)
    assert info.value.status == 404 and info.value.code == "unknown_job"


async def test_delete_a_queued_job_and_a_finished_one(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    running = jobs.submit(spec(synth, TEXT))
    queued = jobs.submit(spec(synth, TEXT))
    assert (await jobs.delete(queued.id)).status == "cancelled"
    synth.gate.set()
    await finished(running)
    assert running.path.exists()
    assert (await jobs.delete(running.id)).status == "succeeded"
    assert not running.path.exists()
    assert jobs.list_jobs() == []
    with pytest.raises(UnknownJob):
        await jobs.delete(running.id)


async def test_finished_jobs_expire_with_their_files(jobs: SpeechJobs, clock: Clock) -> None:
    job = await finished(jobs.submit(spec(FakeSynth(), TEXT)))
    clock.now += 59
    assert jobs.get(job.id) is job
    clock.now += 1
    with pytest.raises(UnknownJob):
        jobs.get(job.id)
    assert jobs.list_jobs() == []
    assert job.path.exists()  # until the sweep
    await jobs.sweep()
    assert not job.path.exists()


async def test_nothing_speakable_sections_are_skipped_but_counted(jobs: SpeechJobs) -> None:
    text = "one two\n\n" + " " * 30 + "\n\nthree"
    job = await finished(jobs.submit(spec(FakeSynth(), text)))
    assert job.status == "succeeded" and job.chars_done == len(text)
    assert job.audio_seconds == pytest.approx(3 * SAMPLES_PER_WORD / RATE)


async def test_trailing_silence_is_added_once_at_the_end(jobs: SpeechJobs) -> None:
    job = await finished(jobs.submit(spec(FakeSynth(), TEXT, fmt="pcm", trailing_silence_s=0.5)))
    data = job.path.read_bytes()
    assert len(data) == 2 * (12 * SAMPLES_PER_WORD + RATE // 2)
    assert data[-RATE:] == bytes(RATE)


async def test_stop_cancels_jobs_and_removes_files(tmp_path: Path) -> None:
    store = SpeechJobs(directory=tmp_path / "kept", sample_rate=RATE)
    await store.start()
    synth = FakeSynth()
    done = await finished(store.submit(spec(synth, TEXT)))
    synth.gate = asyncio.Event()
    running = store.submit(spec(synth, TEXT))
    await until_async(lambda: running.status == "running")
    await store.stop()
    assert running.status == "cancelled"
    assert not done.path.exists() and not running.path.exists()
    assert (tmp_path / "kept").is_dir()  # a configured folder stays; only the job files go


async def test_default_folder_is_temporary(tmp_path: Path) -> None:
    store = SpeechJobs(directory=None, sample_rate=RATE)
    with pytest.raises(RuntimeError):
        _ = store.directory  # nothing is made before start()
    await store.start()
    folder = store.directory
    assert folder.is_dir() and folder.name.startswith("voxserve-jobs-")
    job = await finished(store.submit(spec(FakeSynth(), TEXT)))
    assert job.path.exists()
    await store.stop()
    assert not folder.exists()


async def test_submit_before_start_is_refused(tmp_path: Path) -> None:
    store = SpeechJobs(directory=tmp_path, sample_rate=RATE)
    with pytest.raises(Unavailable):
        store.submit(spec(FakeSynth(), TEXT))


async def test_a_job_belongs_to_the_key_that_made_it(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    job = await finished(jobs.submit(spec(synth, TEXT), owner="alice"))
    assert jobs.get(job.id, "alice") is job
    for other in ("bob", None):
        with pytest.raises(UnknownJob):
            jobs.get(job.id, other)
        with pytest.raises(UnknownJob):
            await jobs.delete(job.id, other)
        assert jobs.list_jobs(other) == []
    assert jobs.list_jobs("alice") == [job]
    assert job.path.exists()  # another key's delete touched nothing
    assert len(job.id) == len("speechjob_") + 32  # 128 random bits


async def storage_store(tmp_path: Path, clock: Clock, limit: int, **per_key: int) -> SpeechJobs:
    store = SpeechJobs(
        directory=tmp_path / f"jobs{limit}",
        sample_rate=RATE,
        max_jobs=4,
        max_storage_bytes=limit,
        clock=clock,
        **per_key,  # type: ignore[arg-type]
    )
    await store.start()
    return store


# A finished WAV of TEXT: 44 + 12 words x 160 samples x 2 bytes.
TEXT_WAV_BYTES = 44 + 12 * SAMPLES_PER_WORD * 2


async def test_full_storage_refuses_new_jobs_until_files_go(tmp_path: Path, clock: Clock) -> None:
    store = await storage_store(tmp_path, clock, TEXT_WAV_BYTES)
    try:
        first = await finished(store.submit(spec(FakeSynth(), TEXT)))
        assert first.status == "succeeded" and store.stored_bytes == first.size_bytes == TEXT_WAV_BYTES
        with pytest.raises(RateLimited) as info:
            store.submit(spec(FakeSynth(), TEXT))
        assert info.value.code == "job_storage_full" and info.value.status == 429
        assert first.path.exists()  # never evicted to make room
        await store.delete(first.id)
        assert store.stored_bytes == 0
        assert store.submit(spec(FakeSynth(), TEXT)).status == "queued"
    finally:
        await store.stop()


async def test_a_job_that_overflows_storage_fails_and_keeps_the_others(tmp_path: Path, clock: Clock) -> None:
    store = await storage_store(tmp_path, clock, TEXT_WAV_BYTES + 1000)
    try:
        first = await finished(store.submit(spec(FakeSynth(), TEXT)))
        second = await finished(store.submit(spec(FakeSynth(), TEXT)))
        assert second.status == "failed" and second.error is not None
        assert second.error.code == "job_storage_full"
        assert not second.path.exists() and first.path.exists()
        assert store.stored_bytes == TEXT_WAV_BYTES  # the failed job's bytes are not counted
    finally:
        await store.stop()


async def test_one_key_cannot_take_every_job_slot(tmp_path: Path, clock: Clock) -> None:
    # Before: 4 jobs from one key filled max_jobs, and every other key got 429 too_many_jobs.
    store = await storage_store(tmp_path, clock, 10**9, max_jobs_per_key=2)
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    try:
        mine = [store.submit(spec(synth, TEXT), owner="alice") for _ in range(2)]
        with pytest.raises(RateLimited) as info:
            store.submit(spec(synth, TEXT), owner="alice")
        assert info.value.code == "too_many_jobs_for_key" and info.value.status == 429
        assert info.value.retry_after_s == 30
        theirs = [store.submit(spec(synth, TEXT), owner="bob") for _ in range(2)]  # room left for bob
        with pytest.raises(RateLimited) as info:
            store.submit(spec(synth, TEXT), owner="carol")
        assert info.value.code == "too_many_jobs"  # the server-wide bound still holds
        synth.gate.set()
        for job in mine + theirs:
            assert (await finished(job)).status == "succeeded"
        assert store.submit(spec(FakeSynth(), TEXT), owner="alice").status == "queued"  # finished: room again
    finally:
        await store.stop()


async def test_one_key_cannot_fill_the_job_storage(tmp_path: Path, clock: Clock) -> None:
    store = await storage_store(
        tmp_path, clock, 10 * TEXT_WAV_BYTES, max_storage_bytes_per_key=TEXT_WAV_BYTES + 1000
    )
    try:
        first = await finished(store.submit(spec(FakeSynth(), TEXT), owner="alice"))
        assert first.status == "succeeded"
        second = await finished(store.submit(spec(FakeSynth(), TEXT), owner="alice"))
        # It passed alice's bytes while written: failed, its file gone, alice's first file kept.
        assert second.status == "failed" and second.error is not None
        assert second.error.code == "job_storage_full_for_key"
        assert not second.path.exists() and first.path.exists()
        big = SpeechJobs(
            directory=tmp_path / "big", sample_rate=RATE, max_storage_bytes_per_key=TEXT_WAV_BYTES
        )
        await big.start()
        try:
            assert (await finished(big.submit(spec(FakeSynth(), TEXT), owner="alice"))).status == "succeeded"
            with pytest.raises(RateLimited) as info:
                big.submit(spec(FakeSynth(), TEXT), owner="alice")
            assert info.value.code == "job_storage_full_for_key"
            assert (await finished(big.submit(spec(FakeSynth(), TEXT), owner="bob"))).status == "succeeded"
            # Without API keys (owner None) the per-key bounds do not apply.
            assert (await finished(big.submit(spec(FakeSynth(), TEXT)))).status == "succeeded"
        finally:
            await big.stop()
    finally:
        await store.stop()
