"""Speech jobs: long texts synthesized in the background into a file, section by section, durably.

The real-time speech route refuses inputs over ``max_input_chars`` (4096): a book read in one
streamed response would hold a worker for hours and be lost with the connection. A *job* takes up to
``max_job_chars`` instead. :class:`SpeechJobs` keeps the jobs of one server: it queues them (at most
``max_jobs`` queued or running), runs ``job_concurrency`` at a time, writes each one's audio to a
file in its folder as sections finish, and deletes finished jobs ``job_ttl_s`` after they end.

A job survives the server. Its record goes to a :class:`~voxserve.tts.jobstore.JobStore` before the
202, and again after each section whose audio has been made durable (the PCM spool fsynced first, then
the record: see :mod:`voxserve.audio.filewriter`). On start-up the store is read back: a job that was
queued or running continues from its last complete section (the spool is cut back to it, so no word is
spoken twice or skipped), finished jobs stay downloadable until they expire, and files no record owns
are deleted. A graceful stop abandons the section in progress and keeps everything; a job that was
running when the server died ``max_restarts`` times fails with ``job_poisoned`` instead of taking the
server down in a loop.

A job runs its text as consecutive sections (:mod:`voxserve.tts.longform`), one worker call each, so
live requests get a worker between two sections. Nothing is ever dropped silently: a section that
fails (after a retry when its worker crashed or the engine was busy) fails the whole job, its files are
deleted, and the job's ``error`` says why — a job is ``succeeded`` only when every input character has
been through synthesis.

Blocking work (planning text, encoding, file and store I/O) runs in threads; each job writes through
its own one-thread executor, so its file operations and progress records keep their order even when
the job is cancelled mid-write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from voxserve.audio.filewriter import AudioFileWriter, SpoolLost
from voxserve.errors import (
    Conflict,
    EngineFailure,
    RateLimited,
    Unavailable,
    UnknownJob,
    VoxserveError,
)
from voxserve.runtime.messages import SynthRequest
from voxserve.runtime.pool import EnginePool
from voxserve.text.markup import Fragment
from voxserve.tts.jobmodel import EngineBuilder, JobEngine, JobSpec, JobStatus, SectionSynth, SpeechJob
from voxserve.tts.jobstore import JobRecord, JobStore, JobStoreError, SqliteJobStore, store_files

__all__ = [
    "EngineBuilder",
    "JobEngine",
    "JobSpec",
    "JobStatus",
    "SectionSynth",
    "SpeechJob",
    "SpeechJobs",
    "pool_synthesizer",
]

_log = logging.getLogger("voxserve.jobs")

_T = TypeVar("_T")

_CRASH_ATTEMPTS = 3
"""Tries per section when its worker crashed (more would only crash more workers on bad input)."""
_CRASH_CODES = frozenset({"worker_crashed", "worker_unavailable"})
_BUSY_ATTEMPTS = 10
"""Tries per section when no worker was free (``at_capacity``)."""
_ID_PREFIX = "speechjob_"
IDEMPOTENCY_TTL_S = 24 * 3600.0
"""How long an ``Idempotency-Key`` names its job."""


# Over 600 lines, and one class, on purpose: the life cycle (start, restore, stop), the API's operations
# and the write path share the job table, the store and the stop flag; split, each part would reach
# into the others' state. What a job *is* lives in tts/jobmodel.py, the store in tts/jobstore.py.
class SpeechJobs:
    """Every speech job of one server: store, queue, runner, files, expiry.

    Creating it starts nothing; :meth:`start` opens the store in the folder (a fresh temporary one
    when ``directory`` is None, removed at :meth:`stop`), resumes the jobs it holds and starts the
    expiry task; :meth:`stop` abandons the running sections and keeps every job for the next start.
    A store that cannot be opened (corrupt, newer, used by another server) is logged, and every job
    operation then answers 503 ``job_store_unavailable``; the rest of the server is not affected.
    """

    def __init__(
        self,
        *,
        directory: Path | None,
        sample_rate: int,
        max_jobs: int = 4,
        max_storage_bytes: int | None = None,
        max_jobs_per_key: int | None = None,
        max_storage_bytes_per_key: int | None = None,
        concurrency: int = 1,
        ttl_s: float = 3600.0,
        retry_backoff_s: float = 1.0,
        sweep_interval_s: float | None = None,
        builder: EngineBuilder | None = None,
        max_restarts: int = 3,
        open_store: Callable[[Path], JobStore] = SqliteJobStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sample_rate = sample_rate
        self.max_jobs = max_jobs
        self.max_storage_bytes = max_storage_bytes
        # Per principal (API key), so one tenant cannot fill the server-wide bounds and lock every
        # other key out; no bound applies to the single tenant of a server without keys (owner None).
        self.max_jobs_per_key = max_jobs_per_key
        self.max_storage_bytes_per_key = max_storage_bytes_per_key
        self.concurrency = concurrency
        self.ttl_s = ttl_s
        self.retry_backoff_s = retry_backoff_s
        self.sweep_interval_s = sweep_interval_s if sweep_interval_s is not None else min(ttl_s, 60.0)
        self.max_restarts = max_restarts
        self._builder = builder
        self._open_store = open_store
        self._configured_dir = directory
        self._dir: Path | None = None
        self._owns_dir = False
        self._clock = clock
        self._jobs: dict[str, SpeechJob] = {}
        self._slots: asyncio.Semaphore | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._store: JobStore | None = None
        self._store_error: JobStoreError | None = None
        self._submitting = asyncio.Lock()
        self._stopping = False
        self._foreign_bytes = 0

    # --- life cycle ---------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The folder of the job files (once started)."""
        if self._dir is None:
            raise RuntimeError("SpeechJobs.start() has not run")
        return self._dir

    @property
    def store_error(self) -> str | None:
        """Why the job store is unusable (None when it works); shown by ``/ready``."""
        return None if self._store_error is None else self._store_error.message

    async def start(self) -> None:
        """Open the store, resume its jobs, remove orphan files and start the expiry task."""
        if self._configured_dir is None:
            self._dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="voxserve-jobs-"))
            self._owns_dir = True
        else:
            self._dir = self._configured_dir
        self._stopping = False
        self._slots = asyncio.Semaphore(self.concurrency)
        try:
            await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
            self._store = await asyncio.to_thread(self._open_store, self._dir)
            records = await asyncio.to_thread(self._store.load)
            resumed = await asyncio.to_thread(self._restore, records)
        except Exception as exc:  # whatever the folder holds, the rest of the server starts
            await self._close_store()
            self._jobs.clear()
            if isinstance(exc, JobStoreError):
                self._store_error = exc
            elif isinstance(exc, OSError):
                self._store_error = JobStoreError(f"the jobs folder cannot be used: {exc.strerror or exc}")
            else:
                _log.exception("the job store's records cannot be read")
                self._store_error = JobStoreError("the job store's records cannot be read; it is corrupt")
            _log.error("speech jobs are unavailable: %s", self._store_error.message)
        else:
            self._store_error = None
            for job in resumed:
                job.task = asyncio.create_task(self._run(job, self._slots), name=job.id)
            if resumed:
                _log.info("resuming %d speech job(s) from %s", len(resumed), self._dir)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="speech-jobs-expiry")

    async def stop(self) -> None:
        """Abandon the sections in progress (a restart makes them again) and close the store. Nothing
        is deleted, except the whole folder when it is a temporary one."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._jobs.clear()
        await self._close_store()
        directory, owned = self._dir, self._owns_dir
        self._dir = None
        self._slots = None
        if directory is not None and owned:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)

    def _restore(self, records: list[JobRecord]) -> list[SpeechJob]:
        """Read the stored jobs back (blocking): what to resume, what crashed too often, what expired;
        delete every file in the folder that no job owns. Return the jobs to resume, oldest first."""
        directory = self.directory
        resume: list[SpeechJob] = []
        gone: list[str] = []
        keep: set[Path] = set()
        for record in records:
            job = SpeechJob.from_record(record, directory)
            if job.status == "running":
                # Running when the server stopped without a goodbye (a graceful stop queues it again).
                job.crashes += 1
                if job.crashes >= self.max_restarts:
                    job.status, job.error = (
                        "failed",
                        EngineFailure(
                            f"the server stopped {job.crashes} times while this job was running; it is not "
                            "tried again",
                            code="job_poisoned",
                        ),
                    )
                    self._ended(job)
                    _log.error("speech job %s failed: poisoned (%d crashes)", job.id, job.crashes)
                else:
                    job.status = "queued"
                self._store_update(job)
            if self._expired(job) or (job.status == "succeeded" and not job.path.exists()):
                gone.append(job.id)
                continue
            self._jobs[job.id] = job
            if job.active:
                resume.append(job)
                keep.update(job.files())
            elif job.status == "succeeded":
                keep.add(job.path)
        if gone and self._store is not None:
            self._store.remove(gone)
        others = [p for p in directory.iterdir() if p.name not in store_files() and p not in keep]
        # Only files named as a job's are ever deleted: a jobs_dir pointed at a folder of the user's
        # own must not lose anything else. What else is there still counts against the storage bound.
        orphans = [p for p in others if p.name.startswith(_ID_PREFIX) and p.is_file()]
        removed = 0
        for path in orphans:
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                path.unlink()
                removed += size
        if orphans:
            _log.warning("removed %d file(s) no speech job owns (%d bytes)", len(orphans), removed)
        foreign = [p for p in others if p not in orphans]
        self._foreign_bytes = _size_of(foreign)
        if foreign:
            _log.warning(
                "%d file(s) in the jobs folder are not voxserve's (%d bytes, counted against "
                "max_job_storage_bytes); give voxserve a folder of its own",
                len(foreign),
                self._foreign_bytes,
            )
        for job in self._jobs.values():
            job.file_bytes = _size_of(job.files())
        return resume

    # --- the API's operations -----------------------------------------------------------------------

    def check_capacity(self, owner: str | None = None) -> None:
        """429 ``too_many_jobs`` (``Retry-After: 30``) when ``max_jobs`` are queued or running, and
        ``too_many_jobs_for_key`` when ``owner`` has ``max_jobs_per_key`` of them (asked before a
        request does any work, and again when the job is added); the ``job_storage_full`` pair
        likewise for the bytes of the job files; 503 ``job_store_unavailable`` without a store."""
        self._check_store()
        if owner is not None:
            own = [job for job in self._jobs.values() if job.owner == owner]
            if self.max_jobs_per_key is not None and sum(job.active for job in own) >= self.max_jobs_per_key:
                raise RateLimited(
                    f"this API key has {self.max_jobs_per_key} speech jobs queued or running, the most "
                    "one key may have; retry when one has finished",
                    code="too_many_jobs_for_key",
                )
            if (
                self.max_storage_bytes_per_key is not None
                and sum(job.file_bytes for job in own) >= self.max_storage_bytes_per_key
            ):
                raise RateLimited(
                    f"this API key's speech job files fill its {self.max_storage_bytes_per_key} bytes; "
                    "delete finished jobs or wait for them to expire",
                    code="job_storage_full_for_key",
                )
        active = sum(job.active for job in self._jobs.values())
        if active >= self.max_jobs:
            # 429, not 503: nothing is wrong with the server; there is as much queued work as it takes.
            raise RateLimited(
                f"{active} speech jobs are queued or running, the most this server takes; retry when "
                "one has finished",
                code="too_many_jobs",
            )
        if self.max_storage_bytes is not None and self.stored_bytes >= self.max_storage_bytes:
            # Never make room by deleting a finished file nobody has downloaded yet: wait for expiry.
            raise RateLimited(
                f"the speech jobs' files fill their {self.max_storage_bytes} bytes; retry when finished "
                "jobs have been deleted or have expired",
                code="job_storage_full",
            )

    def _check_store(self) -> JobStore:
        if self._store_error is not None:
            raise self._store_error
        if self._store is None or self._slots is None:
            raise Unavailable("the server is not accepting jobs (starting or stopping)", code="at_capacity")
        return self._store

    @property
    def stored_bytes(self) -> int:
        """Bytes in the jobs folder: every job file (finished, being written, or left to resume), the
        job store's own files and whatever else was in the folder at start-up."""
        store = self._store
        jobs = sum(job.file_bytes for job in self._jobs.values())
        return jobs + self._foreign_bytes + (0 if store is None else store.size_bytes())

    async def submit(
        self,
        spec: JobSpec,
        owner: str | None = None,
        *,
        idempotency_key: str | None = None,
        body_hash: str = "",
    ) -> SpeechJob:
        """Store a job for ``owner`` (a principal, None without API keys) and start its task; return
        it (status ``queued``). With ``idempotency_key``, a job made with the same key and body
        returns instead (see :meth:`find_idempotent`)."""
        async with self._submitting:  # one at a time: a key's check and its insert are one step
            store = self._check_store()
            if idempotency_key is not None:
                existing = await self.find_idempotent(owner, idempotency_key, body_hash)
                if existing is not None:
                    return existing
            self.check_capacity(owner)
            job_id = f"{_ID_PREFIX}{secrets.token_hex(16)}"  # 128 random bits: ids cannot be guessed
            if not spec.sample_rate:
                spec = dataclasses.replace(spec, sample_rate=self.sample_rate)
            job = SpeechJob(
                id=job_id,
                spec=spec,
                path=self.directory / f"{job_id}.{spec.response_format}",
                created_at=int(self._clock()),
                input_chars=sum(len(s) for s in spec.sections),
                owner=owner,
            )
            # Durable before the 202: a job the client was told about survives a crash.
            await asyncio.to_thread(store.add, job.record(), idempotency_key, body_hash)
            self._jobs[job_id] = job
            job.task = asyncio.create_task(self._run(job, self._check_slots()), name=job_id)
            return job

    def _check_slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            raise Unavailable("the server is not accepting jobs (starting or stopping)", code="at_capacity")
        return self._slots

    async def find_idempotent(self, owner: str | None, key: str, body_hash: str) -> SpeechJob | None:
        """The job ``owner`` made with ``Idempotency-Key`` ``key`` in the last 24 h, if it still
        exists; 409 ``idempotency_conflict`` when that key came with another body (``body_hash``).
        A key whose job was deleted or has expired is free again."""
        store = self._check_store()
        used = await asyncio.to_thread(store.idempotency, owner, key)
        if used is None:
            return None
        job = self._jobs.get(used.job_id)
        if job is None or self._expired(job) or self._clock() - used.created_at >= IDEMPOTENCY_TTL_S:
            await asyncio.to_thread(store.forget_idempotency, owner, key)
            return None
        if used.body_hash != body_hash:
            raise Conflict(
                f"Idempotency-Key {key!r} was used for another request (job {used.job_id}); use a new key "
                "for a new request",
                code="idempotency_conflict",
            )
        return job

    def get(self, job_id: str, owner: str | None = None) -> SpeechJob:
        """``owner``'s job with this id; 404 ``unknown_job`` if there is none (or it has expired, or
        it belongs to another key: whether an id exists is not told to other keys)."""
        if self._store_error is not None:
            raise self._store_error
        job = self._jobs.get(job_id)
        if job is None or self._expired(job) or job.owner != owner:
            raise UnknownJob.for_id(job_id)
        return job

    def list_jobs(self, owner: str | None = None) -> list[SpeechJob]:
        """``owner``'s jobs that have not expired, oldest first."""
        if self._store_error is not None:
            raise self._store_error
        return [job for job in self._jobs.values() if not self._expired(job) and job.owner == owner]

    @property
    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (for ``/ready``)."""
        out = {"queued": 0, "running": 0, "finished": 0}
        for job in self._jobs.values():
            out[job.status if job.active else "finished"] += 1
        return out

    async def delete(self, job_id: str, owner: str | None = None) -> SpeechJob:
        """Cancel the job if it is queued or running, delete its files and record and forget it;
        return it as it ended (``cancelled`` if it had not finished)."""
        job = self.get(job_id, owner)
        del self._jobs[job_id]
        task = job.task
        if task is not None and not task.done():
            task.cancel()
            # The task deletes its own files on the way out; wait for that, but never for long: the
            # worker is told to stop between audio pieces and is killed if it does not.
            await asyncio.wait([task], timeout=10.0)
        if job.active:
            job.status = "cancelled"
            self._ended(job)
        await asyncio.to_thread(_remove_files, job.files())
        if self._store is not None:
            await asyncio.to_thread(self._store.remove, [job.id])
        return job

    async def sweep(self) -> None:
        """Forget the jobs that finished more than ``ttl_s`` ago (records and files together) and the
        idempotency keys older than 24 h."""
        expired = [job for job in self._jobs.values() if self._expired(job)]
        for job in expired:
            del self._jobs[job.id]
        store = self._store
        if expired:
            _log.info("%d finished speech job(s) expired", len(expired))
            await asyncio.to_thread(_remove_files, [path for job in expired for path in job.files()])
            if store is not None:
                await asyncio.to_thread(store.remove, [job.id for job in expired])
        if store is not None:
            await asyncio.to_thread(store.expire_idempotency, self._clock() - IDEMPOTENCY_TTL_S)

    # --- internals ----------------------------------------------------------------------------------

    def _ended(self, job: SpeechJob) -> None:
        job.ended = self._clock()
        job.finished_at = int(job.ended)

    def _expired(self, job: SpeechJob) -> bool:
        return job.ended is not None and self._clock() - job.ended >= self.ttl_s

    def _store_update(self, job: SpeechJob) -> None:
        """Write the job's record (blocking; nothing when the store is closed)."""
        if self._store is not None:
            self._store.update(job.record())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # a file that cannot be deleted must not stop expiry for good
                _log.exception("speech job expiry failed")

    async def _run(self, job: SpeechJob, slots: asyncio.Semaphore) -> None:
        try:
            async with slots:
                job.status = "running"
                # Durable before any work: if the server dies from here on, this job is the suspect.
                await asyncio.to_thread(self._store_update, job)
                _log.info(
                    "speech job %s %s (%d characters)",
                    job.id,
                    "resumed" if job.sections_done else "started",
                    job.input_chars,
                )
                engine = job.spec.engine
                if engine is None:
                    if self._builder is None:
                        raise EngineFailure("this server cannot resume speech jobs", code="job_failed")
                    engine = await self._builder(job.spec.request)
                await self._synthesize(job, engine)
            _log.info("speech job %s succeeded: %.1f s of audio", job.id, job.audio_seconds)
        except asyncio.CancelledError:
            if self._stopping and job.id in self._jobs:
                job.status = "queued"  # a graceful stop: the next start resumes it
                _log.info("speech job %s interrupted by shutdown; it resumes at the next start", job.id)
            else:
                job.status = "cancelled"
                _log.info("speech job %s cancelled", job.id)
            raise
        except VoxserveError as exc:
            job.status, job.error = "failed", exc
            _log.error("speech job %s failed: %s (%s)", job.id, exc.message, exc.code)
        except Exception:
            job.status = "failed"
            job.error = EngineFailure(f"the job failed unexpectedly (job {job.id})", code="job_failed")
            _log.exception("speech job %s failed unexpectedly", job.id)
        finally:
            if not job.active and job.ended is None:
                self._ended(job)
            if job.id in self._jobs:
                try:
                    await asyncio.shield(asyncio.to_thread(self._store_update, job))
                except JobStoreError as exc:
                    _log.error("speech job %s: its end could not be recorded: %s", job.id, exc.message)

    async def _synthesize(self, job: SpeechJob, engine: JobEngine) -> None:
        spec = job.spec
        # One thread per job: its writes, syncs, records and the final close run in order.
        io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"io-{job.id}")
        loop = asyncio.get_running_loop()

        async def run_io(fn: Callable[[], _T]) -> _T:
            return await loop.run_in_executor(io, fn)

        # Filled in the job's thread: a cancel during the file's creation still finds it to close.
        opened: list[AudioFileWriter] = []
        try:
            await run_io(partial(self._open_writer, job, opened))
            writer = opened[0]
            for index in range(job.sections_done, len(spec.sections)):
                section = spec.sections[index]
                fragments = await asyncio.to_thread(engine.plan, section)
                if fragments:
                    pcm = await self._section_pcm(job, engine.synthesize, fragments)
                    await run_io(partial(writer.write, pcm))
                # The section's audio durable first, then the record that says so.
                job.pcm_bytes = await run_io(writer.sync)
                job.sections_done = index + 1
                job.chars_done += len(section)
                job.audio_seconds = writer.audio_s
                job.file_bytes = writer.file_bytes
                self._check_storage(job)
                await run_io(partial(self._store_update, job))
            if job.chars_done != job.input_chars:  # cannot happen: never call a short file complete
                raise EngineFailure("the job did not cover its whole text", code="incomplete_job")
            if spec.trailing_silence_s > 0:
                silence = bytes(2 * round(spec.trailing_silence_s * spec.sample_rate))
                await run_io(partial(writer.write, silence))
                job.audio_seconds = writer.audio_s
            job.size_bytes = await run_io(writer.close)
            job.status = "succeeded"
            self._ended(job)
            await run_io(partial(self._store_update, job))
            await run_io(writer.remove_spool)
            job.file_bytes = job.size_bytes
        except BaseException as exc:
            # In the job's own thread, so after any write (or the file's creation) still running
            # there; shielded, so a cancelled job is done with its files by the time its task ends.
            # A graceful stop keeps the spool to resume from; anything else deletes every file.
            keep = isinstance(exc, asyncio.CancelledError) and self._stopping and job.id in self._jobs
            await asyncio.shield(loop.run_in_executor(io, partial(_close_writers, opened, job.files(), keep)))
            if not keep:
                job.file_bytes = 0
            raise
        finally:
            io.shutdown(wait=False)

    def _open_writer(self, job: SpeechJob, opened: list[AudioFileWriter]) -> None:
        """Start the job's file, or resume its spool at the last durable section (blocking)."""
        spec = job.spec
        if job.sections_done:
            try:
                resumed = AudioFileWriter(
                    job.path, spec.response_format, spec.sample_rate, resume_bytes=job.pcm_bytes
                )
                opened.append(resumed)
                return
            except SpoolLost as exc:
                _log.warning("speech job %s starts again from its beginning: %s", job.id, exc)
                job.sections_done = job.chars_done = job.pcm_bytes = 0
                job.audio_seconds = 0.0
        opened.append(AudioFileWriter(job.path, spec.response_format, spec.sample_rate))

    def _check_storage(self, job: SpeechJob) -> None:
        """Fail ``job`` when the files pass ``max_storage_bytes``, or its key's files pass
        ``max_storage_bytes_per_key`` (it is the one growing them)."""
        if self.max_storage_bytes is not None and self.stored_bytes > self.max_storage_bytes:
            raise RateLimited(
                f"the speech jobs' files passed their {self.max_storage_bytes} bytes while this job was "
                "written; delete finished jobs or raise max_job_storage_bytes",
                code="job_storage_full",
            )
        if job.owner is not None and self.max_storage_bytes_per_key is not None:
            used = sum(j.file_bytes for j in self._jobs.values() if j.owner == job.owner)
            if used > self.max_storage_bytes_per_key:
                raise RateLimited(
                    f"this API key's speech job files passed its {self.max_storage_bytes_per_key} bytes "
                    "while this job was written; delete finished jobs",
                    code="job_storage_full_for_key",
                )

    async def _section_pcm(
        self, job: SpeechJob, synthesize: SectionSynth, fragments: tuple[Fragment, ...]
    ) -> bytes:
        """One section's audio. Buffered (one section: about a minute of audio) so that a retry after
        a crashed worker starts the section again instead of repeating half of it in the file."""
        crashes = busy = 0
        while True:
            parts: list[bytes] = []
            try:
                async with contextlib.aclosing(synthesize(fragments)) as pieces:
                    async for piece in pieces:
                        parts.append(piece)
                return b"".join(parts)
            except Unavailable as exc:
                # Every worker busy with live requests (each try already waited queue_timeout_s):
                # a job can wait, so it backs off and tries again, for minutes rather than seconds.
                busy += 1
                if busy >= _BUSY_ATTEMPTS:
                    raise
                self._retrying(job, exc, busy, _BUSY_ATTEMPTS)
                await asyncio.sleep(min(busy, 10) * self.retry_backoff_s)
            except VoxserveError as exc:
                crashes += 1
                if exc.code not in _CRASH_CODES or crashes >= _CRASH_ATTEMPTS:
                    raise
                self._retrying(job, exc, crashes, _CRASH_ATTEMPTS)

    @staticmethod
    def _retrying(job: SpeechJob, exc: VoxserveError, failures: int, attempts: int) -> None:
        _log.warning(
            "speech job %s: section failed (%s), trying again (%d/%d)",
            job.id,
            exc.code,
            failures + 1,
            attempts,
        )


def pool_synthesizer(
    pool: EnginePool, voice: str, *, speed: float, volume: float, sample_rate: int
) -> SectionSynth:
    """A :data:`SectionSynth` that speaks each section with one job on a worker of ``pool``.

    The worker sends raw PCM (``fmt="pcm"``): the job encodes its one file itself, so a section
    boundary never restarts a container or a codec. Closing the iterator early aborts the worker job.
    """

    async def synthesize(fragments: tuple[Fragment, ...]) -> AsyncGenerator[bytes, None]:
        stream = await pool.synth(
            SynthRequest(
                voice=voice,
                speed=speed,
                fmt="pcm",
                sample_rate=sample_rate,
                fragments=fragments,
                volume=volume,
                parallel=True,  # idle workers only: a live request waiting for one comes first
                background=True,  # and live requests' fragments before its own
            )
        )
        try:
            async for chunk in stream:
                if chunk.data:
                    yield chunk.data
        finally:
            stream.abort()

    return synthesize


def _close_writers(opened: list[AudioFileWriter], paths: list[Path], keep: bool) -> None:
    for writer in opened:
        if keep:
            writer.release()
        else:
            writer.discard()
    if not keep:
        _remove_files(paths)


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _size_of(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += os.stat(path).st_size
    return total
