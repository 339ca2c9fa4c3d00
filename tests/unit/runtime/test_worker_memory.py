"""A worker gives its free heap back once it is idle after a job, never between back-to-back jobs
(runtime/worker.py), in this process over in-process pipes."""

from __future__ import annotations

import threading

import pytest
from tests.fakes import FakeEngine
from tests.timing import scaled, until

from voxserve.runtime import messages as m
from voxserve.runtime import worker
from voxserve.runtime.ray.replica import ThreadPipe
from voxserve.runtime.worker import Serve, release_free_memory


def test_release_free_memory_runs_here() -> None:
    release_free_memory()  # glibc's malloc_trim on Linux: must not raise


def test_an_idle_worker_trims_once_after_its_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[float] = []
    monkeypatch.setattr(worker, "release_free_memory", lambda: trims.append(0.0))
    monkeypatch.setattr(worker, "_TRIM_AFTER_IDLE_S", 0.2)
    pipe = ThreadPipe()
    s = Serve(FakeEngine(), pipe.child)  # type: ignore[arg-type]
    thread = threading.Thread(target=s.run, daemon=True)
    thread.start()
    try:
        pipe.parent.send(m.Ping(1))  # not a job: nothing to give back
        assert pipe.parent.get(scaled(10)) == m.Pong(1)
        for job_id in (1, 2, 3):  # back to back: the trim waits for the pause after them
            pipe.parent.send(m.Call(job_id, "voices", ()))
        for _ in range(3):
            assert isinstance(pipe.parent.get(scaled(10)), m.Result)
        until(lambda: trims, scaled(10), 0.05, message="a trim once idle")
        pipe.parent.send(m.Ping(2))
        assert pipe.parent.get(scaled(10)) == m.Pong(2)
        assert len(trims) == 1
    finally:
        pipe.parent.close()
        thread.join(scaled(10))
