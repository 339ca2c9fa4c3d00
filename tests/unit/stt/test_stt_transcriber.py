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
from voxserve.config import Settings
from voxserve.engines.base import Segment, TranscribeOptions, Word
from voxserve.errors import VoxserveError
from voxserve.runtime.messages import EngineSpec, SynthRequest
from voxserve.runtime.pool import EnginePool
from voxserve.stt.session import Final, Partial, SessionConfig
from voxserve.stt.transcriber import Transcriber, session_config

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


class RecordingPool:
    """A pool that answers every decode with one word per request and records the options."""

    size = 1
    idle_workers = 1

    def __init__(self) -> None:
        self.options: list[TranscribeOptions] = []

    async def stream_call(self, method: str, audio: np.ndarray, options: TranscribeOptions) -> Any:
        self.options.append(options)
        end = audio.size / 16000

        async def answer() -> AsyncIterator[Any]:
            yield None  # the transcript info
            yield Segment(0, 0.0, end, " word", (Word(" word", end - 0.5, end - 0.1),))

        return answer()


async def test_a_final_that_hears_earlier_speech_asks_for_word_times() -> None:
    pool = RecordingPool()
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    t = Transcriber(
        pool, SessionConfig(partial_interval_ms=0), EnergyVad(), emit, options=TranscribeOptions()
    )  # type: ignore[arg-type]
    for chunk in (np.zeros(8000, np.float32), tone(1.0), np.zeros(14400, np.float32), tone(1.0)):
        await t.feed(chunk)
    await t.finish(timeout_s=20)
    await t.close()
    assert len([e for e in events if isinstance(e, Final)]) == 2
    # The first final is decoded alone, as asked; the second hears the first again, with word times.
    assert [o.word_timestamps for o in pool.options] == [False, True]


def test_the_context_audio_setting_reaches_the_session() -> None:
    assert session_config(Settings(ui_enabled=False)).context_audio_s == 10.0
    assert session_config(Settings(ui_enabled=False, stt_context_audio_s=0)).context_audio_s == 0.0
    assert Settings(stt_context_audio_s=20).stt_context_audio_s == 20
    with pytest.raises(ValueError, match="stt_context_audio_s"):
        Settings(stt_context_audio_s=20.5)
    with pytest.raises(ValueError, match="stt_context_audio_s"):
        Settings(stt_context_audio_s=-1)
    tuned = session_config(
        Settings(ui_enabled=False, stt_context_audio_gap_s=1.5, stt_context_audio_below_s=6)
    )
    assert (tuned.context_audio_gap_s, tuned.context_audio_below_s) == (1.5, 6.0)
    defaults = session_config(Settings(ui_enabled=False))
    assert (defaults.context_audio_gap_s, defaults.context_audio_below_s) == (2.5, 3.0)
    for name, limit in (("stt_context_audio_gap_s", 10), ("stt_context_audio_below_s", 30)):
        assert getattr(Settings(**{name: limit}), name) == limit
        for bad in (limit + 0.5, -1):
            with pytest.raises(ValueError, match=name):
                Settings(**{name: bad})
