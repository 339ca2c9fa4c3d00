"""EngineReplica (what a Ray Serve replica runs) in this process: the worker's own code on a thread."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tests.timing import scaled, until
from tests.unit.ray.fakes import restore_environment

from voxserve.engines.base import TranscribeOptions
from voxserve.errors import EngineFailure, UnknownVoice
from voxserve.runtime import messages as m
from voxserve.runtime.ray.replica import EngineReplica, ThreadPipe

SPEC = m.EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.01, "steps": 3})
SLOW = m.EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 1.0, "steps": 2})

environment = pytest.fixture(autouse=True)(restore_environment)


@pytest.fixture
def replica() -> Iterator[EngineReplica]:
    r = EngineReplica(SPEC, scaled(30), 0.5)
    try:
        yield r
    finally:
        r.__del__()


def synth(job_id: int, *fragments: str, voice: str = "a") -> m.SynthJob:
    return m.SynthJob(
        voice=voice, speed=1.0, fmt="pcm", sample_rate=16000, fragments=fragments, job_id=job_id
    )


async def messages(replica: EngineReplica, job: Any) -> list[Any]:
    return [msg async for msg in replica.run(job)]


def test_pipe_ends() -> None:
    pipe = ThreadPipe()
    assert not pipe.child.poll()
    pipe.parent.send("hello")
    assert pipe.child.poll()
    assert pipe.child.recv() == "hello"
    pipe.parent.close()
    pipe.parent.close()  # twice is harmless
    with pytest.raises(EOFError):
        pipe.child.recv()
    with pytest.raises(EOFError):  # and it stays closed
        pipe.child.recv()
    with pytest.raises(OSError, match="closed"):
        pipe.parent.send("late")


def test_describe_is_the_ready_handshake(replica: EngineReplica) -> None:
    info = replica.describe()
    assert info["pid"] == os.getpid()
    assert [v.id for v in info["voices"]] == ["fake/a"]
    replica.check_health()


def test_a_failed_start_raises() -> None:
    broken = m.EngineSpec(engine="fake", factory="tests.fakes:NoSuchEngine")
    with pytest.raises(RuntimeError, match="fake replica failed to start"):
        EngineReplica(broken, scaled(30), 0.5)


async def test_synthesis_streams_chunks_then_done(replica: EngineReplica) -> None:
    out = await messages(replica, synth(7, "one two", "three"))
    chunks = [msg for msg in out if isinstance(msg, m.Chunk)]
    assert isinstance(out[-1], m.Done) and not out[-1].cancelled
    assert all(msg.job_id == 7 for msg in out)
    # 0.05 s per word at 16 kHz as s16: 3 words -> 2400 samples.
    assert sum(len(c.data) for c in chunks) == 2 * 2400
    assert [c.text for c in chunks if c.fragment >= 0] == ["one two", "three"]


async def test_errors_arrive_as_job_errors(replica: EngineReplica) -> None:
    (error,) = await messages(replica, synth(1, "hello", voice="nope"))
    assert isinstance(error, m.JobError) and isinstance(error.error, UnknownVoice)
    (failed,) = await messages(replica, synth(2, "FAIL"))
    assert isinstance(failed, m.JobError) and isinstance(failed.error, EngineFailure)
    (result,) = await messages(replica, m.Call(3, "phonemize", ("Hi", "a")))
    assert isinstance(result, m.Result) and result.value.phonemes == "hi"
    replica.check_health()


async def test_transcription_streams_items(replica: EngineReplica) -> None:
    audio = np.zeros(16000, np.float32)
    out = await messages(replica, m.StreamCall(4, "transcribe", (audio, TranscribeOptions())))
    values = [msg.value for msg in out if isinstance(msg, m.Item)]
    assert values[0].duration_s == 1.0
    assert [s.text for s in values[1:]] == [" word0", " word1"]
    assert isinstance(out[-1], m.Done)


async def test_a_cancelled_call_stops_the_engine_before_the_next_job(replica: EngineReplica) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for msg in replica.run(synth(5, *(["many words here"] * 50))):
            if isinstance(msg, m.Chunk):
                first.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(first.wait(), scaled(10))
    task.cancel()  # what Serve does when the caller cancels the request
    with pytest.raises(asyncio.CancelledError):
        await task
    # The worker confirmed the cancel: the next job sees only its own messages, from the start.
    out = await messages(replica, synth(6, "next"))
    assert {msg.job_id for msg in out} == {6}
    assert isinstance(out[-1], m.Done) and not out[-1].cancelled
    replica.check_health()


async def test_a_closed_consumer_cancels_the_job(replica: EngineReplica) -> None:
    run = replica.run(synth(8, *(["some words"] * 50)))
    assert isinstance(await anext(run), m.Chunk)
    await run.aclose()  # the generator is closed at its yield
    out = await messages(replica, synth(9, "again"))
    assert isinstance(out[-1], m.Done) and out[-1].job_id == 9


async def test_a_cancel_stops_an_inference_in_progress(replica: EngineReplica) -> None:
    # The fake's 30 s "inference" outlasts the 0.5 s cancel grace unless the interrupt stops it.
    run = replica.run(synth(11, "INFER"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(run), 0.2)
    await run.aclose()
    assert replica.broken is None
    out = await messages(replica, synth(12, "after"))
    assert isinstance(out[-1], m.Done) and out[-1].job_id == 12 and not out[-1].cancelled
    replica.check_health()


async def test_an_engine_that_ignores_a_cancel_makes_the_replica_unhealthy() -> None:
    slow = EngineReplica(SLOW, scaled(30), 0.05)
    try:
        run = slow.run(synth(1, "one two three four"))
        assert isinstance(await anext(run), m.Chunk)
        await run.aclose()  # the engine is inside a 1 s piece: no confirmation within 0.05 s
        assert slow.broken is not None
        with pytest.raises(RuntimeError, match="ignored a cancel"):
            slow.check_health()
    finally:
        slow.__del__()


async def test_a_stopped_engine_thread_is_unhealthy(replica: EngineReplica) -> None:
    replica.__del__()  # the pipe closes: the worker's loop returns
    until(lambda: not replica._thread.is_alive(), 10, message="worker thread ends")
    with pytest.raises(RuntimeError, match="engine thread stopped"):
        replica.check_health()
