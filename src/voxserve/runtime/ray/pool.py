"""The pool the routes see with ``--backend ray``: an :class:`EnginePool` whose workers are replicas.

:class:`RayPool` keeps everything of the local pool that the routes rely on (admission with
``queue_timeout_s`` and ``max_queued_requests``, :class:`~voxserve.runtime.pool.SynthStream` and
:class:`~voxserve.runtime.pool.ItemStream`, ``worker_crashed`` when the engine dies mid-request,
``stats``, readiness) and swaps the worker process for a :class:`RaySlot`: one place on one replica
(each replica runs one job at a time, so a pool has ``replicas`` slots). A slot turns the worker
protocol into Serve calls:

- a job message (``SynthJob``, ``StreamCall``, ``Call``) becomes one streaming call of
  :meth:`voxserve.runtime.ray.replica.EngineReplica.run`; its messages fill the slot's inbox, whose
  bound throttles the stream as a pipe does;
- ``Cancel`` cancels that call (Serve cancels the replica's method, which stops the engine and waits
  for it) and confirms with ``Done(cancelled=True)``;
- a call that fails (the replica's process or node died), sends nothing for ``worker_hang_timeout_s``,
  or is cut by the loss of the whole cluster ends the slot as a dead worker ends: the request gets
  ``worker_crashed`` and the pool puts a fresh slot in its place. Ray replaces the replica itself.

Parallel fragments (idle workers rendering ahead into a local scratch folder) are a local-pool
feature: a Ray pool speaks each request on one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

from voxserve.errors import EngineFailure, Unavailable
from voxserve.runtime import messages as m
from voxserve.runtime.handle import DEAD, WorkerHandle
from voxserve.runtime.pool import SynthStream
from voxserve.runtime.ray.cluster import RayCluster
from voxserve.runtime.registry import TimedPool

__all__ = ["RayPool", "RaySlot"]

_log = logging.getLogger("voxserve.ray")

_JOBS = m.SynthJob | m.StreamCall | m.Call
_TERMINAL = m.Done | m.Result | m.JobError


class RaySlot(WorkerHandle):
    """One job at a time on the pool's deployment, seen as a :class:`WorkerHandle`."""

    def __init__(self, pool: RayPool, index: int) -> None:
        super().__init__(pool.spec, index)
        self.pool = pool
        self.name = f"{pool.name}-slot{index}"
        self.voices = pool.voices
        self.alive = True
        self.job_id: int | None = None
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False
        self._sent_at = 0.0

    async def start(self, timeout_s: float) -> None:
        """A slot needs no start of its own: the deployment is running when the pool makes one."""
        self.alive = True

    def ping(self) -> None:
        self.last_seen = time.monotonic()

    def send(self, msg: Any) -> None:
        if not self.alive:
            raise EngineFailure("the worker is not running", code="worker_unavailable")
        if isinstance(msg, _JOBS):
            self._begin(msg)
        elif isinstance(msg, m.Cancel) and msg.job_id == self.job_id:
            self._cancel()
        # Ping, Shutdown, Assign and Delivered have nothing to do on a replica.

    def _begin(self, job: Any) -> None:
        handle = self.pool.handle
        assert handle is not None
        self.job_id = job.job_id
        self._cancelled = False
        self._sent_at = time.perf_counter()
        self._call = handle.options(stream=True).run.remote(job)
        self._task = asyncio.ensure_future(self._relay(self._call, job.job_id))

    async def _relay(self, call: Any, job_id: int) -> None:
        """Move the call's messages to the inbox until its terminal one."""
        hang_s = self.pool.hang_timeout_s
        first: float | None = None
        try:
            iterator = call.__aiter__()
            while True:
                try:
                    async with asyncio.timeout(hang_s):
                        msg = await iterator.__anext__()
                except StopAsyncIteration:
                    raise EngineFailure("the replica's stream ended early") from None
                except TimeoutError:
                    _log.error(
                        "%s: the replica sent nothing for %.0f s: treating it as hung", self.name, hang_s
                    )
                    with contextlib.suppress(Exception):
                        call.cancel()
                    raise EngineFailure("hung replica") from None
                self.last_seen = time.monotonic()
                if first is None:
                    first = time.perf_counter() - self._sent_at
                await self._inbox.put(msg)
                if isinstance(msg, _TERMINAL):
                    if _log.isEnabledFor(logging.DEBUG):
                        _log.debug(
                            "%s: job %d: first message after %.1f ms, the last after %.1f ms",
                            self.name,
                            job_id,
                            first * 1000,
                            (time.perf_counter() - self._sent_at) * 1000,
                        )
                    return
        except asyncio.CancelledError:
            if self._task is not None and self._task.cancelling():
                raise  # kill() or stop(): the slot is going away
            self._ended(job_id)
        except Exception as exc:
            if self._cancelled:
                self._ended(job_id)
                return
            _log.error("%s: job %d failed on Ray: %s", self.name, job_id, _brief(exc))
            self._die()
        finally:
            if self.job_id == job_id:
                self.job_id = None
                self._call = None

    def _ended(self, job_id: int) -> None:
        """Confirm a cancel, as a worker does."""
        if self._cancelled:
            self._put(m.Done(job_id, 0.0, 0.0, cancelled=True))
        else:
            self._die()

    def _cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()

    def _put(self, msg: Any) -> None:
        """Put ``msg`` in the inbox without blocking (dropping stale audio to make room)."""
        while self._inbox.full():
            self._inbox.get_nowait()
        self._inbox.put_nowait(msg)

    def _die(self) -> None:
        self.alive = False
        self._put(DEAD)

    def fail(self) -> None:
        """End the job in flight as if the replica died (the cluster is gone)."""
        if self.job_id is not None and self.alive:
            with contextlib.suppress(Exception):
                if self._call is not None:
                    self._call.cancel()
            if self._task is not None:
                self._task.cancel()
            self._die()

    def kill(self) -> None:
        self.alive = False
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def stop(self, timeout_s: float = 3.0) -> None:
        self.kill()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout_s)


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


