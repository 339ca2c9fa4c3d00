"""The worker's interrupt reader (runtime/worker.py), in this process over in-process pipes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from tests.fakes import FakeEngine
from tests.timing import scaled, until

from voxserve.runtime import messages as m
from voxserve.runtime.ray.replica import ThreadPipe
from voxserve.runtime.worker import Serve


@pytest.fixture
def serve() -> Iterator[tuple[Serve, ThreadPipe, ThreadPipe]]:
    pipe, interrupts = ThreadPipe(), ThreadPipe()
    s = Serve(FakeEngine(), pipe.child, interrupts.child)  # type: ignore[arg-type]
    thread = threading.Thread(target=s.run, daemon=True)
    thread.start()
    try:
        yield s, pipe, interrupts
    finally:
        pipe.parent.close()
        interrupts.parent.close()
        thread.join(scaled(10))


def job(job_id: int, text: str) -> m.SynthJob:
    return m.SynthJob(voice="a", speed=1.0, fmt="pcm", sample_rate=16000, fragments=(text,), job_id=job_id)


def done(pipe: ThreadPipe, job_id: int) -> m.Done:
    """The job's Done (its chunks skipped); fails on an error, or on nothing within the timeout."""
    for _ in range(1000):
        msg = pipe.parent.get(scaled(10))
        assert isinstance(msg, m.Chunk | m.Done), f"job {job_id}: {msg!r}"
        if isinstance(msg, m.Done) and msg.job_id == job_id:
            return msg
    raise AssertionError(f"job {job_id}: no Done")


def test_an_interrupt_read_before_its_job_stops_the_job_as_it_starts(
    serve: tuple[Serve, ThreadPipe, ThreadPipe],
) -> None:
    # The interrupt pipe and the job pipe race: an interrupt that wins must not be lost, or the job's
    # 30 s "inference" runs on, deaf to the Cancel behind it (the parent then kills the worker).
    s, pipe, interrupts = serve
    interrupts.parent.send(7)
    until(lambda: 7 in s._early_interrupts, scaled(10), message="the reader took the interrupt")
    pipe.parent.send(job(7, "INFER"))
    assert done(pipe, 7).cancelled
    # Other jobs run to their end.
    pipe.parent.send(job(8, "after"))
    assert not done(pipe, 8).cancelled


def test_an_interrupt_for_another_job_does_not_stop_this_one(
    serve: tuple[Serve, ThreadPipe, ThreadPipe],
) -> None:
    s, pipe, interrupts = serve
    interrupts.parent.send(3)  # a job that already ended
    until(lambda: 3 in s._early_interrupts, scaled(10), message="the reader took the interrupt")
    pipe.parent.send(job(4, "one two three"))
    assert not done(pipe, 4).cancelled
