"""The asyncio client: the sans-I/O core (:mod:`voxserve.client.protocol`) on ``httpx.AsyncClient``
and websockets' asyncio client.

Every route is a method bound from the core (same name, signature and docstring as on
:class:`~voxserve.client.Client`); this module only moves bytes. WebSocket sessions send from a task
while the caller iterates; a sync text or audio iterator is read in a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voxserve.client import common
from voxserve.client.errors import ClientError, error_from_response, transport_error
from voxserve.client.events import ChatEvent
from voxserve.client.protocol import chat as chat_protocol
from voxserve.client.protocol import jobs, realtime, routes, speak
from voxserve.client.protocol import transcribe as transcribe_protocol
from voxserve.client.protocol.chat import NOT_OPEN, Answer, ChatProtocol, Turn
from voxserve.client.protocol.http import Call, Decoder, StreamCall
from voxserve.client.protocol.jobs import FileTarget, JobWait
from voxserve.client.protocol.session import (
    SEND_WAIT_S,
    TEXT_PIECE_CHARS,
    Handshake,
    StreamProtocol,
    TextSource,
    cut_text,
)
from voxserve.runtime.bridge import iterate_in_thread

__all__ = ["AsyncChatSession", "AsyncClient", "text_pieces"]

P = ParamSpec("P")
T = TypeVar("T")


# Each binder makes one kind of route into a method of AsyncClient (see common.route_method).


def _awaiting(route: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(route(*args, **kwargs))

    return common.route_method(method, route, "AsyncClient")


def _async_generating(
    route: Callable[P, StreamCall[T] | StreamProtocol[T]],
) -> Callable[Concatenate[AsyncClient, P], AsyncGenerator[T, None]]:
    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[T, None]:
        call = route(*args, **kwargs)
        return self._session(call) if isinstance(call, StreamProtocol) else self._stream(call)

    return common.route_method(method, route, "AsyncClient")


def _async_polling(
    route: Callable[P, JobWait],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, dict[str, Any]]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        wait, loop = route(*args, **kwargs), asyncio.get_running_loop()
        wait.start(loop.time())
        while True:
            pause = wait.next(await self.get_speech_job(wait.job_id), loop.time())
            if pause is None:
                return wait.job
            await asyncio.sleep(pause)

    return common.route_method(method, route, "AsyncClient")


def _async_chatting(
    route: Callable[P, ChatProtocol],
) -> Callable[Concatenate[AsyncClient, P], AsyncChatSession]:
    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncChatSession:
        return AsyncChatSession(self, route(*args, **kwargs))

    return common.route_method(method, route, "AsyncClient")


def _async_asking(
    route: Callable[P, Turn],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, tuple[str, bytes]]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> tuple[str, bytes]:
        turn = route(*args, **kwargs)
        async with AsyncChatSession(self, turn.chat) as session:
            return await session.ask(turn.text)

    return common.route_method(method, route, "AsyncClient")


class AsyncClient(common.ClientBase):
    """An asyncio client for a voxserve server (see :mod:`voxserve.client`)."""

    def __init__(
        self, base_url: str = common.DEFAULT_BASE_URL, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the routes (voxserve.client.protocol) ---------------------------------------------------

    health = _awaiting(routes.health)
    ready = _awaiting(routes.ready)
    voices = _awaiting(routes.voices)
    models = _awaiting(routes.models)
    model = _awaiting(routes.model)
    speech = _awaiting(routes.speech)
    stream_speech = _async_generating(routes.stream_speech)
    transcribe = _awaiting(routes.transcribe)
    translate = _awaiting(routes.translate)
    stream_transcription = _async_generating(routes.stream_transcription)
    phonemize = _awaiting(routes.phonemize)
    generate_from_phonemes = _awaiting(routes.generate_from_phonemes)
    captioned_speech = _awaiting(routes.captioned_speech)

    create_speech_job = _awaiting(jobs.create_speech_job)
    get_speech_job = _awaiting(jobs.get_speech_job)
    list_speech_jobs = _awaiting(jobs.list_speech_jobs)
    wait_speech_job = _async_polling(jobs.wait_speech_job)
    speech_job_audio = _awaiting(jobs.speech_job_audio)
    delete_speech_job = _awaiting(jobs.delete_speech_job)

    async def download_speech_job(self, job_id: str, file: FileTarget) -> int:
        """Stream the finished file to ``file`` (a path or a binary file object) without holding it in
        memory; the number of bytes written. File writes run in a thread."""
        async with self._open_stream(jobs.speech_job_download(job_id)) as chunks:
            owned = isinstance(file, str | os.PathLike)
            out = await asyncio.to_thread(open, file, "wb") if isinstance(file, str | os.PathLike) else file
            written = 0
            try:
                async for chunk in chunks:
                    written += await asyncio.to_thread(out.write, chunk)
            finally:
                if owned:
                    await asyncio.to_thread(out.close)
        return written

    speak_stream_events = _async_generating(speak.speak_stream_events)
    speak_stream = _async_generating(speak.speak_stream)
    transcribe_stream = _async_generating(transcribe_protocol.transcribe_stream)
    realtime_transcribe = _async_generating(realtime.realtime_transcribe)
    chat = _async_chatting(chat_protocol.chat)
    ask = _async_asking(chat_protocol.ask)

    # --- HTTP ------------------------------------------------------------------------------------

    async def _call(self, call: Call[T]) -> T:
        request = call.request
        file = await asyncio.to_thread(request.upload.read) if request.upload is not None else None
        try:
            response = await self._http.request(request.method, request.path, **request.options(file))
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        return call.result(response)

    @contextlib.asynccontextmanager
    async def _open_stream(self, call: StreamCall[T]) -> AsyncGenerator[AsyncIterator[T], None]:
        request = call.request
        file = await asyncio.to_thread(request.upload.read) if request.upload is not None else None
        try:
            async with self._http.stream(request.method, request.path, **request.options(file)) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, bytes(await response.aread()))
                yield _decoded(call.decoder(), response.aiter_bytes(call.chunk_bytes))
        except httpx.TransportError as exc:
            # Also a body aborted mid-stream: the server never ends audio short silently.
            raise transport_error(exc) from exc

    async def _stream(self, call: StreamCall[T]) -> AsyncGenerator[T, None]:
        async with self._open_stream(call) as items:
            async for item in items:
                yield item

    # --- WebSockets --------------------------------------------------------------------------------

    async def _open(self, protocol: Handshake) -> ClientConnection:
        """A connection to the protocol's route, its handshake done."""
        ws = await self._connect(protocol.path)
        try:
            replies = protocol.start()
            while True:
                with contextlib.suppress(ConnectionClosed):  # a refusal is read next (see _answer)
                    for message in replies:
                        await ws.send(message)
                if protocol.opened:
                    return ws
                replies = protocol.accept(await self._answer(ws))
        except BaseException:
            await ws.close()
            raise

    async def _connect(self, path: str) -> ClientConnection:
        try:
            ws = await connect(self.ws_base + path, **self._ws_options())
        except common.CONNECT_ERRORS as exc:
            raise common.handshake_error(exc) from exc
        return ws

    async def _answer(self, ws: ClientConnection) -> str | bytes:
        """The next message of a handshake. A server that refuses (no LLM, a bad config) may have
        closed already: its error event, or its close, is what is read."""
        try:
            return await asyncio.wait_for(ws.recv(), self.timeout)
        except ConnectionClosed as exc:
            raise common.no_answer(exc) from None
        except TimeoutError:
            raise ClientError("no answer from the server", code="timeout") from None

    async def _session(self, protocol: StreamProtocol[T]) -> AsyncGenerator[T, None]:
        ws = await self._open(protocol)
        try:
            progress = asyncio.Event()

            async def send() -> None:
                async with contextlib.aclosing(_items(protocol)) as items:
                    async for item in items:
                        for piece in protocol.pieces(item):
                            await _until(progress, functools.partial(protocol.can_send, piece))
                            await ws.send(protocol.send(piece))
                for message in protocol.finish():
                    await ws.send(message)

            async with contextlib.aclosing(_messages(ws, send)) as messages:
                async for message in messages:
                    events = protocol.receive(message)
                    progress.set()
                    for event in events:
                        yield event
                    if protocol.finished:
                        return
            error = protocol.closed(ws.close_code, ws.close_reason or "")
            if error is not None:
                raise error
        finally:
            await ws.close()


