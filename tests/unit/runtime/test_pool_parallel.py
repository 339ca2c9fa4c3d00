"""Parallel fragments: one request on idle workers, delivered in order, with crashes and cancels.

Real spawned workers with the fake engine (``tests/fakes.py``): every fragment is a sine whose length
follows its word count, so the audio of a parallel synthesis must equal, byte for byte, the audio of
the same request spoken by one worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.fakes import FakeEngine
from tests.timing import scaled, until_async

from voxserve.engines.base import AudioPiece
from voxserve.errors import EngineFailure
from voxserve.runtime.messages import Chunk, Done, EngineSpec, SynthRequest
from voxserve.runtime.pool import BusyLedger, EnginePool, ParallelSynthStream, SynthStream, WorkerHandle
from voxserve.text.markup import Pause, PhonemeOverride

FAST = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.01, "steps": 3})
SLOW = EngineSpec(engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.15, "steps": 3})

TEXTS = ("one two", "three four five", "six", "seven eight nine ten", "eleven twelve", "thirteen")


def job(*fragments: str | Pause | PhonemeOverride, parallel: bool = True) -> SynthRequest:
    return SynthRequest(
        voice="a", speed=1.0, fmt="pcm", sample_rate=16000, fragments=fragments, parallel=parallel
    )


async def make_pool(spec: EngineSpec, size: int, done: list[Done] | None = None) -> EnginePool:
    log = done if done is not None else []
    pool = EnginePool(
        spec,
        size,
        start_timeout_s=60,
        cancel_grace_s=1.0,
        queue_timeout_s=30,
        on_done=lambda e, d: log.append(d),
    )
    await pool.start()
    return pool


@pytest.fixture
async def fast_pool() -> AsyncIterator[EnginePool]:
    pool = await make_pool(FAST, 2)
    try:
        yield pool
    finally:
        await pool.stop()


async def chunks_of(stream: SynthStream) -> list[Chunk]:
    return [chunk async for chunk in stream]


def audio(chunks: list[Chunk]) -> bytes:
    return b"".join(c.data for c in chunks)


async def until_helped(stream: ParallelSynthStream) -> list[Chunk]:
    """Read the stream until a helper renders one of its fragments (helpers are lent from the
    primary's first claim on, which the stream answers as it is read); the chunks read."""
    chunks = []
    while stream.helpers == 0:
        chunks.append(await anext(stream))
    return chunks


def helper_of(stream: ParallelSynthStream) -> WorkerHandle:
    return next(iter(stream._helpers.values()))[0]


def kill(worker: WorkerHandle) -> None:
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)


async def settled(pool: EnginePool) -> None:
    """Every worker alive and idle again (dead ones replaced)."""
    await until_async(
        lambda: pool.busy == 0 and pool.idle_workers == pool.size and all(w.alive for w in pool.workers),
        scaled(30),
        message="the pool is idle with every worker alive",
    )


async def test_fragments_arrive_in_order_and_equal_one_worker(fast_pool: EnginePool) -> None:
    stream = await fast_pool.synth(job(*TEXTS))
    assert isinstance(stream, ParallelSynthStream)
    # No helper before the first fragment is spoken: a request arriving now gets the other worker.
    assert fast_pool.idle_workers == 1
    chunks = await chunks_of(stream)
    sequential = await chunks_of(await fast_pool.synth(job(*TEXTS, parallel=False)))
    assert [c.fragment for c in chunks if c.fragment >= 0] == list(range(len(TEXTS)))
    assert [c.text for c in chunks if c.fragment >= 0] == list(TEXTS)
    assert audio(chunks) == audio(sequential)  # nothing lost, nothing twice, same order
    assert [(c.start_s, c.words) for c in chunks] == [(c.start_s, c.words) for c in sequential]
    assert stream.helped >= 1 and stream.retried == 0
    await settled(fast_pool)


async def test_pauses_and_overrides_in_parallel(fast_pool: EnginePool) -> None:
    request = ("one two", Pause(0.1), PhonemeOverride("x", "abc", 0, 1), "three four", "five")
    chunks = await chunks_of(await fast_pool.synth(job(*request)))
    sequential = await chunks_of(await fast_pool.synth(job(*request, parallel=False)))
    assert audio(chunks) == audio(sequential)
    assert [c.fragment for c in chunks if c.fragment >= 0] == [0, 1, 2, 3, 4]


async def test_one_worker_or_one_fragment_is_not_parallel() -> None:
    pool = await make_pool(FAST, 1)
    try:
        stream = await pool.synth(job(*TEXTS))
        assert not isinstance(stream, ParallelSynthStream)
        assert len(audio(await chunks_of(stream))) > 0
    finally:
        await pool.stop()


