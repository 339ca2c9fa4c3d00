"""What one Ray Serve replica of an engine runs.

A replica is a local worker without the process boundary: :func:`voxserve.runtime.worker.worker_main`
runs unchanged on a thread of the replica's actor process and talks to the replica's async side through
a :class:`ThreadPipe`, which has the three methods of a ``multiprocessing`` connection that the worker
uses (``send``, ``recv``, ``poll``). The engine is built, warmed up, and serves synthesis (resampled and
encoded in the replica), calls and transcription exactly as in a worker process.

:meth:`EngineReplica.run` is a streaming Serve method: it hands one job message (``SynthJob``,
``StreamCall`` or ``Call``) to the worker thread and yields every message of that job up to its terminal
one (``Done``, ``Result`` or ``JobError``). When the caller cancels the request (a client went away),
Serve cancels the method; the replica then sends the worker a ``Cancel``, which the worker checks
between audio pieces, and waits for the confirmation before it takes another job. A worker that does
not confirm within the grace period makes the replica unhealthy (:meth:`EngineReplica.check_health`),
and Serve replaces it: the counterpart of killing a worker process that ignores a cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

from voxserve.engines.base import EngineSpec, VoiceInfo
from voxserve.runtime import messages as m
from voxserve.runtime.worker import worker_main

__all__ = ["EngineReplica", "ThreadPipe", "pin_replica_server_to_loopback"]

_log = logging.getLogger("voxserve.ray.replica")

_CLOSED = object()
"""Put in an end's inbox when the other end is closed."""

_NOTHING = object()
"""What :meth:`PipeEnd.get` returns when nothing arrived in time."""

OUTBOX_MESSAGES = 8
"""Messages the worker thread may send ahead of the replica's reader; then its ``send`` blocks, as a
worker blocks on a full pipe (memory stays bounded when the caller reads slowly)."""