class RayPool(TimedPool):
    """An engine pool served by a Ray Serve deployment (one slot per replica)."""

    def __init__(self, cluster: RayCluster, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        settings = cluster.settings
        autoscaling = settings.ray_autoscaling.get(self.name)
        if autoscaling:
            self.size = int(autoscaling.get("max_replicas", self.size))
        else:
            self.size = settings.ray_replicas.get(self.name, self.size)
        self._idle = asyncio.Queue(maxsize=self.size)
        # Every slot from the start: Ray Serve starts and scales the replicas (ray_autoscaling).
        self.initial, self._grown = self.size, True
        self.handle: Any = None
        self.replica_pids: list[int] = []
        cluster.on_lost(self._on_cluster_lost)

    @property
    def ready(self) -> bool:
        return super().ready and self.cluster.available

    @property
    def state(self) -> str:
        if self.workers and not self.cluster.available:
            return "unavailable"
        return super().state

    async def _start_all(self) -> None:
        self.handle = await self.cluster.deploy(self.name, self.spec, self.size)
        try:
            info = await asyncio.wait_for(self.handle.describe.remote(), self.start_timeout_s)
        except Exception as exc:
            raise EngineFailure(
                f"the {self.name} replicas did not answer: {_brief(exc)}", code="engine_start_failed"
            ) from None
        self.voices = info["voices"]
        self.replica_pids = [info["pid"]]
        for _ in range(self.size):
            slot = RaySlot(self, next(self._counter))
            self.workers.append(slot)
            self._idle.put_nowait(slot)
        _log.info(
            "%s: Ray deployment %s ready, %d slot(s)", self.name, self.cluster.app_name(self.name), self.size
        )

    def check_admission(self) -> None:
        if self.workers and not self.cluster.available:
            raise Unavailable(
                f"the Ray cluster serving the {self.name} engine is unreachable; retry later",
                code="cluster_unavailable",
            )
        super().check_admission()

    async def synth(self, request: m.SynthRequest) -> SynthStream:
        return await super().synth(dataclasses.replace(request, parallel=False))

    async def _replace(self, old: WorkerHandle) -> None:
        """A slot whose call failed gives way to a fresh one (Ray replaces the replica behind it)."""
        old.kill()
        if self._closing:
            return
        self.restarts += 1
        if self.on_restart is not None:
            self.on_restart(self.name)
        with contextlib.suppress(ValueError):
            self.workers.remove(old)
        new = RaySlot(self, next(self._counter))
        self.workers.append(new)
        self._idle.put_nowait(new)

    def _on_cluster_lost(self) -> None:
        for slot in list(self.workers):
            if isinstance(slot, RaySlot):
                slot.fail()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["backend"] = "ray"
        out["deployment"] = self.cluster.app_name(self.name)
        out["cluster"] = "available" if self.cluster.available else "unavailable"
        out["pids"] = self.replica_pids
        return out