async def _until(progress: asyncio.Event, ready: Callable[[], bool]) -> None:
    """Wait until ``ready()``, checked each time ``progress`` is set, for at most ``SEND_WAIT_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SEND_WAIT_S
    while not ready() and loop.time() < deadline:
        progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), deadline - loop.time())


async def _decoded(decoder: Decoder[T], chunks: AsyncIterator[bytes]) -> AsyncGenerator[T, None]:
    async for chunk in chunks:
        for item in decoder.feed(chunk):
            yield item
    for item in decoder.end():
        yield item


async def _aiter_source(source: Any) -> AsyncGenerator[Any, None]:
    """Items of an async iterable, or of a sync one read in a thread (a blocking generator never
    blocks the loop)."""
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    elif isinstance(source, list | tuple):
        for item in source:
            yield item
    else:
        threaded = cast(AsyncGenerator[Any, None], iterate_in_thread(iter(source), name="voxserve-source"))
        async with contextlib.aclosing(threaded) as items:
            async for item in items:
                yield item


async def _items(protocol: StreamProtocol[Any]) -> AsyncGenerator[Any, None]:
    """The source's items: one str/bytes, or an iterable's (sync or async)."""
    if protocol.single():
        yield protocol.source
        return
    async with contextlib.aclosing(_aiter_source(protocol.source)) as items:
        async for item in items:
            yield item


async def text_pieces(source: TextSource, size: int = TEXT_PIECE_CHARS) -> AsyncGenerator[str, None]:
    """The pieces of a text source, none longer than ``size`` characters."""
    if isinstance(source, str):
        for piece in cut_text(source, size):
            yield piece
        return
    async with contextlib.aclosing(_aiter_source(source)) as items:
        async for item in items:
            for piece in cut_text(item, size):
                yield piece


async def _messages(ws: ClientConnection, sender: Callable[[], Any]) -> AsyncGenerator[str | bytes, None]:
    """Messages until the server closes, while ``sender()`` runs as a task; a sender failure is
    raised here (the sender closes the socket to wake this loop)."""
    failure: list[BaseException] = []

    async def send() -> None:
        try:
            await sender()
        except ConnectionClosed:
            pass  # the receiving side reports why
        except Exception as exc:
            failure.append(exc)
            await ws.close(1000, "client input failed")

    task = asyncio.create_task(send(), name="voxserve-client-send")
    try:
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                common.raise_closed(exc, failure)
                return
            yield message
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class AsyncChatSession:
    """A ``WS /v1/stream/chat`` session of :class:`AsyncClient` (from :meth:`AsyncClient.chat`).

    ``async with`` connects, sends the config and waits for ``ready`` (kept in :attr:`ready`); leaving
    it closes the connection. Send with :meth:`say`, :meth:`send_audio`, :meth:`cancel` and
    :meth:`end` — from another task while one iterates, or between events — and iterate
    (``async for``) the :data:`~voxserve.client.ChatEvent` s until the server closes the chat (after
    ``end``, or when idle). Error events are yielded as :class:`~voxserve.client.ChatError` (the chat
    goes on); an abnormal close is raised as :class:`~voxserve.client.ClientError`.
    """

    def __init__(self, client: AsyncClient, chat: ChatProtocol) -> None:
        self._client = client
        self._chat = chat
        self._ws: ClientConnection | None = None
        self.ready: dict[str, Any] = {}
        """The server's ``ready`` event (``voice``, ``response_format``, ``sample_rate``, ``llm_model``)."""

    async def open(self) -> AsyncChatSession:
        if self._ws is not None:
            raise RuntimeError("the chat is already open")
        self._ws = await self._client._open(self._chat)
        self.ready = self._chat.ready
        return self

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> AsyncChatSession:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _conn(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError(NOT_OPEN)
        return self._ws

    async def _send(self, message: str | bytes) -> None:
        try:
            await self._conn().send(message)
        except ConnectionClosed as exc:
            raise common.sent_after_close(exc) from None

    async def say(self, text: str) -> None:
        """A typed user turn: the LLM answers it (interrupting an answer still running)."""
        await self._send(self._chat.say(text))

    async def send_audio(self, pcm: bytes) -> None:
        """Microphone audio: raw PCM in the session's ``encoding`` and ``sample_rate_hz``, sent as it
        is recorded (faster is fine). Long buffers are cut into frames the server accepts."""
        for frame in self._chat.audio(pcm):
            await self._send(frame)

    async def cancel(self) -> None:
        """Stop the current answer (the server sends ``response.done`` interrupted, then ``cancelled``)."""
        await self._send(self._chat.cancel)

    async def end(self) -> None:
        """Finish: the last utterance is transcribed and answered, its answer spoken, then the
        server closes the chat (iteration ends)."""
        await self._send(self._chat.end)

    async def receive(self) -> ChatEvent | None:
        """The next event; ``None`` once the server has closed the chat normally (bound the wait
        with ``asyncio.timeout``)."""
        ws = self._conn()
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                common.raise_closed(exc)
                return None
            event = self._chat.receive(message)
            if event is not None:
                return event

    def __aiter__(self) -> AsyncChatSession:
        return self

    async def __anext__(self) -> ChatEvent:
        event = await self.receive()
        if event is None:
            raise StopAsyncIteration
        return event

    async def ask(self, text: str) -> tuple[str, bytes]:
        """Say ``text``, then ``end`` the chat once its answer is written: ``(answer text, its
        audio)``, the audio complete (the server closes once it is all sent). Earlier turns stay in
        the history; audio of an earlier answer is not included. An error event is raised."""
        answer = Answer(text)
        await self.say(text)
        while (event := await self.receive()) is not None:
            if answer.handle(event):
                await self.end()
        return answer.result()
