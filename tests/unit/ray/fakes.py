"""A stand-in for Ray Serve around real :class:`EngineReplica` s in this process, for unit tests.

:class:`FakeHandle` has the slice of a ``DeploymentHandle`` that voxserve uses
(``handle.describe.remote()``, ``handle.options(stream=True).run.remote(job)``) and routes each call to a
free replica. As Serve does, a streaming call runs the replica's method in a task of its own, and
``cancel()`` cancels that task (the replica then stops the engine); the caller's iteration raises.
The e2e tests (tests/e2e/test_ray_e2e.py) run the same code on a real Ray cluster.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

from voxserve.config import Settings
from voxserve.engines.base import EngineSpec
from voxserve.runtime.ray.replica import EngineReplica


class RequestCancelled(Exception):
    """What iterating a cancelled call raises (Serve: ``RequestCancelledError``)."""


class ReplicaDied(Exception):
    """What iterating a call raises when its replica's process dies (Ray: ``ActorDiedError``)."""


class FakeCall:
    def __init__(self, replica: EngineReplica, job: Any, handle: FakeHandle) -> None:
        self.replica = replica
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._handle = handle
        self.task = asyncio.ensure_future(self._run(job))

    async def _run(self, job: Any) -> None:
        try:
            async for msg in self.replica.run(job):
                if self._handle.die_on is not None and self._handle.die_on(msg):
                    self._queue.put_nowait(("error", ReplicaDied("the actor died unexpectedly")))
                    return
                await self._queue.put(("msg", msg))
            self._queue.put_nowait(("end", None))
        except Exception as exc:
            self._queue.put_nowait(("error", exc))
        finally:
            self._handle.busy.discard(id(self.replica))

    def __aiter__(self) -> FakeCall:
        return self

    async def __anext__(self) -> Any:
        kind, value = await self._queue.get()
        if kind == "msg":
            return value
        if kind == "end":
            raise StopAsyncIteration
        raise value

    def cancel(self) -> None:
        self.task.cancel()
        self._queue.put_nowait(("error", RequestCancelled()))


class _Method:
    def __init__(self, handle: FakeHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any) -> Any:
        replica = self._handle.pick()
        if self._name == "describe":

            async def describe() -> Any:
                self._handle.busy.discard(id(replica))
                return replica.describe()

            return describe()
        call = FakeCall(replica, args[0], self._handle)
        self._handle.calls.append(call)
        return call


class FakeHandle:
    def __init__(self, replicas: list[EngineReplica]) -> None:
        self.replicas = replicas
        self.busy: set[int] = set()
        self.calls: list[FakeCall] = []
        self.die_on: Any = None
        """``die_on(msg) -> bool``: the replica "dies" instead of sending ``msg``."""

    def pick(self) -> EngineReplica:
        for replica in self.replicas:
            if id(replica) not in self.busy:
                self.busy.add(id(replica))
                return replica
        raise AssertionError("no free replica: the pool sent more jobs than it has slots")

    def options(self, *, stream: bool = False) -> FakeHandle:
        return self

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


class FakeCluster:
    """The part of :class:`voxserve.runtime.ray.cluster.RayCluster` a pool uses."""

    def __init__(self, settings: Settings, spec: EngineSpec, replicas: int) -> None:
        self.settings = settings
        self.available = True
        self.handle = FakeHandle([EngineReplica(spec, 30.0, 0.3) for _ in range(replicas)])
        self._listeners: list[Any] = []
        self.deployed: list[tuple[str, int]] = []

    def on_lost(self, listener: Any) -> None:
        self._listeners.append(listener)

    def lose(self) -> None:
        self.available = False
        for listener in self._listeners:
            listener()

    def app_name(self, pool_name: str) -> str:
        return f"{self.settings.ray_app_prefix}-{pool_name}"

    async def deploy(self, pool_name: str, spec: EngineSpec, replicas: int) -> FakeHandle:
        self.deployed.append((pool_name, replicas))
        return self.handle

    def close(self) -> None:
        for replica in self.handle.replicas:
            replica.__del__()


def restore_environment() -> Iterator[None]:
    """The worker code sets thread variables in its process (here: the test process): undo that."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
