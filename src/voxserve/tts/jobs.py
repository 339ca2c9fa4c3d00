"""Speech jobs: long texts synthesized in the background into a file, section by section.

The real-time speech route refuses inputs over ``max_input_chars`` (4096): a book read in one
streamed response would hold a worker for hours and be lost with the connection. A *job* takes up to
``max_job_chars`` instead. :class:`SpeechJobs` keeps the jobs of one server: it queues them (at most
``max_jobs`` queued or running), runs ``job_concurrency`` at a time, writes each one's audio to a
file in its folder as sections finish, and deletes finished jobs ``job_ttl_s`` after they end.

A job runs its text as consecutive sections (:mod:`voxserve.tts.longform`), one worker call each, so
live requests get a worker between two sections. Nothing is ever dropped silently: a section that
fails (after a retry when its worker crashed or the engine was busy) fails the whole job, its file is
deleted, and the job's ``error`` says why — a job is ``succeeded`` only when every input character has
been through synthesis.

Blocking work (planning text, encoding, file I/O) runs in threads; each job writes through its own
one-thread executor, so its file operations keep their order even when the job is cancelled mid-write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from voxserve.audio.filewriter import AudioFileWriter
from voxserve.errors import Conflict, EngineFailure, RateLimited, Unavailable, UnknownJob, VoxserveError
from voxserve.runtime.messages import SynthRequest
from voxserve.runtime.pool import EnginePool
from voxserve.text.markup import Fragment

__all__ = ["JobSpec", "JobStatus", "SectionSynth", "SpeechJob", "SpeechJobs", "pool_synthesizer"]

_log = logging.getLogger("voxserve.jobs")

_T = TypeVar("_T")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

SectionSynth = Callable[[tuple[Fragment, ...]], AsyncGenerator[bytes, None]]
"""Synthesize one section's fragments: s16le mono PCM at the jobs' sample rate, in pieces."""

_CRASH_ATTEMPTS = 3
"""Tries per section when its worker crashed (more would only crash more workers on bad input)."""
_CRASH_CODES = frozenset({"worker_crashed", "worker_unavailable"})
_BUSY_ATTEMPTS = 10
"""Tries per section when no worker was free (``at_capacity``)."""
_ID_PREFIX = "speechjob_"
_MAX_WARNINGS = 20


@dataclass(frozen=True)
class JobSpec:
    """What one job speaks and how (built by the route once the request is validated)."""

    sections: tuple[str, ...]
    """Consecutive slices of the input that join back into it."""
    response_format: str
    plan: Callable[[str], tuple[Fragment, ...]]
    """A section's fragments (blocking: runs in a thread); empty when it has nothing to speak."""
    synthesize: SectionSynth
    model: str = ""
    voice: str = ""
    """The voice id that speaks (shown in the job object)."""
    trailing_silence_s: float = 0.0
    warnings: tuple[str, ...] = ()
    """Look-alike markup tags removed from the text (shown in the job object)."""


