"""EnginePool and WorkerHandle with real spawned worker processes and a fake engine."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest
from tests.timing import scaled, until_async

from voxserve.errors import EngineFailure, Unavailable, UnknownVoice, VoxserveError
from voxserve.runtime.messages import Chunk, Done, EngineSpec, SynthRequest
from voxserve.runtime.pool import BusyLedger, EnginePool, collect
from voxserve.text.markup import Pause, PhonemeOverride

SPEC = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.05, "steps": 4})


def job(*fragments: str | Pause | PhonemeOverride, voice: str = "a", fmt: str = "pcm") -> SynthRequest:
    return SynthRequest(voice=voice, speed=1.0, fmt=fmt, sample_rate=16000, fragments=fragments)


@pytest.fixture
async def pool() -> AsyncIterator[EnginePool]:
    done: list[Done] = []
    p = EnginePool(
        SPEC,
        1,
        start_timeout_s=60,
        cancel_grace_s=0.5,
        queue_timeout_s=5,
        on_done=lambda e, d: done.append(d),
    )
    p.done_log = done  # type: ignore[attr-defined]
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def wait_for(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    await until_async(predicate, timeout_s)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_stream_returns_all_audio(pool: EnginePool) -> None:
    stream = await pool.synth(job("one two", "three four five"))
    data = await collect(stream)
    # 0.05 s per word at 16 kHz, s16: 5 words → 4000 samples → 8000 bytes.
    assert len(data) == pytest.approx(8000, abs=64)
    assert stream.done is not None and not stream.done.cancelled
    assert pool.busy == 0


async def test_first_chunk_of_each_fragment_carries_its_text(pool: EnginePool) -> None:
    chunks: list[Chunk] = [c async for c in await pool.synth(job("one two", "three"))]
    assert [c.text for c in chunks if c.fragment >= 0] == ["one two", "three"]
    starts = [c.start_s for c in chunks if c.fragment >= 0]
    assert starts[0] == 0.0 and starts[1] == pytest.approx(0.1, abs=0.002)


async def test_unknown_voice_fails_before_any_chunk(pool: EnginePool) -> None:
    stream = await pool.synth(job("hello", voice="nope"))
    with pytest.raises(UnknownVoice):
        await anext(stream)
    assert pool.busy == 0
    assert len(await collect(await pool.synth(job("still works")))) > 0


async def test_unexpected_engine_error_is_generic(pool: EnginePool) -> None:
    stream = await pool.synth(job("FAIL"))
    with pytest.raises(EngineFailure) as info:
        await anext(stream)
    assert "secret" not in info.value.message and info.value.code == "synthesis_failed"


async def test_abort_cancels_between_pieces(pool: EnginePool) -> None:
    stream = await pool.synth(job(*["a b c d e f g h"] * 20))
    await anext(stream)
    stream.abort()
    await wait_for(lambda: pool.done_log)  # type: ignore[attr-defined]
    done = pool.done_log[-1]  # type: ignore[attr-defined]
    assert done.cancelled
    assert done.audio_s < 1.0  # far less than the 8 s the whole job would make
    await wait_for(lambda: pool.busy == 0 and pool._idle.qsize() == 1)
    assert pool.restarts == 0


async def test_crash_reports_clean_error_and_worker_is_replaced(pool: EnginePool) -> None:
    old_pid = pool.workers[0].pid
    stream = await pool.synth(job("CRASH"))
    with pytest.raises(EngineFailure) as info:
        async with asyncio.timeout(scaled(10)):  # give-up bound: the crash is noticed, no hang
            await anext(stream)
    assert info.value.code == "worker_crashed"
    data = await collect(await pool.synth(job("after the crash")))
    assert len(data) > 0
    assert pool.restarts == 1
    assert pool.workers[0].pid != old_pid


async def test_hung_worker_is_killed_after_cancel_grace(pool: EnginePool) -> None:
    old_pid = pool.workers[0].pid
    assert old_pid is not None
    stream = await pool.synth(job("HANG"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 0.2)
    stream.abort()
    await wait_for(lambda: pool.restarts == 1 and pool.ready and pool.workers[0].pid != old_pid, 30)
    await until_async(lambda: process_gone(old_pid), 5, 0.05, message=f"the hung worker {old_pid} is gone")
    assert len(await collect(await pool.synth(job("alive")))) > 0


async def test_a_cancel_stops_an_inference_in_progress(pool: EnginePool) -> None:
    # A Piper sentence is one inference of up to a second, deaf to the Cancel on the pipe until it
    # ends: the interrupt pipe stops it mid-run (the fake's 30 s "inference" would outlast the 0.5 s
    # cancel grace, and the worker would be killed and replaced).
    stream = await pool.synth(job("INFER"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 0.2)
    stream.abort()
    await wait_for(lambda: pool.done_log)  # type: ignore[attr-defined]
    assert pool.done_log[-1].cancelled  # type: ignore[attr-defined]
    await wait_for(lambda: pool.busy == 0 and pool._idle.qsize() == 1)
    assert pool.restarts == 0
    # The next job's inferences run to the end again.
    assert len(await collect(await pool.synth(job("after the cancel")))) > 0
    assert pool.restarts == 0


async def test_full_queue_answers_unavailable() -> None:
    p = EnginePool(SPEC, 1, start_timeout_s=60, queue_timeout_s=0.3, max_queued=0)
    await p.start()
    try:
        p.check_admission()  # an idle worker: admitted
        first = await p.synth(job(*["a b c d"] * 10))
        with pytest.raises(Unavailable):
            p.check_admission()  # routes ask before doing any work
        with pytest.raises(Unavailable):
            await p.synth(job("x"))
        first.abort()
    finally:
        await p.stop()


async def test_queue_timeout_answers_unavailable() -> None:
    p = EnginePool(SPEC, 1, start_timeout_s=60, queue_timeout_s=0.2, max_queued=4)
    await p.start()
    try:
        first = await p.synth(job(*["a b c d"] * 10))
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as info:
            await p.synth(job("x"))
        # Queued, then refused when queue_timeout_s ran out (not "at capacity" at once, not served).
        assert "became free within 0.2 s" in info.value.message
        assert time.monotonic() - t0 >= 0.19
        first.abort()
    finally:
        await p.stop()


async def test_call_runs_engine_method(pool: EnginePool) -> None:
    result = await pool.call("phonemize", "AB", "a")
    assert result.tokens == [65, 66]
    with pytest.raises(VoxserveError):
        await pool.call("__init__")


async def test_start_failure_is_reported() -> None:
    bad = EngineSpec(engine="fake", factory="tests.fakes:NoSuchEngine")
    p = EnginePool(bad, 1, start_timeout_s=60)
    with pytest.raises(EngineFailure) as info:
        await p.start()
    assert info.value.code == "engine_start_failed"
    await p.stop()


async def test_stop_leaves_no_processes(pool: EnginePool) -> None:
    pids = [w.pid for w in pool.workers]
    await pool.stop()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_stream_call_yields_info_then_items(pool: EnginePool) -> None:
    import numpy as np

    from voxserve.engines.base import TranscribeOptions

    stream = await pool.stream_call("transcribe", np.zeros(16000 * 2, np.float32), TranscribeOptions())
    values = [v async for v in stream]
    assert values[0].duration_s == 2.0
    assert [s.text for s in values[1:]] == [" word0", " word1", " word2", " word3"]
    assert pool.busy == 0


async def test_an_upload_is_decoded_in_the_worker(pool: EnginePool, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.audio_helpers import silence_flac

    from voxserve.audio import decode
    from voxserve.engines.base import TranscribeOptions
    from voxserve.errors import TextTooLong, UnsupportedMediaType

    def not_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was decoded in the server process")

    monkeypatch.setattr(decode, "decode_audio", not_here)  # the worker is another process
    stream = await pool.stream_call("transcribe_upload", silence_flac(2.0), 60.0, TranscribeOptions())
    values = [v async for v in stream]
    assert values[0].duration_s > 1.5
    # A whole file's silence is skipped (the fake gives a word per 0.5 s of audio unless told to).
    assert values[1:] == []
    # The decoder's errors come back as they are, before any result.
    bad = await pool.stream_call("transcribe_upload", b"not audio at all" * 100, 60.0, TranscribeOptions())
    with pytest.raises(UnsupportedMediaType):
        await anext(bad)
    long = await pool.stream_call("transcribe_upload", silence_flac(3.0), 1.0, TranscribeOptions())
    with pytest.raises(TextTooLong) as info:
        await anext(long)
    assert info.value.code == "audio_too_long"
    assert pool.busy == 0


async def test_a_transcription_is_lone_only_while_no_other_worker_of_the_server_is_busy() -> None:
    """Idle cores go to whoever is waiting: with nothing else running, the decode goes to the one
    worker with a lone-request copy of the model (``StreamCall.lone``); while a worker of another
    pool (TTS) is busy, it keeps to its share."""
    import numpy as np
    from tests.audio_helpers import silence_flac

    from voxserve.engines.base import TranscribeOptions

    ledger = BusyLedger()
    tts = EnginePool(SPEC, 1, start_timeout_s=60, queue_timeout_s=5, ledger=ledger)
    stt_spec = dataclasses.replace(SPEC, lone_threads=2)
    stt = EnginePool(stt_spec, 2, start_timeout_s=60, queue_timeout_s=5, ledger=ledger)
    await asyncio.gather(tts.start(), stt.start())
    (capable,) = [w for w in stt.workers if w.spec.lone_threads]  # one copy per pool: memory
    audio = np.zeros(8000, np.float32)

    async def language(*args: object) -> str:
        values = [v async for v in await stt.stream_call(*args)]  # type: ignore[arg-type]
        return str(values[0].language)

    try:
        for _ in range(3):  # whichever worker the queue hands out first
            assert await language("transcribe", audio, TranscribeOptions()) == f"lone:{capable.pid}"
        upload = await language("transcribe_upload", silence_flac(1.0), 60.0, TranscribeOptions())
        assert upload == f"lone:{capable.pid}"
        speech = await tts.synth(job("one two three four five six seven eight"))
        await anext(speech)  # the TTS worker is speaking
        assert await language("transcribe", audio, TranscribeOptions()) == "en"
        speech.abort()
        await until_async(lambda: ledger.busy == 0, 10)
        assert await language("transcribe", audio, TranscribeOptions()) == f"lone:{capable.pid}"
    finally:
        await asyncio.gather(tts.stop(), stt.stop())


async def test_stream_call_abort_cancels(pool: EnginePool) -> None:
    import numpy as np

    from voxserve.engines.base import TranscribeOptions

    stream = await pool.stream_call("transcribe", np.zeros(16000 * 60, np.float32), TranscribeOptions())
    await anext(stream)
    await anext(stream)
    stream.abort()
    await wait_for(lambda: pool.done_log and pool.done_log[-1].cancelled)  # type: ignore[attr-defined]
    await wait_for(lambda: pool.busy == 0 and pool._idle.qsize() == 1)


async def test_a_hung_worker_is_found_by_heartbeat_and_replaced() -> None:
    p = EnginePool(SPEC, 1, start_timeout_s=60, queue_timeout_s=30, heartbeat_s=0.1, hang_timeout_s=1.0)
    await p.start()
    try:
        old_pid = p.workers[0].pid
        stream = await p.synth(job("HANG"))  # the fake engine sleeps 30 s inside one piece
        # The heartbeat finds it (hang_timeout_s = 1): a crash, not the 30 s piece's audio.
        with pytest.raises(EngineFailure) as exc:
            await collect(stream)
        assert exc.value.code == "worker_crashed"
        # A replacement serves the next job.
        audio = await collect(await p.synth(job("hello")))
        assert audio
        assert p.restarts == 1 and p.workers[0].pid != old_pid
    finally:
        await p.stop()


async def test_idle_and_busy_workers_answer_heartbeats() -> None:
    # 1.5 s: a loaded CI machine can delay one heartbeat's answer by more than 0.5 s.
    p = EnginePool(SPEC, 1, start_timeout_s=60, heartbeat_s=0.05, hang_timeout_s=1.5)
    await p.start()
    try:
        worker = p.workers[0]
        t0 = time.monotonic()
        # A job whose pieces take longer in total than the hang timeout, but each piece is short.
        audio = await collect(await p.synth(job(*["word " * 8] * 12)))
        assert audio and time.monotonic() - t0 > 1.5
        start_seen = worker.last_seen
        # Heartbeat answers move last_seen on while idle.
        await until_async(lambda: worker.last_seen > start_seen + 0.3, 5, 0.05)
        assert p.restarts == 0 and worker.alive
    finally:
        await p.stop()


async def test_silent_engine_output_is_an_output_error(pool: EnginePool) -> None:
    stream = await pool.synth(job("SILENT"))
    with pytest.raises(VoxserveError) as exc:
        await collect(stream)
    assert exc.value.code == "output_error" and exc.value.status == 502
    # The worker is fine: the next job speaks.
    assert await collect(await pool.synth(job("hello")))


async def test_trailing_silence_is_appended(pool: EnginePool) -> None:
    plain = await collect(await pool.synth(job("hello")))
    padded = await collect(await pool.synth(dataclasses.replace(job("hello"), trailing_silence_s=0.25)))
    assert len(padded) - len(plain) == 2 * 4000  # 0.25 s at 16 kHz, s16le
    assert padded[len(plain) :] == bytes(2 * 4000)


async def test_pauses_are_silence_of_their_length_and_may_come_first(pool: EnginePool) -> None:
    chunks = [c async for c in await pool.synth(job(Pause(0.5), "hello", Pause(0.25), "you"))]
    data = b"".join(c.data for c in chunks)
    # 0.5 + 0.05 + 0.25 + 0.05 s at 16 kHz, s16le; the fake engine's native rate is the output rate.
    assert len(data) == 2 * int(16000 * 0.85)
    assert data[: 2 * 8000] == bytes(2 * 8000)
    starts = {c.text: c.start_s for c in chunks if c.fragment >= 0}
    assert starts["hello"] == 0.5 and starts["you"] == pytest.approx(0.8)


async def test_ipa_override_is_spoken_as_phonemes_and_timed_as_one_word(pool: EnginePool) -> None:
    chunks = [c async for c in await pool.synth(job("say", PhonemeOverride("təˈmɑːtoʊ", "tomato")))]
    override = [c for c in chunks if c.text == "tomato"]
    assert override and override[0].words[0].word == "tomato"
    assert override[0].words[0].start_s == pytest.approx(0.05)


async def test_bad_override_fails_before_any_audio(pool: EnginePool) -> None:
    stream = await pool.synth(job("a long first fragment", PhonemeOverride("bad!", "word")))
    with pytest.raises(VoxserveError) as exc:
        await anext(stream)
    assert exc.value.code == "invalid_phonemes" and exc.value.param == "input"
    assert "word" in exc.value.message


async def test_a_lean_pool_starts_one_worker_and_the_others_on_its_first_request() -> None:
    spec = dataclasses.replace(SPEC, lone_threads=2)
    p = EnginePool(spec, 3, start_timeout_s=60, queue_timeout_s=30, initial=1)
    try:
        await p.start()
        assert len(p.workers) == 1 and p.workers[0].spec.lone_threads == 2  # it keeps the lone copy
        # The first request is served by the running worker; the others start once it is done.
        stream = await p.synth(job("hello there"))
        audio = await collect(stream)
        assert audio
        await wait_for(lambda: len(p.workers) == 3 and p.idle_workers == 3)
        assert [w.spec.lone_threads for w in p.workers] == [2, 0, 0]  # one lone copy, as before
        assert len({w.pid for w in p.workers}) == 3
        # Three requests at once now each get a worker.
        streams = [await p.synth(job("one")) for _ in range(3)]
        assert p.busy == 3
        assert all(await asyncio.gather(*(collect(s) for s in streams)))
        pids = [w.pid for w in p.workers]
    finally:
        await p.stop()
    await wait_for(lambda: all(process_gone(pid) for pid in pids if pid))


async def test_a_lean_pool_grows_at_once_when_a_request_must_wait() -> None:
    p = EnginePool(SPEC, 2, start_timeout_s=60, queue_timeout_s=30, initial=1)
    try:
        await p.start()
        first = await p.synth(job("one two three four five six"))
        assert len(p.workers) == 1
        second = await p.synth(job("seven"))  # no idle worker: served by the one started for it
        assert len(p.workers) == 2
        assert all(await asyncio.gather(collect(first), collect(second)))
        pids = [w.pid for w in p.workers]
    finally:
        await p.stop()
    await wait_for(lambda: all(process_gone(pid) for pid in pids if pid))


async def test_a_pool_not_started_yet_admits_its_first_request_even_with_no_queue() -> None:
    p = EnginePool(SPEC, 1, start_timeout_s=60, queue_timeout_s=30, max_queued=0)
    try:
        p.check_admission()  # a lazy engine's first request: its start brings an idle worker
        stream = await p.synth(job("one two three"))
        with pytest.raises(Unavailable):
            p.check_admission()  # now the one worker is busy and nobody may wait
        assert await collect(stream)
    finally:
        await p.stop()
