"""The Chat tab's per-tab event queue: bounded, nothing lost while the page listens, never a producer
stuck on a queue that nobody reads."""

from __future__ import annotations

import asyncio

from voxserve.chat.pipeline import ResponseDelta, ResponseDone
from voxserve.tts.stream import AudioData
from voxserve.ui.chat import EVENT_QUEUE_SIZE, ChatSession

DEADLINE_S = 5.0


async def _let_others_run() -> None:
    """A few turns of the loop: a started producer runs until it waits (a queue's ``put`` only
    suspends when the queue is full)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_queue_is_bounded() -> None:
    assert 8 <= EVENT_QUEUE_SIZE <= 256
    events = ChatSession().listen()
    assert events._queue.maxsize == EVENT_QUEUE_SIZE


async def test_a_full_queue_makes_the_producer_wait_and_loses_nothing() -> None:
    session = ChatSession(maxsize=4)
    events = session.listen()
    sent = [ResponseDelta(1, f"w{i} ") for i in range(20)]

    async def produce() -> None:
        for event in sent:
            await session.emit(event)

    producer = asyncio.create_task(produce())
    await _let_others_run()
    await _let_others_run()  # the producer is held at the bound while nobody takes anything
    assert events._queue.qsize() == 4 and not producer.done()

    received: list[object] = []
    while len(received) < len(sent):
        batch = await events.next_batch(DEADLINE_S)
        assert 1 <= len(batch) <= 4
        received.extend(batch)
    await asyncio.wait_for(producer, DEADLINE_S)
    assert received == sent  # every event, in order


async def test_next_batch_takes_everything_queued_and_times_out_empty() -> None:
    session = ChatSession()
    events = session.listen()
    await session.emit(ResponseDelta(1, "a"))
    await session.emit(AudioData(b"\x00\x01"))
    await session.emit(ResponseDone(1, "a"))
    assert await events.next_batch(DEADLINE_S) == [
        ResponseDelta(1, "a"),
        AudioData(b"\x00\x01"),
        ResponseDone(1, "a"),
    ]
    assert await events.next_batch(0.01) == []


async def test_events_are_dropped_while_nobody_listens() -> None:
    session = ChatSession(maxsize=2)
    assert not session.listening
    for i in range(10):  # never waits: nothing would read them
        await asyncio.wait_for(session.emit(ResponseDelta(1, str(i))), DEADLINE_S)
    events = session.listen()
    assert events.empty()
    session.stop_listening()
    await asyncio.wait_for(session.emit(ResponseDelta(1, "late")), DEADLINE_S)
    assert events.empty() and events.closed


async def test_stopping_lets_a_waiting_producer_go() -> None:
    """A handler that stops (answer shown, Gradio closed it, the tab went away) frees a producer held
    at the bound, so the chat can go on or be closed."""
    session = ChatSession(maxsize=2)
    events = session.listen()

    async def produce() -> None:
        for i in range(10):
            await session.emit(ResponseDelta(1, str(i)))

    producer = asyncio.create_task(produce())
    await _let_others_run()
    assert events._queue.full() and not producer.done()
    session.stop_listening(events)
    await asyncio.wait_for(producer, DEADLINE_S)
    assert not session.listening


async def test_a_newer_turn_gets_its_own_queue() -> None:
    """A handler still waiting when a newer message starts never takes the new answer's events."""
    session = ChatSession()
    old = session.listen()
    waiting = asyncio.create_task(old.next_batch(0.2))
    await asyncio.sleep(0)  # the old handler waits on its queue
    new = session.listen()
    assert old.closed and not new.closed
    await session.emit(ResponseDelta(2, "new"))
    assert await waiting == []
    assert await new.next_batch(DEADLINE_S) == [ResponseDelta(2, "new")]
    session.stop_listening(old)  # the old handler's cleanup does not end the new turn
    assert session.listening and not new.closed
