"""The speech job store and runner, with a fake section synthesizer (no worker process, no HTTP)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import wave
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest
from tests.timing import holds_for_async, scaled, until_async

from voxserve.errors import Conflict, EngineFailure, OutputError, RateLimited, Unavailable, UnknownJob
from voxserve.text.markup import Fragment
from voxserve.tts.jobs import JobEngine, JobSpec, SpeechJob, SpeechJobs
from voxserve.tts.jobstore import SqliteJobStore

RATE = 16000
SAMPLES_PER_WORD = 160  # 10 ms of audio per word


class FakeSynth:
    """Speaks each word fragment as ``SAMPLES_PER_WORD`` samples whose value is the word's length.

    ``gate``: each fragment waits for it (a test opens it to let the job go on). ``fail``: a word that
    raises that error; ``flaky``: how many times a word fails with ``worker_crashed`` before it works.
    """

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.block: dict[str, asyncio.Event] = {}
        """A word that waits for its event (set when it may go on); ``reached`` records it got there."""
        self.reached: set[str] = set()
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
                if fragment in self.block:
                    self.reached.add(fragment)
                    await self.block[fragment].wait()
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
        engine=JobEngine(words, synth),
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
    job = await jobs.submit(spec(synth, TEXT))
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
    job = await finished(await jobs.submit(spec(FakeSynth(), TEXT, fmt="mp3")))
    assert job.status == "succeeded"
    assert job.path.read_bytes()[:1] == b"\xff"


async def test_progress_moves_section_by_section(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    job = await jobs.submit(spec(synth, TEXT))
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
    job = await finished(await jobs.submit(spec(synth, TEXT)))
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
    job = await finished(await jobs.submit(spec(synth, TEXT)))
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "job_failed" and "secret" not in job.error.message


async def test_a_crashed_worker_is_retried_without_repeating_audio(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.flaky["six"] = 2  # fails twice mid-section, then works: the third and last try
    job = await finished(await jobs.submit(spec(synth, TEXT)))
    assert job.status == "succeeded", job.error
    with wave.open(str(job.path)) as w:
        assert w.getnframes() == 12 * SAMPLES_PER_WORD
    # The section ("five six seven") started again each time; the others ran once.
    assert synth.fragments_seen.count("five") == 3 and synth.fragments_seen.count("four") == 1


async def test_retries_are_bounded(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.flaky["five"] = 3
    job = await finished(await jobs.submit(spec(synth, TEXT)))
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

    job_spec = JobSpec(spec(synth, TEXT).sections, "pcm", JobEngine(words, once))
    job = await finished(await jobs.submit(job_spec))
    assert job.status == "succeeded" and calls > 2


async def test_busy_retries_are_bounded_too(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.fail["three"] = Unavailable("busy")
    job = await finished(await jobs.submit(spec(synth, TEXT)))
    assert job.status == "failed" and job.error is not None and job.error.code == "at_capacity"
    assert synth.calls == 10
    assert not job.path.exists()


async def test_one_job_at_a_time_and_at_most_max_jobs(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    first = await jobs.submit(spec(synth, TEXT))
    second = await jobs.submit(spec(synth, TEXT))
    await until_async(lambda: first.status == "running" and synth.calls == 1)
    # An observation window: the first job holds the gate, and nothing would signal a second job
    # starting beside it other than its status. 10 ms is many turns of the event loop here.
    await holds_for_async(lambda: second.status == "queued", 0.01, 0.001)
    with pytest.raises(RateLimited) as info:
        await jobs.submit(spec(synth, TEXT))
    assert info.value.code == "too_many_jobs" and info.value.status == 429
    assert info.value.retry_after_s == 30
    assert jobs.counts == {"queued": 1, "running": 1, "finished": 0}
    synth.gate.set()
    await finished(first)
    await finished(second)
    third = await finished(await jobs.submit(spec(synth, TEXT)))  # room again
    assert [j.status for j in (first, second, third)] == ["succeeded"] * 3
    assert [j.id for j in jobs.list_jobs()] == [first.id, second.id, third.id]


async def test_delete_cancels_a_running_job_at_once(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    job = await jobs.submit(spec(synth, TEXT))
    spool = job.path.with_name(job.path.name + ".part")
    await until_async(lambda: job.status == "running" and spool.exists())
    # The gate never opens: a delete that waited for the section to end would never return.
    async with asyncio.timeout(scaled(5)):
        deleted = await jobs.delete(job.id)
    assert deleted is job and job.status == "cancelled"
    assert not job.path.exists() and not spool.exists()
    assert synth.closed == synth.calls  # the section's synthesis was closed (its worker job aborted)
    with pytest.raises(UnknownJob) as info:
        jobs.get(job.id)
    assert info.value.status == 404 and info.value.code == "unknown_job"


async def test_delete_a_queued_job_and_a_finished_one(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    running = await jobs.submit(spec(synth, TEXT))
    queued = await jobs.submit(spec(synth, TEXT))
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
    job = await finished(await jobs.submit(spec(FakeSynth(), TEXT)))
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
    job = await finished(await jobs.submit(spec(FakeSynth(), text)))
    assert job.status == "succeeded" and job.chars_done == len(text)
    assert job.audio_seconds == pytest.approx(3 * SAMPLES_PER_WORD / RATE)


async def test_trailing_silence_is_added_once_at_the_end(jobs: SpeechJobs) -> None:
    job = await finished(await jobs.submit(spec(FakeSynth(), TEXT, fmt="pcm", trailing_silence_s=0.5)))
    data = job.path.read_bytes()
    assert len(data) == 2 * (12 * SAMPLES_PER_WORD + RATE // 2)
    assert data[-RATE:] == bytes(RATE)


async def test_stop_keeps_every_job_and_file_for_the_next_start(tmp_path: Path) -> None:
    store = SpeechJobs(directory=tmp_path / "kept", sample_rate=RATE)
    await store.start()
    synth = FakeSynth()
    done = await finished(await store.submit(spec(synth, TEXT)))
    synth.gate = asyncio.Event()
    running = await store.submit(spec(synth, TEXT))
    await until_async(lambda: running.status == "running")
    await store.stop()
    assert running.status == "queued"  # interrupted, not cancelled: the next start resumes it
    assert done.path.exists() and running.files()[1].exists()  # its spool, to resume from


async def test_default_folder_is_temporary(tmp_path: Path) -> None:
    store = SpeechJobs(directory=None, sample_rate=RATE)
    with pytest.raises(RuntimeError):
        _ = store.directory  # nothing is made before start()
    await store.start()
    folder = store.directory
    assert folder.is_dir() and folder.name.startswith("voxserve-jobs-")
    job = await finished(await store.submit(spec(FakeSynth(), TEXT)))
    assert job.path.exists()
    await store.stop()
    assert not folder.exists()


async def test_submit_before_start_is_refused(tmp_path: Path) -> None:
    store = SpeechJobs(directory=tmp_path, sample_rate=RATE)
    with pytest.raises(Unavailable):
        await store.submit(spec(FakeSynth(), TEXT))


async def test_a_job_belongs_to_the_key_that_made_it(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    job = await finished(await jobs.submit(spec(synth, TEXT), owner="alice"))
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


class WeightlessStore(SqliteJobStore):
    """The real store, its own files not counted: these tests count job files to the byte."""

    def size_bytes(self) -> int:
        return 0


async def storage_store(tmp_path: Path, clock: Clock, limit: int, **per_key: int) -> SpeechJobs:
    store = SpeechJobs(
        directory=tmp_path / f"jobs{limit}",
        sample_rate=RATE,
        max_jobs=4,
        max_storage_bytes=limit,
        open_store=WeightlessStore,
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
        first = await finished(await store.submit(spec(FakeSynth(), TEXT)))
        assert first.status == "succeeded" and store.stored_bytes == first.size_bytes == TEXT_WAV_BYTES
        with pytest.raises(RateLimited) as info:
            await store.submit(spec(FakeSynth(), TEXT))
        assert info.value.code == "job_storage_full" and info.value.status == 429
        assert first.path.exists()  # never evicted to make room
        await store.delete(first.id)
        assert store.stored_bytes == 0
        assert (await store.submit(spec(FakeSynth(), TEXT))).status == "queued"
    finally:
        await store.stop()


async def test_a_job_that_overflows_storage_fails_and_keeps_the_others(tmp_path: Path, clock: Clock) -> None:
    store = await storage_store(tmp_path, clock, TEXT_WAV_BYTES + 1000)
    try:
        first = await finished(await store.submit(spec(FakeSynth(), TEXT)))
        second = await finished(await store.submit(spec(FakeSynth(), TEXT)))
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
        mine = [await store.submit(spec(synth, TEXT), owner="alice") for _ in range(2)]
        with pytest.raises(RateLimited) as info:
            await store.submit(spec(synth, TEXT), owner="alice")
        assert info.value.code == "too_many_jobs_for_key" and info.value.status == 429
        assert info.value.retry_after_s == 30
        theirs = [await store.submit(spec(synth, TEXT), owner="bob") for _ in range(2)]  # room left for bob
        with pytest.raises(RateLimited) as info:
            await store.submit(spec(synth, TEXT), owner="carol")
        assert info.value.code == "too_many_jobs"  # the server-wide bound still holds
        synth.gate.set()
        for job in mine + theirs:
            assert (await finished(job)).status == "succeeded"
        # Finished: room again.
        assert (await store.submit(spec(FakeSynth(), TEXT), owner="alice")).status == "queued"
    finally:
        await store.stop()


async def test_one_key_cannot_fill_the_job_storage(tmp_path: Path, clock: Clock) -> None:
    store = await storage_store(
        tmp_path, clock, 10 * TEXT_WAV_BYTES, max_storage_bytes_per_key=TEXT_WAV_BYTES + 1000
    )
    try:
        first = await finished(await store.submit(spec(FakeSynth(), TEXT), owner="alice"))
        assert first.status == "succeeded"
        second = await finished(await store.submit(spec(FakeSynth(), TEXT), owner="alice"))
        # It passed alice's bytes while written: failed, its file gone, alice's first file kept.
        assert second.status == "failed" and second.error is not None
        assert second.error.code == "job_storage_full_for_key"
        assert not second.path.exists() and first.path.exists()
        big = SpeechJobs(
            directory=tmp_path / "big", sample_rate=RATE, max_storage_bytes_per_key=TEXT_WAV_BYTES
        )
        await big.start()
        try:
            assert (await finished(await big.submit(spec(FakeSynth(), TEXT), "alice"))).status == "succeeded"
            with pytest.raises(RateLimited) as info:
                await big.submit(spec(FakeSynth(), TEXT), owner="alice")
            assert info.value.code == "job_storage_full_for_key"
            assert (await finished(await big.submit(spec(FakeSynth(), TEXT), "bob"))).status == "succeeded"
            # Without API keys (owner None) the per-key bounds do not apply.
            assert (await finished(await big.submit(spec(FakeSynth(), TEXT)))).status == "succeeded"
        finally:
            await big.stop()
    finally:
        await store.stop()


# --- durability: restarts, crashes, orphans, idempotency, a store that cannot be used ----------------


def durable_store(folder: Path, synth: FakeSynth, clock: Clock, **kw: object) -> SpeechJobs:
    """A store in ``folder`` that resumes stored jobs with ``synth`` (what the route's builder does)."""

    async def build(request: object) -> JobEngine:
        return JobEngine(words, synth)

    return SpeechJobs(
        directory=folder,
        sample_rate=RATE,
        retry_backoff_s=0.01,
        sweep_interval_s=3600,
        ttl_s=60,
        builder=build,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def spoken_words(path: Path) -> list[int]:
    """The word lengths a FakeSynth WAV says, in order (one value per word)."""
    with wave.open(str(path)) as w:
        return list(w.readframes(w.getnframes())[:: SAMPLES_PER_WORD * 2])


async def sections_done(job: SpeechJob, count: int) -> None:
    await until_async(lambda: job.sections_done >= count)


def store_bytes(folder: Path) -> int:
    """Bytes of the job store's own files (jobs.db, its WAL, the lock)."""
    return sum(p.stat().st_size for p in folder.glob("jobs.*"))


def crash_copy(source: Path, target: Path) -> Path:
    """What a server killed right now leaves on disk: the folder as it is (SQLite's WAL included)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("jobs.lock"))
    return target


async def test_a_crash_mid_job_resumes_from_the_last_complete_section(tmp_path: Path, clock: Clock) -> None:
    synth = FakeSynth()
    synth.block["nine"] = asyncio.Event()  # the third section ("eight nine ten") hangs half-way
    store = durable_store(tmp_path / "a", synth, clock)
    await store.start()
    job = await store.submit(spec(synth, TEXT))
    await until_async(lambda: "nine" in synth.reached)
    assert job.sections_done == 2
    crashed = crash_copy(tmp_path / "a", tmp_path / "b")
    # Half a section that was written but never recorded as durable: resume must drop it.
    spool = crashed / job.files()[1].name
    spool.write_bytes(spool.read_bytes() + b"\x09\x00" * SAMPLES_PER_WORD)
    await store.stop()

    again = FakeSynth()
    resumed = durable_store(crashed, again, clock)
    await resumed.start()
    try:
        back = resumed.get(job.id)
        assert back.crashes == 1 and back.sections_done == 2
        await finished(back)
        assert back.status == "succeeded", back.error
        assert spoken_words(back.path) == [len(w) for w in TEXT.split()]  # every word once, in order
        assert again.calls == len(back.spec.sections) - 2  # the two durable sections were not redone
        assert sorted(p.name for p in crashed.iterdir() if not p.name.startswith("jobs.")) == [back.path.name]
    finally:
        await resumed.stop()


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "pcm"])
async def test_every_format_resumes_into_the_uninterrupted_file(
    tmp_path: Path, clock: Clock, fmt: str
) -> None:
    synth = FakeSynth()
    store = durable_store(tmp_path / "a", synth, clock)
    await store.start()
    whole = await finished(await store.submit(spec(synth, TEXT, fmt=fmt)))
    synth.block["five"] = asyncio.Event()
    job = await store.submit(spec(synth, TEXT, fmt=fmt))
    await until_async(lambda: "five" in synth.reached)
    crashed = crash_copy(tmp_path / "a", tmp_path / "b")
    await store.stop()
    resumed = durable_store(crashed, FakeSynth(), clock)
    await resumed.start()
    try:
        back = await finished(resumed.get(job.id))
        assert back.status == "succeeded", back.error
        if fmt == "pcm":
            assert back.path.read_bytes() == whole.path.read_bytes()
        else:  # the same stream (an Ogg serial number is random, so compare what decodes)
            assert np.array_equal(decoded(back.path), decoded(crashed / whole.path.name))
    finally:
        await resumed.stop()


async def test_a_graceful_restart_resumes_and_keeps_finished_jobs(tmp_path: Path, clock: Clock) -> None:
    synth = FakeSynth()
    store = durable_store(tmp_path, synth, clock)
    await store.start()
    done = await finished(await store.submit(spec(synth, TEXT, fmt="mp3"), owner="alice"))
    synth.block["five"] = asyncio.Event()
    running = await store.submit(spec(synth, TEXT), owner="bob")
    await until_async(lambda: "five" in synth.reached)
    await store.stop()
    audio = done.path.read_bytes()

    again = durable_store(tmp_path, FakeSynth(), clock)
    await again.start()
    try:
        kept = again.get(done.id, "alice")
        assert kept.status == "succeeded" and kept.check_audio().read_bytes() == audio
        back = again.get(running.id, "bob")
        assert back.crashes == 0 and back.sections_done == 1  # a graceful stop is no crash
        assert (await finished(back)).status == "succeeded"
        assert spoken_words(back.path) == [len(w) for w in TEXT.split()]
        # Two keys stay apart across the restart.
        assert again.list_jobs("alice") == [kept] and again.list_jobs("bob") == [back]
        with pytest.raises(UnknownJob):
            again.get(done.id, "bob")
        clock.now += 61  # finished jobs expire after the restart too, records and files together
        await again.sweep()
        assert again.list_jobs("alice") == [] and not kept.path.exists()
    finally:
        await again.stop()
    third = durable_store(tmp_path, FakeSynth(), clock)
    await third.start()
    try:
        assert third.list_jobs("alice") == [] and third.list_jobs("bob") == []
    finally:
        await third.stop()


async def test_a_job_that_keeps_crashing_the_server_is_poisoned(tmp_path: Path, clock: Clock) -> None:
    synth = FakeSynth()
    synth.gate = asyncio.Event()
    store = durable_store(tmp_path / "0", synth, clock, max_restarts=2)
    await store.start()
    job = await store.submit(spec(synth, TEXT))
    await until_async(lambda: job.status == "running")
    folder = crash_copy(tmp_path / "0", tmp_path / "1")
    await store.stop()
    for crash in (1, 2):
        blocked = FakeSynth()
        blocked.gate = asyncio.Event()  # it runs, and "crashes the server" again
        again = durable_store(folder, blocked, clock, max_restarts=2)
        await again.start()
        back = again.get(job.id)
        assert back.crashes == crash
        if crash < 2:
            await until_async(lambda: blocked.calls == 1)  # noqa: B023 - awaited in this iteration
            nxt = crash_copy(folder, tmp_path / f"{crash + 1}")
            await again.stop()
            folder = nxt
        else:
            try:
                assert back.status == "failed" and back.error is not None
                assert back.error.code == "job_poisoned" and blocked.calls == 0
                assert not any(p.exists() for p in back.files())
            finally:
                await again.stop()


async def test_orphan_files_go_and_kept_files_count(tmp_path: Path, clock: Clock) -> None:
    synth = FakeSynth()
    store = durable_store(tmp_path, synth, clock)
    await store.start()
    done = await finished(await store.submit(spec(synth, TEXT)))
    await store.stop()
    orphans = [tmp_path / "speechjob_0123.wav.part", tmp_path / "speechjob_0123.mp3"]
    for orphan in orphans:
        orphan.write_bytes(b"x" * 5000)
    theirs = tmp_path / "notes.txt"  # not voxserve's: never deleted, but counted
    theirs.write_bytes(b"y" * 700)
    again = durable_store(tmp_path, synth, clock, max_storage_bytes=TEXT_WAV_BYTES)
    await again.start()
    try:
        assert not any(orphan.exists() for orphan in orphans)
        assert theirs.read_bytes() == b"y" * 700
        assert done.path.exists() and again.stored_bytes == TEXT_WAV_BYTES + 700 + store_bytes(tmp_path)
        with pytest.raises(RateLimited):  # the job kept across the restart still counts
            await again.submit(spec(synth, TEXT))
    finally:
        await again.stop()


async def test_an_idempotency_key_returns_its_job_and_refuses_another_body(jobs: SpeechJobs) -> None:
    synth = FakeSynth()
    first = await jobs.submit(spec(synth, TEXT), "alice", idempotency_key="k1", body_hash="h1")
    again = await jobs.submit(spec(synth, TEXT), "alice", idempotency_key="k1", body_hash="h1")
    assert again is first and len(jobs.list_jobs("alice")) == 1
    assert await jobs.find_idempotent("alice", "k1", "h1") is first
    with pytest.raises(Conflict) as info:
        await jobs.submit(spec(synth, TEXT), "alice", idempotency_key="k1", body_hash="h2")
    assert info.value.code == "idempotency_conflict" and info.value.status == 409
    other = await jobs.submit(spec(synth, TEXT), "bob", idempotency_key="k1", body_hash="h1")
    assert other is not first  # keys are per API key
    await finished(first)
    await jobs.delete(first.id, "alice")
    assert await jobs.find_idempotent("alice", "k1", "h2") is None  # its job is gone: the key is free


async def test_an_unusable_store_takes_only_the_jobs_down(tmp_path: Path, clock: Clock) -> None:
    synth = FakeSynth()
    first = durable_store(tmp_path, synth, clock)
    await first.start()
    second = durable_store(tmp_path, synth, clock)  # the same folder: locked by the first
    await second.start()
    try:
        assert first.store_error is None
        assert second.store_error is not None and "in use by another voxserve server" in second.store_error
        with pytest.raises(Unavailable) as info:
            await second.submit(spec(synth, TEXT))
        assert info.value.code == "job_store_unavailable" and info.value.status == 503
        with pytest.raises(Unavailable):
            second.list_jobs()
    finally:
        await second.stop()
        await first.stop()
    (tmp_path / "jobs.db").write_bytes(b"this is not a database, it is a shopping list" * 100)
    for name in ("jobs.db-wal", "jobs.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    corrupt = durable_store(tmp_path, synth, clock)
    await corrupt.start()
    try:
        assert corrupt.store_error is not None and "corrupt" in corrupt.store_error
        with pytest.raises(Unavailable) as info:
            corrupt.get("speechjob_x")
        assert info.value.code == "job_store_unavailable"
    finally:
        await corrupt.stop()
    assert (tmp_path / "jobs.db").exists()  # never deleted or rewritten: the operator decides


async def test_the_store_files_count_too(tmp_path: Path, clock: Clock) -> None:
    # Every byte in the jobs folder counts: a bound smaller than the job store itself takes no job.
    store = durable_store(tmp_path, FakeSynth(), clock, max_storage_bytes=1000)
    await store.start()
    try:
        assert store.stored_bytes > 1000
        with pytest.raises(RateLimited) as info:
            await store.submit(spec(FakeSynth(), TEXT))
        assert info.value.code == "job_storage_full"
    finally:
        await store.stop()


async def test_records_that_cannot_be_read_take_only_the_jobs_down(tmp_path: Path, clock: Clock) -> None:
    store = durable_store(tmp_path, FakeSynth(), clock)
    await store.start()
    await store.stop()
    with sqlite3.connect(tmp_path / "jobs.db") as db:  # a record whose spec lacks what a job needs
        db.execute(
            "INSERT INTO jobs (id, owner, status, created_at, spec) "
            "VALUES ('speechjob_x', '', 'queued', 1, '{}')"
        )
    again = durable_store(tmp_path, FakeSynth(), clock)
    await again.start()
    try:
        assert again.store_error is not None and "corrupt" in again.store_error
        with pytest.raises(Unavailable):
            again.list_jobs()
    finally:
        await again.stop()