@dataclass(eq=False)
class SpeechJob:
    """One job and its progress. Read it; only :class:`SpeechJobs` changes it."""

    id: str
    spec: JobSpec
    path: Path
    created_at: int
    """Unix time, seconds."""
    input_chars: int
    status: JobStatus = "queued"
    chars_done: int = 0
    """Input characters synthesized (and written), section by section."""
    audio_seconds: float = 0.0
    error: VoxserveError | None = None
    size_bytes: int | None = None
    """The file's size, once the job has succeeded."""
    finished_at: int | None = None
    owner: str | None = None
    """The principal (API key) that created the job; every other key gets a 404 for it."""
    file_bytes: int = 0
    """Bytes in the job's file so far (counted against ``max_storage_bytes``)."""
    ended: float | None = None
    """When the job ended, on the store's clock (for expiry)."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ("queued", "running")

    def to_dict(self, ttl_s: float) -> dict[str, Any]:
        """The ``speech.job`` object of the API."""
        return {
            "id": self.id,
            "object": "speech.job",
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "expires_at": None if self.finished_at is None else self.finished_at + round(ttl_s),
            "model": self.spec.model,
            "voice": self.spec.voice,
            "response_format": self.spec.response_format,
            "input_chars": self.input_chars,
            "chars_done": self.chars_done,
            "audio_seconds": round(self.audio_seconds, 3),
            "bytes": self.size_bytes,
            "warnings": list(self.spec.warnings[:_MAX_WARNINGS]),
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message},
        }

    def check_audio(self) -> Path:
        """The file of a succeeded job; 409 otherwise (``job_not_finished``, ``job_failed``,
        ``job_cancelled``)."""
        if self.status == "succeeded":
            return self.path
        if self.active:
            raise Conflict(
                f"job {self.id} is {self.status} ({self.chars_done} of {self.input_chars} characters done); "
                "its audio is ready when its status is succeeded",
                code="job_not_finished",
            )
        if self.status == "failed":
            detail = f": {self.error.message}" if self.error is not None else ""
            raise Conflict(f"job {self.id} failed{detail}", code="job_failed")
        raise Conflict(f"job {self.id} was cancelled", code="job_cancelled")


class SpeechJobs:
    """Every speech job of one server: queue, runner, files, expiry.

    Creating it starts nothing; :meth:`start` makes the folder and the expiry task, :meth:`stop`
    cancels every job and deletes every file (and the folder, when it made a temporary one).
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
        clock: Callable[[], float] = time.monotonic,
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
        self._configured_dir = directory
        self._dir: Path | None = None
        self._owns_dir = False
        self._clock = clock
        self._jobs: dict[str, SpeechJob] = {}
        self._slots: asyncio.Semaphore | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The folder of the job files (once started)."""
        if self._dir is None:
            raise RuntimeError("SpeechJobs.start() has not run")
        return self._dir

    async def start(self) -> None:
        """Create the folder (a fresh temporary one unless ``directory`` was given) and the expiry task."""
        if self._configured_dir is None:
            self._dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="voxserve-jobs-"))
            self._owns_dir = True
        else:
            await asyncio.to_thread(self._configured_dir.mkdir, parents=True, exist_ok=True)
            self._dir = self._configured_dir
        self._slots = asyncio.Semaphore(self.concurrency)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="speech-jobs-expiry")

    async def stop(self) -> None:
        """Cancel every queued and running job, wait for them, and delete every job file."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for job in self._jobs.values():
            self._cancelled(job)
        paths = [job.path for job in self._jobs.values()]
        self._jobs.clear()
        directory, owned = self._dir, self._owns_dir
        self._dir = None
        if directory is not None:
            await asyncio.to_thread(_remove_files, paths, directory if owned else None)

    # --- the API's operations -----------------------------------------------------------------------

    def check_capacity(self, owner: str | None = None) -> None:
        """429 ``too_many_jobs`` (``Retry-After: 30``) when ``max_jobs`` are queued or running, and
        ``too_many_jobs_for_key`` when ``owner`` has ``max_jobs_per_key`` of them (asked before a
        request does any work, and again when the job is added); the ``job_storage_full`` pair
        likewise for the bytes of the job files."""
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

    @property
    def stored_bytes(self) -> int:
        """Bytes in every job file the store holds (finished, or being written)."""
        return sum(job.file_bytes for job in self._jobs.values())

    def submit(self, spec: JobSpec, owner: str | None = None) -> SpeechJob:
        """Queue a job for ``owner`` (a principal, None without API keys) and start its task; return
        it (status ``queued``)."""
        self.check_capacity(owner)
        if self._slots is None:
            raise Unavailable("the server is not accepting jobs (starting or stopping)", code="at_capacity")
        job_id = f"{_ID_PREFIX}{secrets.token_hex(16)}"  # 128 random bits: ids cannot be guessed
        job = SpeechJob(
            id=job_id,
            spec=spec,
            path=self.directory / f"{job_id}.{spec.response_format}",
            created_at=int(time.time()),
            input_chars=sum(len(s) for s in spec.sections),
            owner=owner,
        )
        self._jobs[job_id] = job
        job.task = asyncio.create_task(self._run(job, self._slots), name=job_id)
        return job

    def get(self, job_id: str, owner: str | None = None) -> SpeechJob:
        """``owner``'s job with this id; 404 ``unknown_job`` if there is none (or it has expired, or
        it belongs to another key: whether an id exists is not told to other keys)."""
        job = self._jobs.get(job_id)
        if job is None or self._expired(job) or job.owner != owner:
            raise UnknownJob.for_id(job_id)
        return job

    def list_jobs(self, owner: str | None = None) -> list[SpeechJob]:
        """``owner``'s jobs that have not expired, oldest first."""
        return [job for job in self._jobs.values() if not self._expired(job) and job.owner == owner]

    @property
    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (for ``/ready``)."""
        out = {"queued": 0, "running": 0, "finished": 0}
        for job in self._jobs.values():
            out[job.status if job.active else "finished"] += 1
        return out

    async def delete(self, job_id: str, owner: str | None = None) -> SpeechJob:
        """Cancel the job if it is queued or running, delete its file and forget it; return it as it
        ended (``cancelled`` if it had not finished)."""
        job = self.get(job_id, owner)
        del self._jobs[job_id]
        task = job.task
        if task is not None and not task.done():
            task.cancel()
            # The task deletes its own file on the way out; wait for that, but never for long: the
            # worker is told to stop between audio pieces and is killed if it does not.
            await asyncio.wait([task], timeout=10.0)
        self._cancelled(job)
        await asyncio.to_thread(job.path.unlink, missing_ok=True)
        return job

    async def sweep(self) -> None:
        """Forget the jobs that finished more than ``ttl_s`` ago and delete their files."""
        expired = [job for job in self._jobs.values() if self._expired(job)]
        for job in expired:
            del self._jobs[job.id]
        if expired:
            _log.info("%d finished speech job(s) expired", len(expired))
            await asyncio.to_thread(_remove_files, [job.path for job in expired], None)

    # --- internals ----------------------------------------------------------------------------------

    def _cancelled(self, job: SpeechJob) -> None:
        """Mark a job whose task was cancelled before it ever ran (it was queued) as cancelled."""
        if job.active:
            job.status = "cancelled"
            job.ended = self._clock()
            job.finished_at = int(time.time())

    def _expired(self, job: SpeechJob) -> bool:
        return job.ended is not None and self._clock() - job.ended >= self.ttl_s

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
                _log.info("speech job %s started (%d characters)", job.id, job.input_chars)
                await self._synthesize(job)
            job.status = "succeeded"
            _log.info("speech job %s succeeded: %.1f s of audio", job.id, job.audio_seconds)
        except asyncio.CancelledError:
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
            job.ended = self._clock()
            job.finished_at = int(time.time())

    async def _synthesize(self, job: SpeechJob) -> None:
        spec = job.spec
        # One thread per job: its writes, the final close and a discard after a cancel run in order.
        io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"io-{job.id}")
        loop = asyncio.get_running_loop()

        async def run_io(fn: Callable[[], _T]) -> _T:
            return await loop.run_in_executor(io, fn)

        # Filled in the job's thread: a cancel during the file's creation still finds it to close.
        opened: list[AudioFileWriter] = []
        try:
            await run_io(
                lambda: opened.append(AudioFileWriter(job.path, spec.response_format, self.sample_rate))
            )
            writer = opened[0]
            for section in spec.sections:
                fragments = await asyncio.to_thread(spec.plan, section)
                if fragments:
                    pcm = await self._section_pcm(job, fragments)
                    await run_io(partial(writer.write, pcm))
                    job.audio_seconds = writer.audio_s
                    job.file_bytes = writer.file_bytes
                    self._check_storage(job)
                job.chars_done += len(section)
            if job.chars_done != job.input_chars:  # cannot happen: never call a short file complete
                raise EngineFailure("the job did not cover its whole text", code="incomplete_job")
            if spec.trailing_silence_s > 0:
                silence = bytes(2 * round(spec.trailing_silence_s * self.sample_rate))
                await run_io(partial(writer.write, silence))
                job.audio_seconds = writer.audio_s
            job.size_bytes = job.file_bytes = await run_io(writer.close)
        except BaseException:
            # In the job's own thread, so after any write (or the file's creation) still running
            # there; shielded, so a cancelled job has deleted its file by the time its task ends.
            await asyncio.shield(loop.run_in_executor(io, lambda: _discard(opened, job.path)))
            job.file_bytes = 0
            raise
        finally:
            io.shutdown(wait=False)

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

    async def _section_pcm(self, job: SpeechJob, fragments: tuple[Fragment, ...]) -> bytes:
        """One section's audio. Buffered (one section: about a minute of audio) so that a retry after
        a crashed worker starts the section again instead of repeating half of it in the file."""
        crashes = busy = 0
        while True:
            parts: list[bytes] = []
            try:
                async with contextlib.aclosing(job.spec.synthesize(fragments)) as pieces:
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
            )
        )
        try:
            async for chunk in stream:
                if chunk.data:
                    yield chunk.data
        finally:
            stream.abort()

    return synthesize


def _discard(opened: list[AudioFileWriter], path: Path) -> None:
    for writer in opened:
        writer.discard()
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _remove_files(paths: list[Path], directory: Path | None) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
