"""The one sync↔async bridge: a sync iterator, driven by a thread, read as an async iterator.

Items pass through a bounded :class:`asyncio.Queue`; the producing thread blocks while the queue is
full, so a slow consumer slows the producer instead of growing memory. Closing the async iterator
(``aclose()``, ``break`` or task cancellation) tells the thread to stop at its next item. Used for
worker pipes and for sync generators such as transformers' ``TextIteratorStreamer``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

__all__ = ["iterate_in_thread"]

T = TypeVar("T")

_END = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def iterate_in_thread(
    source: Iterator[T] | Callable[[], Iterator[T]],
    *,
    maxsize: int = 8,
    name: str = "voxserve-bridge",
) -> AsyncIterator[T]:
    """Yield the items of a blocking iterator without blocking the event loop.

    ``source`` is an iterator or a zero-argument callable returning one (called in the thread, so a
    blocking constructor stays off the loop too). Exceptions raised by the iterator are re-raised in
    the consumer. At most ``maxsize`` items are buffered.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    # The bound lives in a semaphore the thread blocks on, and items cross with call_soon_threadsafe:
    # no coroutine is created in the thread, so none is left un-awaited when the loop closes first.
    slots = threading.Semaphore(maxsize)
    stop = threading.Event()

    def put(item: Any, *, bounded: bool = True) -> bool:
        """Hand one item to the loop; False if the consumer has gone."""
        if bounded:
            while not slots.acquire(timeout=_POLL_S):
                if stop.is_set():
                    return False
        if stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            return False
        return True

    def run() -> None:
        try:
            it = source() if callable(source) and not hasattr(source, "__next__") else source
            for item in it:  # type: ignore[union-attr]
                if stop.is_set() or not put(item):
                    return
            put(_END, bounded=False)
        except BaseException as exc:  # forwarded to the consumer, never lost in the thread
            if not stop.is_set():
                put(_Failure(exc), bounded=False)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            slots.release()
            yield item
    finally:
        stop.set()