async def test_helper_death_fragment_is_rendered_by_the_primary() -> None:
    pool = await make_pool(SLOW, 2)
    try:
        stream = await pool.synth(job(*TEXTS))
        assert isinstance(stream, ParallelSynthStream)
        head = await until_helped(stream)
        kill(helper_of(stream))
        chunks = head + await chunks_of(stream)
        sequential = await chunks_of(await pool.synth(job(*TEXTS, parallel=False)))
        assert [c.fragment for c in chunks if c.fragment >= 0] == list(range(len(TEXTS)))
        assert audio(chunks) == audio(sequential)  # the dead helper's fragment once, in its place
        assert stream.retried >= 1
        await settled(pool)
        assert pool.restarts == 1
    finally:
        await pool.stop()


async def test_fragment_that_kills_every_worker_fails_the_request_clearly(fast_pool: EnginePool) -> None:
    # The helper dies on it, the primary retries it once and dies too: a clear error mid-stream.
    stream = await fast_pool.synth(job("one two three", "CRASH", "four"))
    with pytest.raises(EngineFailure) as info:
        async with asyncio.timeout(scaled(20)):
            await chunks_of(stream)
    assert info.value.code == "worker_crashed"
    await settled(fast_pool)
    assert len(audio(await chunks_of(await fast_pool.synth(job(*TEXTS))))) > 0


async def test_primary_death_fails_the_request_and_stops_its_helpers() -> None:
    pool = await make_pool(SLOW, 2)
    try:
        stream = await pool.synth(job(*TEXTS))
        assert isinstance(stream, ParallelSynthStream)
        head = await until_helped(stream)
        assert head[0].fragment == 0
        kill(stream._worker)
        with pytest.raises(EngineFailure) as info:
            await chunks_of(stream)
        assert info.value.code == "worker_crashed"
        await settled(pool)
        assert pool.restarts == 1  # the primary; the helper was stopped, not killed
    finally:
        await pool.stop()


async def test_abort_stops_every_worker_speaking_for_the_request() -> None:
    done: list[Done] = []
    pool = await make_pool(SLOW, 2, done)
    try:
        stream = await pool.synth(job(*TEXTS))
        assert isinstance(stream, ParallelSynthStream)
        await until_helped(stream)
        helper = helper_of(stream)
        stream.abort()
        await until_async(
            lambda: sum(d.cancelled for d in done) == 2,
            scaled(10),
            message="the primary and the helper confirm the cancel",
        )
        await settled(pool)
        assert pool.restarts == 0  # both stopped by message, not killed
        assert helper.alive
        assert not any(pool._scratch().iterdir())  # no scratch file is left behind
    finally:
        await pool.stop()


async def test_waiting_request_gets_a_worker_before_the_parallel_one_ends() -> None:
    pool = await make_pool(SLOW, 2)
    try:
        long = await pool.synth(job(*(TEXTS * 3)))
        assert isinstance(long, ParallelSynthStream)
        await until_helped(long)
        order: list[str] = []

        async def drain_long() -> None:
            async for _ in long:
                pass
            order.append("long done")

        async def short() -> None:
            stream = await pool.synth(job("one two", "three", parallel=True))
            await anext(stream)
            order.append("short first audio")
            await chunks_of(stream)

        await asyncio.gather(drain_long(), short())
        # The waiting request got the helper's worker after one fragment, not after the long request.
        assert order == ["short first audio", "long done"]
        await settled(pool)
    finally:
        await pool.stop()


async def test_many_requests_all_complete(fast_pool: EnginePool) -> None:
    async def one() -> list[Chunk]:
        return await chunks_of(await fast_pool.synth(job(*TEXTS)))

    results = await asyncio.gather(*(one() for _ in range(6)))
    expected = audio(await chunks_of(await fast_pool.synth(job(*TEXTS, parallel=False))))
    assert all(audio(r) == expected for r in results)
    await settled(fast_pool)


class WarmFake(FakeEngine):
    """The fake engine with a warm-up that leaves a mark (``marker``: a file path)."""

    def __init__(self, marker: str, **options: float) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.marker = marker
        self.warm = False

    def warm_up(self) -> None:
        self.warm = True
        with open(self.marker, "a") as f:
            f.write(f"{os.getpid()}\n")

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        if not self.warm:
            raise RuntimeError("served before its warm-up")
        yield from super().synthesize(text, voice, speed)


