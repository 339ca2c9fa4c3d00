"""A job marked lone at dispatch asks again right before its inference (runtime/worker.py
``Serve.alone``): if another worker of the server became busy since, it keeps to its one thread.
In this process over in-process pipes, with the server's shared busy count."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tests.fakes import FakeEngine
from tests.timing import scaled

from voxserve.engines.base import TranscribeOptions
from voxserve.runtime import messages as m
from voxserve.runtime.ray.replica import ThreadPipe
from voxserve.runtime.worker import Serve


@pytest.fixture
def served() -> Iterator[tuple[ThreadPipe, Any]]:
    busy = multiprocessing.get_context("spawn").RawValue("i", 0)
    pipe = ThreadPipe()
    s = Serve(FakeEngine(), pipe.child, busy=busy)  # type: ignore[arg-type]
    thread = threading.Thread(target=s.run, daemon=True)
    thread.start()
    try:
        yield pipe, busy
    finally:
        pipe.parent.close()
        thread.join(scaled(10))


def _spoken(pipe: ThreadPipe, job_id: int, *texts: str) -> list[str]:
    job = m.SynthJob(
        voice="a", speed=1.0, fmt="pcm", sample_rate=16000, fragments=texts, job_id=job_id, lone=True
    )
    pipe.parent.send(job)
    words: list[str] = []
    for _ in range(1000):
        msg = pipe.parent.get(scaled(10))
        assert isinstance(msg, m.Chunk | m.Done), msg
        if isinstance(msg, m.Done):
            return list(dict.fromkeys(words))  # each fragment's pieces carry its text
        words.extend(w.word for w in msg.words)
    raise AssertionError("no Done")


def _language(pipe: ThreadPipe, job_id: int) -> str:
    pipe.parent.send(
        m.StreamCall(job_id, "transcribe", (np.zeros(8000, np.float32), TranscribeOptions()), lone=True)
    )
    info = pipe.parent.get(scaled(10))
    assert isinstance(info, m.Item), info
    while not isinstance(pipe.parent.get(scaled(10)), m.Done):
        pass
    return str(info.value.language)


def test_a_lone_job_still_alone_at_its_inference_uses_every_core(served: tuple[ThreadPipe, Any]) -> None:
    pipe, busy = served
    busy.value = 1  # its own worker
    assert _spoken(pipe, 1, "one two", "three") == ["one two@lone", "three@lone"]
    assert _language(pipe, 2).startswith("lone:")


def test_a_lone_job_that_another_job_joined_keeps_to_its_thread(served: tuple[ThreadPipe, Any]) -> None:
    pipe, busy = served
    busy.value = 2  # another request started after this one was dispatched
    assert _spoken(pipe, 1, "one two", "three") == ["one two", "three"]
    assert _language(pipe, 2) == "en"
    busy.value = 1
    assert _spoken(pipe, 3, "four") == ["four@lone"]
