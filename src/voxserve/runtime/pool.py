"""The async side of the worker runtime: worker handles and a pool per engine.

A :class:`WorkerHandle` (:mod:`voxserve.runtime.handle`) owns one spawned process and its pipe, read
into a small bounded inbox, so a slow client slows its worker instead of filling memory. An
:class:`EnginePool` leases idle workers to requests (bounded wait, then 503), cancels abandoned jobs,
kills workers that ignore a cancel, and replaces workers that die, reporting a clean error to the
request they were serving.

Idle cores belong to whoever is waiting: a synthesis of several fragments (``SynthRequest.parallel``)
runs on one worker, its *primary*, which speaks the first fragment at once and encodes all of them in
order; whenever another worker is idle and no request waits for one, the pool lends it the next
fragment not yet claimed (:class:`ParallelSynthStream`). A helper renders one fragment into a scratch
file and goes back to the pool, so under load every request still has its own worker and waits at
most one fragment for it. Under load the oldest request comes first: a primary whose own audio is far
enough ahead of its client's playback renders the next fragment of an older request before its own
(first come, first finished: two requests that arrive together no longer both finish late, and the
younger one's listener hears no gap). A helper that dies or fails hands its fragment back to the
primary, which renders it itself (one retry, nothing lost or spoken twice); a primary that dies fails
the request (``worker_crashed``) and stops its helpers; an abort stops every worker speaking for the
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from voxserve.engines.base import VoiceInfo
from voxserve.errors import EngineFailure, Unavailable, VoxserveError
from voxserve.runtime import messages as m
from voxserve.runtime.handle import DEAD, WorkerHandle
from voxserve.text.markup import Fragment

__all__ = [
    "EnginePool",
    "ItemStream",
    "JobStream",
    "ParallelSynthStream",
    "SynthStream",
    "WorkerHandle",
    "collect",
]

_log = logging.getLogger("voxserve.pool")

_job_ids = itertools.count(1)


class JobStream:
    """A running job: iterate it for its :class:`Chunk` or :class:`Item` messages; ``abort()`` if you
    stop early. Errors from the worker are raised; a worker that dies raises ``worker_crashed``."""

    def __init__(self, pool: EnginePool, worker: WorkerHandle, job_id: int) -> None:
        self._pool = pool
        self._worker = worker
        self.job_id = job_id
        self.finished = False
        self.done: m.Done | None = None

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> Any:
        if self.finished:
            raise StopAsyncIteration
        while True:
            msg = await self._worker.recv()
            if msg is DEAD:
                self._finish(dead=True)
                raise EngineFailure("the worker serving this request stopped", code="worker_crashed")
            if getattr(msg, "job_id", None) != self.job_id:
                self._foreign(msg)  # a late message from a cancelled job, or a lent render's answer
                continue
            if isinstance(msg, m.Chunk | m.Item):
                return msg
            if isinstance(msg, m.Claim):
                self._on_claim(msg)
                continue
            if isinstance(msg, m.Done):
                self.done = msg
                self._pool._job_done(msg)
                self._finish()
                raise StopAsyncIteration
            if isinstance(msg, m.JobError):
                self._finish()
                raise msg.error

    def _finish(self, *, dead: bool = False) -> None:
        self.finished = True
        self._pool._release(self._worker, dead=dead)

    def _foreign(self, msg: Any) -> None:
        """A message for another job on this worker's pipe (late ones of cancelled jobs are dropped)."""

    def _on_claim(self, claim: m.Claim) -> None:
        """A job that is not parallel has nothing to hand out."""
        with contextlib.suppress(EngineFailure):
            self._worker.send(m.Assign(self.job_id, -1))

    def abort(self) -> None:
        """Cancel the job (the client went away). Safe to call from ``finally`` and more than once."""
        if self.finished:
            return
        self.finished = True
        self._pool._spawn(self._pool._cancel_and_release(self._worker, self.job_id))


class SynthStream(JobStream):
    """A running synthesis: its messages are :class:`Chunk` s of encoded audio."""

    async def __anext__(self) -> m.Chunk:
        chunk: m.Chunk = await super().__anext__()
        return chunk


