"""The sync→async bridge: order, errors, backpressure, cancellation, and a free event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from tests.timing import holds_for_async, scaled, until_async

from voxserve.runtime.bridge import iterate_in_thread


async def test_yields_items_in_order() -> None:
    assert [x async for x in iterate_in_thread(iter(range(100)))] == list(range(100))


async def test_callable_source_runs_in_the_thread() -> None:
    seen: list[str] = []

    def make() -> Iterator[int]:
        seen.append(threading.current_thread().name)
        yield 1

    assert [x async for x in iterate_in_thread(make, name="bridge-test")] == [1]
    assert seen == ["bridge-test"]


async def test_exception_reaches_the_consumer() -> None:
    def bad() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    out: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        async for x in iterate_in_thread(bad):
            out.append(x)
    assert out == [1]


async def test_blocking_producer_does_not_block_the_loop() -> None:
    loop_ran = threading.Event()

    def slow() -> Iterator[int]:
        for i in range(3):
            # A blocking call, like a sync LLM streamer, that only returns once the event loop has run
            # another task: a bridge that blocked the loop would deadlock here (until the bound).
            assert loop_ran.wait(scaled(10)), "the event loop did not run while the producer blocked"
            loop_ran.clear()
            yield i

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            loop_ran.set()

    task = asyncio.create_task(ticker())
    assert [x async for x in iterate_in_thread(slow)] == [0, 1, 2]
    task.cancel()


async def test_backpressure_bounds_the_buffer() -> None:
    produced = 0

    def fast() -> Iterator[int]:
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield i

    agen = iterate_in_thread(fast, maxsize=4)
    assert await anext(agen) == 0
    # The producer runs ahead until the buffer is full ...
    await until_async(lambda: produced >= 4, 5)
    # ... and no further: an observation window (a blocked producer gives no signal to wait for).
    # Producing 1000 items takes well under a millisecond, so 0.2 s is ample.
    await holds_for_async(lambda: produced <= 4 + 2, 0.2, message="queue size, one in hand, one being put")
    await agen.aclose()


async def test_closing_stops_the_producer() -> None:
    stopped = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            stopped.set()

    agen = iterate_in_thread(endless, maxsize=2)
    assert await anext(agen) == 1
    await agen.aclose()
    assert await asyncio.to_thread(stopped.wait, 2.0)
