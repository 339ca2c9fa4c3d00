"""Transcriber.wait_decodes: back-pressure for a client that sends audio faster than the decodes go,
and the wait for the decodes still in flight after finish()."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from tests.audio_helpers import sine16k as tone
from tests.fakes import EnergyVad

from voxserve.engines.base import TranscribeOptions
from voxserve.errors import Unavailable
from voxserve.runtime.messages import EngineSpec
from voxserve.runtime.pool import EnginePool
from voxserve.stt.session import Final, SessionConfig
from voxserve.stt.transcriber import Transcriber

# A decode takes 0.1 s per 0.5 s of audio: far slower than the test can feed.
SLOW = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.1, "steps": 2})


@pytest.fixture
async def slow_pool() -> AsyncIterator[EnginePool]:
    p = EnginePool(SLOW, 1, start_timeout_s=60, queue_timeout_s=30)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def test_a_backlog_waits_for_the_decodes_and_loses_nothing(slow_pool: EnginePool) -> None:
    finals: list[Final] = []

    async def emit(event: Any) -> None:
        if isinstance(event, Final):
            finals.append(event)

    utterances = 6
    config = SessionConfig(
        max_buffer_s=2.5, max_utterance_s=2.0, cut_search_s=1.0, interim_results=False, partial_interval_ms=0
    )
    t = Transcriber(slow_pool, config, EnergyVad(), emit, options=TranscribeOptions())
    audio = np.concatenate([np.concatenate([tone(1.0), np.zeros(9600, np.float32)])] * utterances)
    backlogs = 0
    codes: list[str] = []
    for offset in range(0, audio.size, 1600):  # 100 ms chunks, as fast as the loop goes
        chunk = audio[offset : offset + 1600]
        for _ in range(100):  # bounded: each retry follows a decode that ended
            try:
                await t.feed(chunk)
                break
            except Unavailable as exc:
                codes.append(exc.code)
                backlogs += 1
                assert t.decoding
                assert await t.wait_decodes(30, one=True)
        else:
            raise AssertionError("the backlog never cleared")
    await t.finish(timeout_s=30)
    assert await t.wait_decodes(30) and not t.decoding
    await t.close()
    assert backlogs >= 1  # the session did fall behind: the path above ran
    assert set(codes) == {"transcription_backlog"}
    assert len(finals) == utterances and all(f.text.strip() for f in finals)
    assert t.samples_in == audio.size  # every sample fed exactly once


async def test_wait_decodes_without_decodes_returns_at_once(slow_pool: EnginePool) -> None:
    async def emit(event: Any) -> None:
        return None

    t = Transcriber(slow_pool, SessionConfig(), EnergyVad(), emit, options=TranscribeOptions())
    assert not t.decoding
    assert await t.wait_decodes(0) and await t.wait_decodes(0, one=True)
    await t.close()