async def test_every_worker_warms_up_before_it_is_ready(tmp_path: Path) -> None:
    marker = tmp_path / "warm"
    spec = EngineSpec(
        engine="fake",
        factory=f"{__name__}:WarmFake",
        options={"marker": str(marker), "step_s": 0.01, "steps": 1},
    )
    pool = await make_pool(spec, 2)
    try:
        # Ready means warm: each worker's warm-up ran before its handshake.
        assert sorted(marker.read_text().split()) == sorted(str(w.pid) for w in pool.workers)
        assert len(audio(await chunks_of(await pool.synth(job(*TEXTS))))) > 0
    finally:
        await pool.stop()


async def test_a_lone_request_speaks_its_first_fragment_on_every_core() -> None:
    """Alone on the server, a synthesis goes to the worker with the lone-request sessions, which
    speaks the first fragment on them (the first audio); helpers take the later fragments. A
    request that is not parallel keeps them throughout; with another worker busy, none."""
    lone_spec = dataclasses.replace(FAST, lone_threads=2)
    ledger = BusyLedger()
    pool = EnginePool(lone_spec, 2, start_timeout_s=60, queue_timeout_s=30, ledger=ledger)
    other = EnginePool(FAST, 1, start_timeout_s=60, queue_timeout_s=30, ledger=ledger)
    await asyncio.gather(pool.start(), other.start())

    def marked(chunks: list[Chunk]) -> list[bool]:
        return [all(w.word.endswith("@lone") for w in c.words) for c in chunks if c.fragment >= 0]

    try:
        for _ in range(2):  # whichever worker the queue hands out first
            chunks = await chunks_of(await pool.synth(job(*TEXTS)))
            assert marked(chunks) == [True] + [False] * (len(TEXTS) - 1)
            await settled(pool)
        chunks = await chunks_of(await pool.synth(job(*TEXTS[:3], parallel=False)))
        assert marked(chunks) == [True, True, True]
        busy = await other.synth(job("one two three four", parallel=False))
        await anext(busy)  # the other pool's worker is speaking
        chunks = await chunks_of(await pool.synth(job(*TEXTS)))
        assert not any(marked(chunks))
        busy.abort()
    finally:
        await asyncio.gather(pool.stop(), other.stop())


# Fragments with plenty of audio (4 s a word, 0.3 s to render): a request's audio runs far ahead of
# its playback, so its worker may render an older request's fragments before its own.
LONG = EngineSpec(
    engine="fake", factory="tests.fakes:FakeEngine", options={"step_s": 0.1, "steps": 3, "word_s": 4.0}
)


@pytest.fixture
async def long_pool() -> AsyncIterator[EnginePool]:
    pool = await make_pool(LONG, 2)
    try:
        yield pool
    finally:
        await pool.stop()


async def two_at_once(pool: EnginePool) -> tuple[ParallelSynthStream, ParallelSynthStream]:
    older = await pool.synth(job(*TEXTS))
    younger = await pool.synth(job(*TEXTS))
    assert isinstance(older, ParallelSynthStream) and isinstance(younger, ParallelSynthStream)
    return older, younger


async def lending(younger: ParallelSynthStream) -> asyncio.Task[list[Chunk]]:
    """A task reading ``younger`` (its claims are answered as it is read), returned once its worker
    renders a fragment of an older request."""
    reader = asyncio.ensure_future(chunks_of(younger))
    await until_async(lambda: bool(younger._lent), scaled(20), message="the younger request lends its worker")
    return reader


async def hang_up(reader: asyncio.Task[list[Chunk]], stream: SynthStream) -> None:
    """The client of ``stream`` goes away: its reader stops, and the route aborts the stream."""
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    stream.abort()


async def read(stream: SynthStream, name: str, finished: list[str]) -> list[Chunk]:
    """All of ``stream``; then ``name`` joins ``finished`` (the order requests end in)."""
    chunks = await chunks_of(stream)
    finished.append(name)
    return chunks


async def sequential_audio(pool: EnginePool) -> bytes:
    return audio(await chunks_of(await pool.synth(job(*TEXTS, parallel=False))))


async def test_the_older_request_comes_first(long_pool: EnginePool) -> None:
    older, younger = await two_at_once(long_pool)
    finished: list[str] = []
    a, b = await asyncio.gather(read(older, "older", finished), read(younger, "younger", finished))
    expected = await sequential_audio(long_pool)
    assert audio(a) == expected and audio(b) == expected  # in order, nothing lost or twice
    assert younger.lent >= 1 and older.helped >= younger.lent and older.lent == 0
    assert older.retried == younger.retried == 0
    # The older one had both workers once the younger's first audio was out: first come, first done.
    assert finished == ["older", "younger"]
    await settled(long_pool)


