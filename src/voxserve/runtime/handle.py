"""One worker process, seen from the event loop: :class:`WorkerHandle` owns the spawned process and
its pipe, with the ready handshake, heartbeats, and stop-then-kill.

A pump task reads the pipe through the bridge (:func:`voxserve.runtime.bridge.iterate_in_thread`)
into a small bounded inbox, so a slow client slows its worker instead of filling memory; when the
process is gone the inbox gets :data:`DEAD`. Leasing handles to requests is
:class:`voxserve.runtime.pool.EnginePool`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from voxserve.engines.base import VoiceInfo
from voxserve.errors import EngineFailure
from voxserve.runtime import messages as m
from voxserve.runtime.bridge import iterate_in_thread
from voxserve.runtime.worker import worker_main

__all__ = ["DEAD", "WorkerHandle"]

DEAD = object()
"""Put in a handle's inbox when its process is gone."""


class WorkerHandle:
    """One worker process, seen from the event loop."""

    def __init__(self, spec: m.EngineSpec, index: int, *, busy: Any = None) -> None:
        self.spec = spec
        self.busy = busy
        """The server's shared busy-worker count (:class:`~voxserve.runtime.pool.BusyLedger`), for
        the worker's lone checks; None: a job marked lone runs lone."""
        self.name = f"{spec.engine}-{index}"
        self.process: Any = None
        self.pid: int | None = None
        self.voices: list[VoiceInfo] = []
        self.alive = False
        self._conn: Connection | None = None
        self._interrupts: Connection | None = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
        self._pump: asyncio.Task[None] | None = None
        self.last_seen = time.monotonic()
        """When the worker last sent anything (a heartbeat answer included)."""
        self._nonces = itertools.count()

    async def start(self, timeout_s: float) -> None:
        """Spawn the process and wait for its ready handshake."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        interrupts_in, interrupts_out = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=worker_main,
            args=(self.spec, child, interrupts_in, self.busy),
            name=f"voxserve-{self.name}",
            daemon=True,
        )
        # Spawning imports the interpreter: keep it off the loop.
        await asyncio.to_thread(self.process.start)
        child.close()
        interrupts_in.close()
        self._conn = parent
        self._interrupts = interrupts_out
        self._pump = asyncio.create_task(self._pump_messages(), name=f"pump-{self.name}")
        try:
            msg = await asyncio.wait_for(self._inbox.get(), timeout_s)
        except TimeoutError:
            self.kill()
            raise EngineFailure(
                f"{self.spec.engine} worker did not become ready in {timeout_s:g} s"
            ) from None
        if isinstance(msg, m.Ready):
            self.pid, self.voices, self.alive = msg.pid, msg.voices, True
            return
        self.kill()
        detail = msg.message if isinstance(msg, m.StartFailed) else "the worker exited during start-up"
        raise EngineFailure(detail, code="engine_start_failed")

    def _recv_forever(self) -> Iterator[Any]:
        conn = self._conn
        assert conn is not None
        while True:
            try:
                yield conn.recv()
            except (EOFError, OSError):
                return

    async def _pump_messages(self) -> None:
        try:
            async for msg in iterate_in_thread(self._recv_forever, maxsize=4, name=f"recv-{self.name}"):
                self.last_seen = time.monotonic()
                if isinstance(msg, m.Pong):
                    continue  # a heartbeat answer: it only proves the worker is alive
                await self._inbox.put(msg)
        finally:
            self.alive = False
            # Never block here: the consumer may be gone; drop stale audio to make room.
            while self._inbox.full():
                self._inbox.get_nowait()
            self._inbox.put_nowait(DEAD)

    def send(self, msg: Any) -> None:
        """Send a small control message (never audio: those flow the other way)."""
        if self._conn is None or not self.alive:
            raise EngineFailure("the worker is not running", code="worker_unavailable")
        try:
            self._conn.send(msg)
        except (OSError, ValueError):
            raise EngineFailure("the worker is not running", code="worker_unavailable") from None

    def cancel(self, job_id: int) -> None:
        """Cancel ``job_id``: a :class:`~voxserve.runtime.messages.Cancel` on the pipe, which the worker
        reads between audio pieces, and its id on the interrupt pipe, which stops an inference in
        progress (see :mod:`voxserve.runtime.worker`). Raises ``worker_unavailable`` like :meth:`send`."""
        self.send(m.Cancel(job_id))
        if self._interrupts is not None:
            with contextlib.suppress(OSError, ValueError):
                self._interrupts.send(job_id)

    def ping(self) -> None:
        """Ask for a heartbeat answer (the worker answers between jobs and between audio pieces)."""
        with contextlib.suppress(EngineFailure):
            self.send(m.Ping(next(self._nonces)))

    async def recv(self) -> Any:
        """The next message from the worker, or ``DEAD``."""
        return await self._inbox.get()

    def kill(self) -> None:
        """Stop the process now (SIGKILL) and close the pipe."""
        self.alive = False
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        if self._conn is not None:
            self._conn.close()
        if self._interrupts is not None:
            self._interrupts.close()

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout_s``."""
        if self.alive:
            with contextlib.suppress(EngineFailure):
                self.send(m.Shutdown())
        if self.process is not None:
            await asyncio.to_thread(self.process.join, timeout_s)
        self.kill()
        if self.process is not None:
            await asyncio.to_thread(self.process.join, timeout_s)
        if self._pump is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._pump, timeout_s)
