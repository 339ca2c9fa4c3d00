"""Speak text that arrives in pieces (an LLM's tokens) as soon as the first fragment is speakable.

:class:`SpeechStream` takes a string, a sync iterator or an async iterator of text and yields encoded
audio chunks. Behind it is either a voxserve server (``server="http://127.0.0.1:8000"``, over
``WS /v1/stream/speak``) or the engines in-process: an :class:`~voxserve.runtime.registry.EngineRegistry`
(engine worker processes, started on first use and stopped at the end) driving the same
:class:`~voxserve.tts.stream.SpeakSession` the server uses, so fragments, normalisation and sentence
events are identical either way::

    async with SpeechStream(llm_tokens(), voice="alloy", response_format="pcm") as stream:
        async for chunk in stream:
            player.write(chunk)  # s16le mono 24 kHz

    for chunk in SpeechStream("Hello there. How are you?"):  # sync: runs on a helper thread's loop
        ...

A sync iterator is read on its own thread (:func:`voxserve.runtime.bridge.iterate_in_thread`), so a
blocking token streamer (transformers' ``TextIteratorStreamer``) never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from voxserve.client import AsyncClient, Sentence, SpeakDone, SpeakEvent, TextSource, Word, text_pieces
from voxserve.errors import InvalidValue

if TYPE_CHECKING:
    from voxserve.config import Settings
    from voxserve.runtime.registry import EngineRegistry
    from voxserve.tts.stream import SpeakSession

__all__ = ["SpeechStream"]

T = TypeVar("T")

_FORMATS = ("pcm", "wav", "mp3", "opus")
_STOP_TIMEOUT_S = 60.0


class SpeechStream:
    """Audio for a stream of text; iterate it (``async for`` or ``for``) for the encoded chunks.

    - ``source``: a str, a sync iterator or an async iterator of str (pieces of any size).
    - ``voice``: any voice id or OpenAI name (default: the server's / settings' default voice).
    - ``response_format``: ``pcm`` (s16le mono at 24 kHz), ``wav``, ``mp3`` or ``opus`` (Ogg) — one
      continuous stream across fragments.
    - ``server``: a voxserve base URL; without it the engines run in-process with ``settings``
      (default: one worker per engine, nothing preloaded) or an existing started ``registry``
      (shared, so left running; without one the stream stops the engines it started).
    - ``on_sentence``: called with each :class:`~voxserve.client.Sentence` just before its audio.

    A stream is iterated once. Stop early with ``aclose()`` (or ``async with``; ``break`` out of a
    sync ``for`` closes it too). Errors — an unknown voice, a fragment the engine failed on — are
    raised as :class:`voxserve.errors.VoxserveError` (a :class:`~voxserve.client.ClientError` from a
    server).
    """

    def __init__(
        self,
        source: TextSource,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        server: str | None = None,
        api_key: str | None = None,
        settings: Settings | None = None,
        registry: EngineRegistry | None = None,
        on_sentence: Callable[[Sentence], Any] | None = None,
        timeout: float = 60.0,
    ) -> None:
        if response_format not in _FORMATS:
            raise InvalidValue(
                f"response_format must be one of {', '.join(_FORMATS)}", code="unsupported_format"
            )
        if isinstance(speed, bool) or not 0.25 <= speed <= 4.0:
            raise InvalidValue("speed must be a number from 0.25 to 4.0", code="invalid_speed")
        if server is not None and (settings is not None or registry is not None):
            raise ValueError("give either server= or settings=/registry=, not both")
        self.source = source
        self.voice = voice
        self.response_format = response_format
        self.speed = float(speed)
        self.server = server
        self.on_sentence = on_sentence
        self._api_key = api_key
        self._settings = settings
        self._registry = registry
        self._timeout = timeout
        self._events: AsyncGenerator[SpeakEvent, None] | None = None
        self.sentences: list[Sentence] = []
        """Every :class:`~voxserve.client.Sentence` so far, in order."""
        self.audio_s: float | None = None
        """Seconds of audio in all, once the stream has finished."""

    @property
    def sample_rate(self) -> int:
        """The audio's sample rate (24000 unless in-process settings say otherwise)."""
        settings = self._settings or (self._registry.settings if self._registry is not None else None)
        return settings.output_sample_rate if settings is not None else 24000

    # --- async -----------------------------------------------------------------------------------------

    def events(self) -> AsyncGenerator[SpeakEvent, None]:
        """Audio ``bytes``, a :class:`~voxserve.client.Sentence` before each fragment's audio and
        :class:`~voxserve.client.SpeakDone` at the end (the stream's one iteration)."""
        if self._events is not None:
            raise RuntimeError("a SpeechStream can be iterated only once")
        self._events = self._run()
        return self._events

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        return self._audio(self.events())

    @staticmethod
    async def _audio(events: AsyncGenerator[SpeakEvent, None]) -> AsyncGenerator[bytes, None]:
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, bytes):
                    yield event

    async def __aenter__(self) -> SpeechStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: close the connection or session and stop the engines this stream started."""
        events = self._events
        if events is not None and hasattr(events, "aclose"):
            await events.aclose()

    async def _run(self) -> AsyncGenerator[SpeakEvent, None]:
        inner = self._remote() if self.server is not None else self._local()
        async with contextlib.aclosing(inner) as events:
            async for event in events:
                if isinstance(event, Sentence):
                    self.sentences.append(event)
                    if self.on_sentence is not None:
                        self.on_sentence(event)
                elif isinstance(event, SpeakDone):
                    self.audio_s = event.audio_s
                yield event

    async def _remote(self) -> AsyncGenerator[SpeakEvent, None]:
        assert self.server is not None
        async with AsyncClient(self.server, api_key=self._api_key, timeout=self._timeout) as client:
            events = client.speak_stream_events(
                self.source, voice=self.voice, response_format=self.response_format, speed=self.speed
            )
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    yield event

    async def _local(self) -> AsyncGenerator[SpeakEvent, None]:
        # Imported here: the engine runtime is only needed without a server.
        from voxserve.config import Settings
        from voxserve.runtime.registry import EngineRegistry
        from voxserve.tts.speak import SpeakConfig, open_speak_session, resolve_speak_voice
        from voxserve.tts.stream import AudioData, Failed, Finished, SentenceStarted

        registry = self._registry
        owned = registry is None
        settings = registry.settings if registry is not None else self._settings
        if settings is None:
            settings = Settings(workers_per_engine=1, preload_engines=[])
        if registry is None:
            registry = EngineRegistry(settings)
        # Bounded: a slow consumer holds the synthesis back instead of buffering audio.
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=32)
        progress = asyncio.Event()

        async def emit(event: object) -> None:
            progress.set()
            await queue.put(event)

        session: SpeakSession | None = None
        feeder: asyncio.Task[None] | None = None
        getter: asyncio.Future[object] | None = None
        waiting: set[asyncio.Future[Any]]
        try:
            voice = await resolve_speak_voice(registry, self.voice or settings.default_voice)
            config = SpeakConfig(voice, self.response_format, self.speed)
            session = open_speak_session(registry, settings, config, emit)
            feeder = asyncio.create_task(self._feed(session, progress, settings), name="voxserve-feed")
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                waiting = {getter} if feeder.done() else {getter, feeder}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if feeder.done() and not feeder.cancelled():
                    failure = feeder.exception()
                    if failure is not None:
                        raise failure
                if not getter.done():
                    continue
                event, getter = getter.result(), None
                if isinstance(event, AudioData):
                    yield event.data
                elif isinstance(event, SentenceStarted):
                    sources = event.sources or (None,) * len(event.words)
                    words = tuple(
                        Word(w.word, w.start_s, w.end_s, *(span if span else (None, None)))
                        for w, span in zip(event.words, sources, strict=True)
                    )
                    yield Sentence(event.text, event.start_s, words)
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Finished):
                    yield SpeakDone(round(event.audio_s, 3))
                    return
        finally:
            for task in (getter, feeder):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if session is not None:
                await session.close()
            if owned:
                await _settle(registry)
                await registry.stop()

    async def _feed(self, session: SpeakSession, progress: asyncio.Event, settings: Settings) -> None:
        """Push the source's text into the session, waiting while too much is unspoken."""
        limit = settings.max_pending_chars
        async with contextlib.aclosing(
            text_pieces(self.source, min(1000, settings.max_input_chars))
        ) as pieces:
            async for piece in pieces:
                while session.pending_chars and session.pending_chars + len(piece) > limit:
                    progress.clear()
                    # Re-checked at least every second, whatever the session emits.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(progress.wait(), 1.0)
                session.push(piece)
        session.end()

    # --- sync ------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        """The audio chunks, for sync code: the stream runs on a helper thread's event loop."""
        return _iterate_on_loop_thread(lambda: self.__aiter__())