class PipeEnd:
    """One end of a :class:`ThreadPipe`: the connection methods :class:`voxserve.runtime.worker.Serve`
    uses, over two thread-safe queues."""

    def __init__(self, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self.closed = False

    def send(self, msg: Any) -> None:
        if self.closed:
            raise OSError("the pipe is closed")
        self._outbox.put(msg)

    def recv(self) -> Any:
        """The next message; ``EOFError`` once the other end is closed."""
        msg = self._inbox.get()
        if msg is _CLOSED:
            self._inbox.put(_CLOSED)  # every later recv sees the end too
            raise EOFError
        return msg

    def get(self, timeout_s: float) -> Any:
        """The next message, :data:`_NOTHING` after ``timeout_s``, or :data:`_CLOSED`."""
        try:
            msg = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return _NOTHING
        if msg is _CLOSED:
            self._inbox.put(_CLOSED)
        return msg

    def poll(self, timeout: float = 0.0) -> bool:
        """Whether a message (or the end of the pipe) is waiting."""
        return not self._inbox.empty()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._outbox.put(_CLOSED)


class ThreadPipe:
    """A duplex in-process pipe between a replica (``parent``) and its worker thread (``child``)."""

    def __init__(self) -> None:
        to_child: queue.Queue[Any] = queue.Queue()
        to_parent: queue.Queue[Any] = queue.Queue(maxsize=OUTBOX_MESSAGES)
        self.parent = PipeEnd(to_parent, to_child)
        self.child = PipeEnd(to_child, to_parent)


class EngineReplica:
    """A Serve deployment class: one engine, one job at a time (:meth:`run` holds a lock; a second
    request Serve hands it waits there, see ``voxserve.runtime.ray.apps``).

    The constructor blocks until the engine is built and warm (the worker's ready handshake), so Serve
    only routes requests to a replica that answers as fast as a warm local worker."""

    def __init__(self, spec: EngineSpec, start_timeout_s: float = 120.0, cancel_grace_s: float = 1.0) -> None:
        pin_replica_server_to_loopback()
        self.spec = spec
        self.cancel_grace_s = cancel_grace_s
        self._pipe = ThreadPipe()
        self._interrupts = ThreadPipe()  # a cancel stops an inference in progress, as in a local worker
        self._thread = threading.Thread(
            target=worker_main,
            args=(spec, self._pipe.child, self._interrupts.child),
            name=f"voxserve-{spec.engine}",
            daemon=True,
        )
        self._thread.start()
        hello = self._pipe.parent.get(start_timeout_s)
        if not isinstance(hello, m.Ready):
            self._pipe.parent.close()
            detail = hello.message if isinstance(hello, m.StartFailed) else "no ready handshake in time"
            raise RuntimeError(f"{spec.engine} replica failed to start: {detail}")
        self.voices: list[VoiceInfo] = hello.voices
        self.broken: str | None = None
        """Why this replica should be replaced (its worker thread stopped, or ignored a cancel)."""
        self._lock: asyncio.Lock | None = None
        self._pending: asyncio.Future[Any] | None = None

    def describe(self) -> dict[str, Any]:
        """The replica's process id and the engine's voices (the ready handshake of a local worker)."""
        return {"pid": os.getpid(), "voices": self.voices}

    def check_health(self) -> None:
        """Serve's health check: an exception makes Serve replace this replica."""
        if self.broken is None and not self._thread.is_alive():
            self.broken = "the engine thread stopped"
        if self.broken is not None:
            raise RuntimeError(f"{self.spec.engine} replica is unusable: {self.broken}")

    async def _recv(self) -> Any:
        """The worker's next message (or :data:`_CLOSED`). A read interrupted by a cancellation is
        kept and finished by the next call, so no message is lost."""
        while True:
            if self._pending is None:
                self._pending = asyncio.ensure_future(asyncio.to_thread(self._pipe.parent.get, 0.5))
            msg = await asyncio.shield(self._pending)
            self._pending = None
            if msg is not _NOTHING:
                return msg

    async def run(self, job: Any) -> AsyncIterator[Any]:
        """Run one job message on the engine and yield its messages, the terminal one last."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self.check_health()
            self._pipe.parent.send(job)
            job_id = job.job_id
            finished = False
            try:
                while True:
                    msg = await self._recv()
                    if msg is _CLOSED:
                        self.broken = "the engine thread stopped"
                        raise RuntimeError(self.broken)
                    if getattr(msg, "job_id", None) != job_id:
                        continue  # a late message of a job that was cancelled
                    if isinstance(msg, m.Claim):  # parallel fragments are a local-pool feature
                        self._pipe.parent.send(m.Assign(job_id, -1))
                        continue
                    finished = isinstance(msg, m.Done | m.Result | m.JobError)
                    yield msg
                    if finished:
                        return
            finally:
                if not finished and self.broken is None:
                    await self._abandon(job_id)

    async def _abandon(self, job_id: int) -> None:
        """Cancel ``job_id`` on the worker and wait for its confirmation (bounded)."""
        self._pipe.parent.send(m.Cancel(job_id))
        with contextlib.suppress(OSError):
            self._interrupts.parent.send(job_id)
        try:
            async with asyncio.timeout(self.cancel_grace_s):
                while True:
                    msg = await self._recv()
                    if msg is _CLOSED:
                        self.broken = "the engine thread stopped"
                        return
                    if getattr(msg, "job_id", None) == job_id and isinstance(
                        msg, m.Done | m.Result | m.JobError
                    ):
                        return
        except TimeoutError:
            self.broken = f"the engine ignored a cancel for {self.cancel_grace_s:g} s"
            _log.error("%s replica: %s", self.spec.engine, self.broken)

    def __del__(self) -> None:
        # Serve calls this on a graceful shutdown: the worker thread sees the pipe end and returns.
        for name in ("_pipe", "_interrupts"):
            pipe = getattr(self, name, None)
            if pipe is not None:
                pipe.parent.close()


def pin_replica_server_to_loopback() -> None:
    """On a node whose IP is 127.0.0.1, bind the replica's inter-deployment gRPC server there too.

    Ray Serve 2.60 starts that server (after the replica's constructor) on ``[::]``, every interface,
    whatever the node IP; everything else of a single-machine Ray listens on the node IP. Outside a Ray
    replica, or on a node with a routable IP, this does nothing."""
    if "ray" not in sys.modules:
        return  # not in a Ray worker process (a unit test)
    import ray
    from ray.serve._private import replica as serve_replica

    if not ray.is_initialized() or ray.util.get_node_ip_address() != "127.0.0.1":  # type: ignore[no-untyped-call]
        return
    original = getattr(serve_replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "voxserve_loopback", False):
        return

    def loopback(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.rpartition(":")[2]
        return original(server, address)

    loopback.voxserve_loopback = True  # type: ignore[attr-defined]
    setattr(serve_replica, "add_port_to_grpc_server", loopback)  # noqa: B010