class ParallelSynthStream(SynthStream):
    """A synthesis whose later fragments idle workers render ahead (see the module docstring)."""

    def __init__(self, pool: EnginePool, worker: WorkerHandle, job: m.SynthJob) -> None:
        super().__init__(pool, worker, job.job_id)
        self._job = job
        self._next = 1
        """The first fragment nobody has claimed yet (the primary always speaks fragment 0)."""
        self._helpers: dict[int, tuple[WorkerHandle, int, asyncio.Task[None]]] = {}
        self._sent: list[str] = []
        """Scratch files handed to the primary (it deletes them; these are checked after it stops)."""
        self.helped = 0
        """Fragments rendered by other workers."""
        self.retried = 0
        """Fragments handed back to the primary because their helper failed or died."""
        self.lent = 0
        """Fragments of older requests this request's primary rendered."""
        self._started = time.monotonic()
        self._first_audio_at: float | None = None
        self._claim_msg: m.Claim | None = None
        """The primary's last claim (answered again after each lent render); None before the first,
        while the first fragment is spoken."""
        self._lent: dict[int, tuple[ParallelSynthStream, int, str, float]] = {}
        """Lent renders in progress on the primary: job id → (the older request, its fragment index,
        scratch file, when sent)."""
        pool._parallel.append(self)

    async def __anext__(self) -> m.Chunk:
        chunk = await super().__anext__()
        if self._first_audio_at is None:
            self._first_audio_at = time.monotonic()  # the client's playback starts about now
        return chunk

    @property
    def helpers(self) -> int:
        """How many other workers render a fragment of this request now."""
        return len(self._helpers)

    def _claim(self) -> int:
        if self._next >= len(self._job.fragments):
            return -1
        self._next += 1
        return self._next - 1

    def _on_claim(self, claim: m.Claim) -> None:
        self._claim_msg = claim
        if not self._lend_ahead():
            index = self._claim()
            with contextlib.suppress(EngineFailure):
                self._worker.send(m.Assign(self.job_id, index))
        self._spread()

    def _render_cost(self, index: int) -> float:
        """Estimated seconds to render fragment ``index`` on one worker (0 past the last one)."""
        if index >= len(self._job.fragments):
            return 0.0
        per_char = self._pool._s_per_char
        if per_char is None:  # nothing measured in this pool yet: this request's own first fragment
            spoken = _chars(self._job.fragments[0])
            per_char = (time.monotonic() - self._started) / max(spoken, 1)
        return per_char * _chars(self._job.fragments[index])

    def _lend_ahead(self) -> bool:
        """Answer the primary's claim with the next fragment of the oldest request that has one
        unclaimed, if this request's audio stays ahead of its playback by ``lend_margin_s`` after that
        render and its own next one (a background request: of any live request, always); whether it
        did."""
        older = self._pool._needing_help(self)
        if older is None:
            return False
        index = older._next
        if not self._job.background:
            if self._first_audio_at is None or self._claim_msg is None:
                return False
            lead = self._first_audio_at + self._claim_msg.audio_s - time.monotonic()
            cost = older._render_cost(index) + self._render_cost(self._next)
            if lead - cost < self._pool.lend_margin_s:
                return False
        older._claim()
        job_id = next(_job_ids)
        path = str(self._pool._scratch() / f"{older.job_id}-{index}.npy")
        job = older._job
        try:
            self._worker.send(
                m.RenderJob(job_id, job.voice, job.speed, job.sample_rate, job.fragments[index], path)
            )
        except EngineFailure:  # a dead primary: its own stream reports it; the fragment goes back
            older._rendered(index, None, ())
            return True
        self._lent[job_id] = (older, index, path, time.monotonic())
        return True

    def _foreign(self, msg: Any) -> None:
        job_id = getattr(msg, "job_id", None)
        lent = self._lent.pop(job_id, None) if isinstance(job_id, int) else None
        if lent is None:
            return
        older, index, path, sent_at = lent
        if isinstance(msg, m.Result):
            self.lent += 1
            self._pool._observe(older._job.fragments[index], time.monotonic() - sent_at)
            older._rendered(index, path, msg.value)
        else:  # cancelled or failed: the older request's primary renders it itself
            older._rendered(index, None, ())
            self._pool._spawn(asyncio.to_thread(_unlink, path))
        if not self.finished and self._claim_msg is not None:
            self._on_claim(self._claim_msg)  # the primary still waits for its own answer

    def _return_lent(self) -> bool:
        """This request ends with lent renders in progress: their fragments go back to their owners
        (whose primaries render them), and the files, if the worker still writes them, are removed
        with this request's scratch files (by :meth:`_cleanup`); whether there were any."""
        lent, self._lent = self._lent, {}
        for job_id, (older, index, path, _) in lent.items():
            with contextlib.suppress(EngineFailure):
                self._worker.cancel(job_id)
            older._rendered(index, None, ())
            self._sent.append(path)
        return bool(lent)

    def _spread(self) -> None:
        """Lend idle workers the next unclaimed fragments (only while no request waits for one)."""
        while not self.finished and self._next < len(self._job.fragments):
            helper = self._pool._lend_idle()
            if helper is None:
                return
            index = self._claim()
            job_id = next(_job_ids)
            path = str(self._pool._scratch() / f"{self.job_id}-{index}.npy")
            job = self._job
            try:
                helper.send(
                    m.RenderJob(job_id, job.voice, job.speed, job.sample_rate, job.fragments[index], path)
                )
            except EngineFailure:
                self._pool._release(helper, dead=True)
                self._deliver(index, None, ())
                continue
            task = asyncio.ensure_future(self._help(helper, job_id, index, path))
            self._helpers[index] = (helper, job_id, task)

    async def _help(self, helper: WorkerHandle, job_id: int, index: int, path: str) -> None:
        pool = self._pool
        pieces: tuple[m.RenderedPiece, ...] | None = None
        sent_at = time.monotonic()
        try:
            while True:
                msg = await helper.recv()
                if msg is DEAD:
                    pool._release(helper, dead=True)
                    break
                if getattr(msg, "job_id", None) != job_id:
                    continue
                if isinstance(msg, m.Result):
                    pieces = msg.value
                    pool._observe(self._job.fragments[index], time.monotonic() - sent_at)
                    pool._release(helper)
                    break
                if isinstance(msg, m.Done | m.JobError):
                    if isinstance(msg, m.Done):
                        pool._job_done(msg)  # a cancel: counted like any cancelled job
                    pool._release(helper)
                    break
        finally:
            self._helpers.pop(index, None)
        if pieces is None:
            await asyncio.to_thread(_unlink, path)
        self._rendered(index, None if pieces is None else path, pieces or ())
        self._spread()

    def _rendered(self, index: int, path: str | None, pieces: tuple[m.RenderedPiece, ...]) -> None:
        """Fragment ``index``, rendered by another worker into ``path`` (``None``: it failed, and the
        primary renders it itself), goes to the primary."""
        if self.finished:
            if path is not None:
                self._pool._spawn(asyncio.to_thread(_unlink, path))  # nobody will speak it
            return
        if path is None:
            self.retried += 1
        else:
            self.helped += 1
        self._deliver(index, path, pieces)

    def _deliver(self, index: int, path: str | None, pieces: tuple[m.RenderedPiece, ...]) -> None:
        if path is not None:
            self._sent.append(path)
        with contextlib.suppress(EngineFailure):  # a dead primary: its own stream reports it
            self._worker.send(m.Delivered(self.job_id, index, path, pieces))

    def _stop_helpers(self) -> None:
        for helper, job_id, task in list(self._helpers.values()):
            with contextlib.suppress(EngineFailure):
                helper.cancel(job_id)
            self._pool._spawn(self._reap(helper, task))

    async def _reap(self, helper: WorkerHandle, task: asyncio.Task[None]) -> None:
        """Kill a helper that ignores its cancel (its task then sees the pipe end and releases it)."""
        _, pending = await asyncio.wait({task}, timeout=self._pool.cancel_grace_s)
        if pending:
            _log.warning("worker %s ignored cancel: killing it", helper.name)
            helper.kill()

    async def _cleanup(self) -> None:
        sent, self._sent = self._sent, []
        await asyncio.to_thread(_unlink_all, sent)

    def _finish(self, *, dead: bool = False) -> None:
        self._pool._forget(self)
        returned = self._return_lent()
        super()._finish(dead=dead)
        self._stop_helpers()
        if dead or returned:
            self._pool._spawn(self._cleanup())

    def abort(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._pool._forget(self)
        self._return_lent()
        self._stop_helpers()

        async def stop_primary() -> None:
            await self._pool._cancel_and_release(self._worker, self.job_id)
            await self._cleanup()

        self._pool._spawn(stop_primary())


def _chars(fragment: Fragment) -> int:
    """How much there is to say in a fragment (a pause costs nothing to render)."""
    if isinstance(fragment, str):
        return len(fragment)
    return len(getattr(fragment, "text", ""))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        _unlink(path)


class ItemStream(JobStream):
    """A running :class:`StreamCall`: its values (the ``Item`` payloads)."""

    async def __anext__(self) -> Any:
        item: m.Item = await super().__anext__()
        return item.value


class BusyLedger:
    """How many workers are busy in this server, over all its pools (TTS and STT share the cores).

    The count lives in shared memory that the workers read too: a job marked lone when it was
    dispatched checks it again right before its inference, and runs on its one thread if another job
    has started since (two requests that arrive together would otherwise share the cores between
    three threads: the second one's first audio 200 -> 240-290 ms, the first one's no better)."""

    def __init__(self) -> None:
        self.shared: Any = multiprocessing.get_context("spawn").RawValue("i", 0)
        """What :class:`WorkerHandle` gives its worker process (``.value``: the count)."""

    @property
    def busy(self) -> int:
        return int(self.shared.value)

    @busy.setter
    def busy(self, count: int) -> None:
        self.shared.value = count


class EnginePool:
    """Worker processes for one engine, with admission control."""

    def __init__(
        self,
        spec: m.EngineSpec,
        size: int,
        *,
        start_timeout_s: float = 120.0,
        cancel_grace_s: float = 1.0,
        queue_timeout_s: float = 10.0,
        max_queued: int = 32,
        heartbeat_s: float = 5.0,
        hang_timeout_s: float = 30.0,
        on_restart: Callable[[str], None] | None = None,
        on_done: Callable[[str, m.Done], None] | None = None,
        name: str | None = None,
        ledger: BusyLedger | None = None,
        initial: int | None = None,
        lend_margin_s: float = 0.5,
    ) -> None:
        """``initial``: how many of the ``size`` workers :meth:`start` starts (default all); the others
        start in the background after the pool's first job, or when a request finds no worker idle
        (see :meth:`_grow`; each idle worker holds its own model: a pool nobody has used yet keeps
        one). ``lend_margin_s``: how far a parallel synthesis's audio must stay ahead of its playback,
        after rendering an older request's next fragment and then its own next one, for its worker to
        render the older one first (see :class:`ParallelSynthStream`)."""
        self.spec = spec
        self.lend_margin_s = lend_margin_s
        self.ledger = ledger or BusyLedger()
        """Shared by the pools of one server (the registry gives them one); a pool alone counts itself."""
        self.name = name or spec.engine
        self.size = size
        self.initial = size if initial is None else max(1, min(initial, size))
        self._grown = self.initial >= size
        self.start_timeout_s = start_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self.queue_timeout_s = queue_timeout_s
        self.max_queued = max_queued
        self.heartbeat_s = heartbeat_s
        self.hang_timeout_s = hang_timeout_s
        self.on_restart = on_restart
        self.on_done = on_done
        self.voices: list[VoiceInfo] = []
        self.workers: list[WorkerHandle] = []
        self.waiting = 0
        self.busy = 0
        self.restarts = 0
        self._idle: asyncio.Queue[WorkerHandle] = asyncio.Queue(maxsize=size)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counter = itertools.count()
        self._started: asyncio.Task[None] | None = None
        self._closing = False
        self._scratch_dir: Path | None = None
        self._parallel: list[ParallelSynthStream] = []
        """Parallel syntheses in progress, oldest first."""
        self._s_per_char: float | None = None
        """Seconds one worker takes per character of a fragment (moving average of the renders)."""

    @property
    def idle_workers(self) -> int:
        """How many workers are idle now."""
        return self._idle.qsize()

    @property
    def ready(self) -> bool:
        return bool(self.workers) and any(w.alive for w in self.workers)

    async def start(self) -> None:
        """Start the pool's ``initial`` workers (concurrently); idempotent and safe to await from many
        requests."""
        if self._started is None:
            self._started = asyncio.create_task(self._start_all(), name=f"start-{self.name}")
        await asyncio.shield(self._started)

    async def _start_all(self) -> None:
        # Only the first worker keeps a lone-request copy of its model (see _lone).
        lone_less = dataclasses.replace(self.spec, lone_threads=0)
        errors = await self._start_workers([self.spec] + [lone_less] * (self.initial - 1))
        if not self.workers:
            self._started = None  # let a later request try again
            first = errors[0] if errors else None
            raise first if isinstance(first, VoxserveError) else EngineFailure("no worker could start")
        self.voices = self.workers[0].voices
        self._spawn(self._watch())
        _log.info(
            "%s: %d worker(s) ready (pids %s)",
            self.name,
            len(self.workers),
            [w.pid for w in self.workers],
        )

    def _grow(self) -> None:
        """Start the workers a pool started with fewer than ``size`` did not, in the background: after
        its first job, or as soon as a request finds no idle worker. Not at the first request: a
        worker's start (model load, warm-up) takes a core for about a second, which the first request,
        alone on the server, uses (its first fragment runs on every core)."""
        if self._grown or self._closing:
            return
        self._grown = True
        self._spawn(self._add_workers(self.size - len(self.workers)))

    async def _add_workers(self, count: int) -> None:
        await self._start_workers([dataclasses.replace(self.spec, lone_threads=0)] * count)
        _log.info("%s: started on first use: now %d worker(s)", self.name, len(self.workers))

    async def _start_workers(self, specs: list[m.EngineSpec]) -> list[BaseException]:
        """Start a worker for each spec, concurrently; those that answer the handshake join the pool.
        The start errors, in order."""
        handles = [self._handle(spec) for spec in specs]
        results = await asyncio.gather(
            *(h.start(self.start_timeout_s) for h in handles), return_exceptions=True
        )
        errors: list[BaseException] = []
        for handle, result in zip(handles, results, strict=True):
            if isinstance(result, BaseException):
                _log.error("worker %s failed to start: %s", handle.name, result)
                errors.append(result)
            elif self._closing:
                await handle.stop()
            else:
                self.workers.append(handle)
                self._idle.put_nowait(handle)
        return errors

    def _handle(self, spec: m.EngineSpec) -> WorkerHandle:
        return WorkerHandle(spec, next(self._counter), busy=self.ledger.shared)

    async def stop(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        self.workers.clear()
        if self._scratch_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._scratch_dir, True)
            self._scratch_dir = None

    def _scratch(self) -> Path:
        """The pool's folder for fragments rendered ahead (in memory where /dev/shm exists); removed
        by :meth:`stop`."""
        if self._scratch_dir is None:
            shm = "/dev/shm"
            base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
            self._scratch_dir = Path(tempfile.mkdtemp(prefix=f"voxserve-{self.name}-", dir=base))
        return self._scratch_dir

    async def _watch(self) -> None:
        """Heartbeat: ping every worker each ``heartbeat_s``; one silent for ``hang_timeout_s`` is
        hung (a busy worker answers between audio pieces): it is killed, the request it serves gets
        ``worker_crashed``, and a replacement starts."""
        while not self._closing:
            await asyncio.sleep(self.heartbeat_s)
            now = time.monotonic()
            for worker in list(self.workers):
                if not worker.alive:
                    continue
                if now - worker.last_seen > self.hang_timeout_s:
                    _log.error(
                        "worker %s (pid %s) sent nothing for %.0f s: killing it as hung",
                        worker.name,
                        worker.pid,
                        now - worker.last_seen,
                    )
                    if self._take_idle(worker):
                        self._spawn(self._replace(worker))  # nobody was using it
                    else:
                        worker.kill()  # its request sees the pipe end and releases it as dead
                else:
                    worker.ping()

    def _take_idle(self, worker: WorkerHandle) -> bool:
        """Remove ``worker`` from the idle queue; whether it was there."""
        others = []
        found = False
        while not self._idle.empty():
            w = self._idle.get_nowait()
            if w is worker:
                found = True
            else:
                others.append(w)
        for w in others:
            self._idle.put_nowait(w)
        return found

    def _job_done(self, done: m.Done) -> None:
        if self.on_done is not None:
            self.on_done(self.name, done)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def check_admission(self) -> None:
        """Raise ``at_capacity`` now if a job submitted now would be refused: lets a route refuse
        before it spends time on the request (planning text, decoding an upload). A pool not started
        yet refuses nothing: its start gives it idle workers (with ``max_queued_requests`` 0 a lazy
        engine's first request was refused)."""
        if self.workers and self.waiting >= self.max_queued and self._idle.empty():
            raise Unavailable(f"the {self.name} engine is at capacity; retry shortly")

    async def _acquire(self) -> WorkerHandle:
        await self.start()
        if self._idle.empty():
            self._grow()  # a request has to wait: the other workers start now
        self.check_admission()
        self.waiting += 1
        try:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for can swallow a result that arrives
            # as the waiter is cancelled (a barge-in), and that would lose the worker for good.
            async with asyncio.timeout(self.queue_timeout_s):
                worker = await self._idle.get()
        except TimeoutError:
            raise Unavailable(
                f"no {self.name} worker became free within {self.queue_timeout_s:g} s"
            ) from None
        finally:
            self.waiting -= 1
        self.busy += 1
        self.ledger.busy += 1
        return worker

    def _lone(self, worker: WorkerHandle) -> tuple[WorkerHandle, bool]:
        """The worker to run the job about to start on ``worker``, and whether it runs it on every
        core: when the job is the only work of the server (no other worker busy in any pool, no
        request waiting), the worker with the engine's lone-request copy (``EngineSpec.lone_threads``)
        is swapped in for ``worker`` (every other worker is idle) and the job is marked lone."""
        lone = self.ledger.busy == 1 and self.waiting == 0
        if lone and not worker.spec.lone_threads:
            other = next((w for w in self.workers if w.spec.lone_threads and w.alive), None)
            if other is not None and self._take_idle(other):
                self._idle.put_nowait(worker)
                worker = other
        return worker, lone and worker.spec.lone_threads > 0

    def _forget(self, stream: ParallelSynthStream) -> None:
        with contextlib.suppress(ValueError):
            self._parallel.remove(stream)

    def _needing_help(self, stream: ParallelSynthStream) -> ParallelSynthStream | None:
        """The oldest live parallel synthesis with a fragment nobody claimed that ``stream``'s worker
        may render: one started before it (for a background ``stream``, any)."""
        for other in self._parallel:
            if other is stream:
                if stream._job.background:
                    continue
                return None
            if not other._job.background and not other.finished and other._next < len(other._job.fragments):
                return other
        return None

    def _observe(self, fragment: Fragment, seconds: float) -> None:
        """A fragment took ``seconds`` to render on one worker (a helper's or a lent render)."""
        chars = _chars(fragment)
        if chars < 8:
            return  # a pause or a word: mostly overhead
        rate = seconds / chars
        old = self._s_per_char
        self._s_per_char = rate if old is None else 0.7 * old + 0.3 * rate

    def _offer_idle(self) -> None:
        """A worker just went idle: lend it to the live parallel syntheses in progress that have
        spoken their first fragment (helpers start at the first claim: the first fragment may be
        running on every core), oldest first. Not to a background one, which takes idle workers only
        at its own claims: a live request that comes right after this one (the next turn of a
        conversation) finds the worker idle (a speech job offered every freed worker made
        back-to-back requests beside it wait for one: first audio p50 235 -> 333 ms)."""
        for stream in list(self._parallel):
            if self._idle.empty():
                return
            if not stream._job.background and stream._claim_msg is not None:
                stream._spread()

    def _lend_idle(self) -> WorkerHandle | None:
        """An idle worker to render a fragment of a request that already has one; None while any
        request waits for a worker (it comes first) or none is idle."""
        while self.waiting == 0 and not self._closing and not self._idle.empty():
            worker = self._idle.get_nowait()
            self.busy += 1
            self.ledger.busy += 1
            if worker.alive:
                return worker
            self._release(worker, dead=True)
        return None

    def _release(self, worker: WorkerHandle, *, dead: bool = False) -> None:
        self.busy -= 1
        self.ledger.busy -= 1
        self._grow()  # after the pool's first job, not during it: their start costs CPU
        if dead or not worker.alive:
            self._spawn(self._replace(worker))
        else:
            self._idle.put_nowait(worker)
            self._offer_idle()

    async def _replace(self, old: WorkerHandle) -> None:
        old.kill()
        if self._closing:
            return
        self.restarts += 1
        if self.on_restart is not None:
            self.on_restart(self.name)
        with contextlib.suppress(ValueError):
            self.workers.remove(old)
        await old.stop(timeout_s=1.0)
        new = self._handle(old.spec)  # the same kind of worker (a lone copy or not)
        for attempt in range(3):
            try:
                await new.start(self.start_timeout_s)
                break
            except VoxserveError as exc:
                _log.error("restart of %s failed (attempt %d): %s", new.name, attempt + 1, exc)
                new = self._handle(old.spec)
        else:
            return
        self.workers.append(new)
        self._idle.put_nowait(new)
        _log.info("replaced worker %s with %s (pid %s)", old.name, new.name, new.pid)

    async def _cancel_and_release(self, worker: WorkerHandle, job_id: int) -> None:
        """Cancel ``job_id`` and wait for the worker to confirm; kill it if it does not in time."""
        try:
            worker.cancel(job_id)
        except EngineFailure:
            self._release(worker, dead=True)
            return
        deadline = time.monotonic() + self.cancel_grace_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                msg = await asyncio.wait_for(worker.recv(), max(remaining, 0.001))
            except TimeoutError:
                _log.warning(
                    "worker %s ignored cancel for %.1f s: killing it", worker.name, self.cancel_grace_s
                )
                self._release(worker, dead=True)
                return
            if msg is DEAD:
                self._release(worker, dead=True)
                return
            if getattr(msg, "job_id", None) == job_id and isinstance(msg, m.Done | m.JobError | m.Result):
                if isinstance(msg, m.Done):
                    self._job_done(msg)
                self._release(worker)
                return

    async def call(self, method: str, *args: Any) -> Any:
        """Run a short engine method (``phonemize``, ``check_voice``) on a free worker."""
        worker = await self._acquire()
        job_id = next(_job_ids)
        try:
            worker.send(m.Call(job_id, method, args))
        except EngineFailure:
            self._release(worker, dead=True)
            raise
        while True:
            try:
                msg = await worker.recv()
            except asyncio.CancelledError:
                self._spawn(self._cancel_and_release(worker, job_id))
                raise
            if msg is DEAD:
                self._release(worker, dead=True)
                raise EngineFailure("the worker serving this request stopped", code="worker_crashed")
            if getattr(msg, "job_id", None) != job_id:
                continue
            self._release(worker)
            if isinstance(msg, m.JobError):
                raise msg.error
            return msg.value

    async def synth(self, request: m.SynthRequest) -> SynthStream:
        """Start ``request`` on a free worker and return its stream."""
        worker, lone = self._lone(await self._acquire())
        fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(m.SynthRequest)}
        fields["parallel"] = (
            request.parallel and self.size > 1 and request.phonemes is None and len(request.fragments) > 1
        )
        job = m.SynthJob(job_id=next(_job_ids), lone=lone, **fields)
        try:
            worker.send(job)
        except EngineFailure:
            self._release(worker, dead=True)
            raise
        if not job.parallel:
            return SynthStream(self, worker, job.job_id)
        # Helpers are lent from the primary's first claim on, once its first fragment is spoken: the
        # first audio needs no helper, and requests that arrive together each get a worker first.
        return ParallelSynthStream(self, worker, job)

    async def stream_call(self, method: str, *args: Any) -> ItemStream:
        """Start a streaming engine method (``transcribe``) on a free worker and return its values.

        When it is the only work of the server (no other worker busy in any pool, no request
        waiting), it goes to the worker with a lone-request copy of the model, which decodes on every
        core (``StreamCall.lone``)."""
        worker, lone = self._lone(await self._acquire())
        job_id = next(_job_ids)
        try:
            worker.send(m.StreamCall(job_id, method, args, lone=lone))
        except EngineFailure:
            self._release(worker, dead=True)
            raise
        return ItemStream(self, worker, job_id)

    def stats(self) -> dict[str, Any]:
        return {
            "workers": len(self.workers),
            "alive": sum(w.alive for w in self.workers),
            "busy": self.busy,
            "queued": self.waiting,
            "restarts": self.restarts,
            "pids": [w.pid for w in self.workers],
        }


async def collect(stream: AsyncIterator[m.Chunk]) -> bytes:
    """All the audio of a stream (for buffered responses and the CLI)."""
    parts = [chunk.data async for chunk in stream]
    return b"".join(parts)