async def _settle(registry: EngineRegistry, timeout_s: float = 5.0) -> None:
    """Give jobs abandoned by a stop (the fragment being spoken) time to be cancelled and their
    workers released, so stopping the engines finds no worker mid-job."""
    step_s = 0.02  # polled, with a deadline: the pool has no event for "released"
    for _ in range(int(timeout_s / step_s)):
        if not any(pool.busy for pool in registry.pools.values()):
            return
        await asyncio.sleep(step_s)


async def _cancel_remaining_tasks() -> None:
    """What ``asyncio.run`` does before closing its loop: cancel what is left and let it finish."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_DONE = object()


def _iterate_on_loop_thread(factory: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Iterate an async iterator from sync code, on a private event loop in a helper thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="voxserve-speech-stream", daemon=True)
    thread.start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_STOP_TIMEOUT_S)

    async def start() -> AsyncIterator[T]:
        return factory()

    async def step(iterator: AsyncIterator[T]) -> object:
        try:
            return await iterator.__anext__()
        except StopAsyncIteration:
            return _DONE

    iterator: AsyncIterator[T] | None = None
    try:
        iterator = call(start())
        while True:
            future = asyncio.run_coroutine_threadsafe(step(iterator), loop)
            try:
                item = future.result()
            except BaseException:
                future.cancel()
                raise
            if item is _DONE:
                return
            yield cast(T, item)
    finally:
        try:
            if iterator is not None and hasattr(iterator, "aclose"):
                with contextlib.suppress(RuntimeError):  # still running: cancelled above
                    call(iterator.aclose())
            call(_cancel_remaining_tasks())
            call(loop.shutdown_asyncgens())
            call(loop.shutdown_default_executor())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT_S)
            if not thread.is_alive():
                loop.close()