async def test_a_request_whose_audio_is_not_far_enough_ahead_keeps_its_worker(long_pool: EnginePool) -> None:
    long_pool.lend_margin_s = 1e6
    older, younger = await two_at_once(long_pool)
    a, b = await asyncio.gather(chunks_of(older), chunks_of(younger))
    assert younger.lent == 0 and older.helped == 0  # no worker was idle, and none was lent
    assert audio(a) == audio(b)


async def test_aborting_the_lender_mid_render_gives_the_fragment_back(long_pool: EnginePool) -> None:
    done: list[Done] = []
    long_pool.on_done = lambda e, d: done.append(d)
    older, younger = await two_at_once(long_pool)
    reader_older = asyncio.ensure_future(chunks_of(older))
    await hang_up(await lending(younger), younger)
    chunks = await reader_older
    # The lent fragment, rendered by the older request's own primary instead.
    assert audio(chunks) == await sequential_audio(long_pool)
    assert older.retried >= 1
    await settled(long_pool)
    assert long_pool.restarts == 0  # the lent render and the younger job both stopped by message
    assert any(d.cancelled for d in done)
    assert not any(long_pool._scratch().iterdir())


async def test_the_lender_dying_mid_render_costs_the_older_request_nothing(long_pool: EnginePool) -> None:
    older, younger = await two_at_once(long_pool)
    reader_older = asyncio.ensure_future(chunks_of(older))
    reader = await lending(younger)
    kill(younger._worker)
    with pytest.raises(EngineFailure) as info:
        await reader
    assert info.value.code == "worker_crashed"
    assert audio(await reader_older) == await sequential_audio(long_pool)
    await settled(long_pool)
    assert long_pool.restarts == 1
    assert not any(long_pool._scratch().iterdir())


async def test_the_older_request_aborted_mid_render_leaves_the_lender_speaking(long_pool: EnginePool) -> None:
    older, younger = await two_at_once(long_pool)
    reader_older = asyncio.ensure_future(chunks_of(older))
    reader = await lending(younger)
    await hang_up(reader_older, older)
    assert audio(await reader) == await sequential_audio(long_pool)
    await settled(long_pool)
    assert long_pool.restarts == 0
    await until_async(
        lambda: not any(long_pool._scratch().iterdir()),
        scaled(10),
        message="the lent fragment's file is removed",
    )


async def test_live_requests_come_before_a_background_one(long_pool: EnginePool) -> None:
    background = await long_pool.synth(dataclasses.replace(job(*TEXTS), background=True))
    live = await long_pool.synth(job(*TEXTS))
    assert isinstance(background, ParallelSynthStream) and isinstance(live, ParallelSynthStream)
    finished: list[str] = []
    a, b = await asyncio.gather(read(background, "background", finished), read(live, "live", finished))
    assert audio(a) == audio(b) == await sequential_audio(long_pool)
    # The live request, younger, lends nothing to the speech job; the job's worker renders the live
    # request's fragments before its own.
    assert live.lent == 0 and background.lent >= 1 and live.helped >= background.lent
    assert finished == ["live", "background"]


@pytest.mark.parametrize("background", [False, True])
async def test_a_freed_worker_goes_to_a_live_request_that_has_spoken(
    long_pool: EnginePool, background: bool
) -> None:
    """A worker freed by another request is lent at once to a live parallel synthesis past its first
    fragment (not only at its next claim); never to one still on its first fragment, nor to a
    background one (it takes idle workers at its own claims)."""
    other = await long_pool.synth(job(*TEXTS, parallel=False))
    stream = await long_pool.synth(dataclasses.replace(job(*TEXTS), background=background))
    assert isinstance(stream, ParallelSynthStream)
    head: list[Chunk] = []
    if not background:
        while stream._claim_msg is None:  # its first claim is answered as it is read
            head.append(await anext(stream))
    # Unread from here on: its next claim waits, so only the freed worker's offer can lend it a helper.
    await chunks_of(other)
    assert stream.helpers == (0 if background else 1)
    assert long_pool.idle_workers == (1 if background else 0)
    assert audio(head + await chunks_of(stream)) == await sequential_audio(long_pool)


async def test_a_freed_worker_is_not_lent_to_a_first_fragment(long_pool: EnginePool) -> None:
    other = await long_pool.synth(job("one", parallel=False))
    stream = await long_pool.synth(job(*TEXTS))
    assert isinstance(stream, ParallelSynthStream)
    await chunks_of(other)  # unread: its first claim, after its first fragment, is not answered yet
    assert stream._claim_msg is None
    assert stream.helpers == 0 and long_pool.idle_workers == 1
    assert audio(await chunks_of(stream)) == await sequential_audio(long_pool)
