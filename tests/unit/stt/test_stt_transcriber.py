"""The streaming-transcription driver with a real worker process and a fake engine."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from tests.audio_helpers import sine16k as tone
from tests.fakes import EnergyVad

from voxserve.audio.decode import PcmConverter
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import VoxserveError
from voxserve.runtime.messages import EngineSpec, SynthRequest
from voxserve.runtime.pool import EnginePool
from voxserve.stt.session import Final, Partial, SessionConfig
from voxserve.stt.transcriber import Transcriber

SPEC = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.01, "steps": 2})


@pytest.fixture
async def pool() -> AsyncIterator[EnginePool]:
    p = EnginePool(SPEC, 1, start_timeout_s=60, queue_timeout_s=5)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def run(pool: EnginePool, audio: list[np.ndarray], busy: bool = False) -> tuple[list[Any], Transcriber]:
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    t = Transcriber(pool, SessionConfig(), EnergyVad(), emit, options=TranscribeOptions())
    blocker = (
        await pool.synth(
            SynthRequest(voice="a", speed=1.0, fmt="pcm", sample_rate=16000, fragments=("a b c d",) * 20)
        )
        if busy
        else None
    )
    for chunk in audio:
        await t.feed(chunk)
    if blocker is not None:
        blocker.abort()
    await t.finish(timeout_s=20)
    await t.close()
    return events, t


async def test_partials_and_a_final(pool: EnginePool) -> None:
    chunks = [tone(0.1) for _ in range(20)] + [np.zeros(16000, np.float32)]
    events, t = await run(pool, chunks)
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and finals[0].text.startswith("word0")
    assert t.skipped_partials == 0


async def test_early_finals_are_counted_as_they_turn_out(pool: EnginePool) -> None:
    counted: list[tuple[str, int]] = []
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    config = SessionConfig(speculative_final=True)
    t = Transcriber(
        pool,
        config,
        EnergyVad(),
        emit,
        options=TranscribeOptions(),
        count_early_finals=lambda *c: counted.append(c),
    )
    pause = np.zeros(1600, np.float32)  # 0.1 s: too short to end the utterance
    for chunk in [tone(0.5), pause, tone(0.5), np.zeros(16000, np.float32)]:
        await t.feed(chunk)
    await t.finish(timeout_s=20)
    await t.close()
    assert len([e for e in events if isinstance(e, Final)]) == 1
    # The short pause's early final was dropped (speech went on); the last one became the Final.
    assert sorted(counted) == [("dropped", 1), ("used", 1)]


async def test_partials_are_skipped_not_queued_when_no_worker_is_free(pool: EnginePool) -> None:
    chunks = [tone(0.1) for _ in range(20)] + [np.zeros(16000, np.float32)]
    events, t = await run(pool, chunks, busy=True)
    assert t.skipped_partials >= 1
    assert not [e for e in events if isinstance(e, Partial)]
    assert len([e for e in events if isinstance(e, Final)]) == 1  # the final is never skipped


async def test_client_audio_is_decoded_off_the_event_loop(pool: EnginePool) -> None:
    # PCM decoding and resampling (a 256 KiB frame is seconds of audio) must not run on the loop.
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    t = Transcriber(pool, SessionConfig(), EnergyVad(), emit, options=TranscribeOptions())
    loop_thread = threading.get_ident()
    converter = PcmConverter("linear16", 48000)
    threads: list[int] = []

    def convert(data: bytes) -> np.ndarray:
        threads.append(threading.get_ident())
        return converter(data)

    pcm = (tone(1.0).repeat(3) * 32767).astype("<i2").tobytes()  # 1 s at 48 kHz
    fed = await t.feed_encoded(pcm, convert)
    await t.finish(timeout_s=20)
    await t.close()
    assert threads and loop_thread not in threads
    assert 15000 < fed <= 16000  # resampled to 16 kHz (the filter holds its last few ms back)
    assert t.samples_in == fed


async def test_bad_client_audio_raises_and_feeds_nothing(pool: EnginePool) -> None:
    async def emit(event: Any) -> None:
        raise AssertionError(f"no event expected, got {event!r}")

    t = Transcriber(pool, SessionConfig(), EnergyVad(), emit, options=TranscribeOptions())
    with pytest.raises(VoxserveError) as info:
        await t.feed_encoded(b"\x00\x01\x02", PcmConverter("linear16", 16000))  # half a sample
    assert info.value.code == "misaligned_pcm" and t.samples_in == 0
    await t.close()


async def test_partials_decode_greedily_without_words_and_finals_with_both(
    pool: EnginePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TranscribeOptions] = []
    real = pool.stream_call

    async def spy(method: str, *args: Any) -> Any:
        seen.append(args[1])
        return await real(method, *args)

    monkeypatch.setattr(pool, "stream_call", spy)
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    t = Transcriber(pool, SessionConfig(), EnergyVad(), emit, options=TranscribeOptions(word_timestamps=True))
    for chunk in [tone(0.1) for _ in range(20)] + [np.zeros(16000, np.float32)]:
        await t.feed(chunk)
    await t.finish(timeout_s=20)
    await t.close()
    assert any(isinstance(e, Partial) for e in events) and any(isinstance(e, Final) for e in events)
    kinds = {(o.word_timestamps, o.temperature_fallback) for o in seen}
    assert kinds == {(False, False), (True, True)}  # partials, finals
