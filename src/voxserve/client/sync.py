"""The blocking client: the sans-I/O core (:mod:`voxserve.client.protocol`) on ``httpx.Client`` and
websockets' sync client.

Every route is a method bound from the core (same name, signature and docstring as on
:class:`~voxserve.client.AsyncClient`); this module only moves bytes. WebSocket sessions send from a
helper thread while the calling thread receives.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import AsyncIterable, Callable, Generator, Iterable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from voxserve.client import common
from voxserve.client.errors import ClientError, error_from_response, transport_error
from voxserve.client.events import ChatEvent
from voxserve.client.protocol import chat as chat_protocol
from voxserve.client.protocol import jobs, realtime, routes, speak
from voxserve.client.protocol import transcribe as transcribe_protocol
from voxserve.client.protocol.chat import NOT_OPEN, Answer, ChatProtocol, Turn
from voxserve.client.protocol.http import Call, Decoder, StreamCall
from voxserve.client.protocol.jobs import FileTarget, JobWait
from voxserve.client.protocol.session import SEND_WAIT_S, Handshake, StreamProtocol

__all__ = ["ChatSession", "Client"]

P = ParamSpec("P")
T = TypeVar("T")


# Each binder makes one kind of route into a method of Client (see voxserve.client.common.route_method).


def _blocking(route: Callable[P, Call[T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(route(*args, **kwargs))

    return common.route_method(method, route, "Client")


def _generating(
    route: Callable[P, StreamCall[T] | StreamProtocol[T]],
) -> Callable[Concatenate[Client, P], Generator[T, None, None]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Generator[T, None, None]:
        call = route(*args, **kwargs)
        return self._session(call) if isinstance(call, StreamProtocol) else self._stream(call)

    return common.route_method(method, route, "Client")


def _polling(route: Callable[P, JobWait]) -> Callable[Concatenate[Client, P], dict[str, Any]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        wait = route(*args, **kwargs)
        wait.start(time.monotonic())
        while (pause := wait.next(self.get_speech_job(wait.job_id), time.monotonic())) is not None:
            time.sleep(pause)
        return wait.job

    return common.route_method(method, route, "Client")


def _chatting(route: Callable[P, ChatProtocol]) -> Callable[Concatenate[Client, P], ChatSession]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> ChatSession:
        return ChatSession(self, route(*args, **kwargs))

    return common.route_method(method, route, "Client")


def _asking(route: Callable[P, Turn]) -> Callable[Concatenate[Client, P], tuple[str, bytes]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> tuple[str, bytes]:
        turn = route(*args, **kwargs)
        with ChatSession(self, turn.chat) as session:
            return session.ask(turn.text)

    return common.route_method(method, route, "Client")


class Client(common.ClientBase):
    """A blocking client for a voxserve server: :class:`~voxserve.client.AsyncClient`'s methods on
    ``httpx.Client`` and websockets' sync client. Text and audio sources are str/bytes or sync
    iterators; WebSocket methods send from a helper thread while the calling thread receives."""

    def __init__(
        self, base_url: str = common.DEFAULT_BASE_URL, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- the routes (voxserve.client.protocol) ---------------------------------------------------

    health = _blocking(routes.health)
    ready = _blocking(routes.ready)
    voices = _blocking(routes.voices)
    models = _blocking(routes.models)
    model = _blocking(routes.model)
    speech = _blocking(routes.speech)
    stream_speech = _generating(routes.stream_speech)
    transcribe = _blocking(routes.transcribe)
    translate = _blocking(routes.translate)
    stream_transcription = _generating(routes.stream_transcription)
    phonemize = _blocking(routes.phonemize)
    generate_from_phonemes = _blocking(routes.generate_from_phonemes)
    captioned_speech = _blocking(routes.captioned_speech)

    create_speech_job = _blocking(jobs.create_speech_job)
    get_speech_job = _blocking(jobs.get_speech_job)
    list_speech_jobs = _blocking(jobs.list_speech_jobs)
    wait_speech_job = _polling(jobs.wait_speech_job)
    speech_job_audio = _blocking(jobs.speech_job_audio)
    delete_speech_job = _blocking(jobs.delete_speech_job)

    def download_speech_job(self, job_id: str, file: FileTarget) -> int:
        """Stream the finished file to ``file`` (a path or a binary file object); the bytes written."""
        with self._open_stream(jobs.speech_job_download(job_id)) as chunks, contextlib.ExitStack() as stack:
            out = stack.enter_context(open(file, "wb")) if isinstance(file, str | os.PathLike) else file
            return sum(out.write(chunk) for chunk in chunks)

    speak_stream_events = _generating(speak.speak_stream_events)
    speak_stream = _generating(speak.speak_stream)
    transcribe_stream = _generating(transcribe_protocol.transcribe_stream)
    realtime_transcribe = _generating(realtime.realtime_transcribe)
    chat = _chatting(chat_protocol.chat)
    ask = _asking(chat_protocol.ask)

    # --- HTTP ------------------------------------------------------------------------------------

    def _call(self, call: Call[T]) -> T:
        request = call.request
        file = request.upload.read() if request.upload is not None else None
        try:
            response = self._http.request(request.method, request.path, **request.options(file))
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        return call.result(response)

    @contextlib.contextmanager
    def _open_stream(self, call: StreamCall[T]) -> Generator[Iterator[T], None, None]:
        request = call.request
        file = request.upload.read() if request.upload is not None else None
        try:
            with self._http.stream(request.method, request.path, **request.options(file)) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, response.read())
                yield _decoded(call.decoder(), response.iter_bytes(call.chunk_bytes))
        except httpx.TransportError as exc:
            # Also a body aborted mid-stream: the server never ends audio short silently.
            raise transport_error(exc) from exc

    def _stream(self, call: StreamCall[T]) -> Generator[T, None, None]:
        with self._open_stream(call) as items:
            yield from items

    # --- WebSockets --------------------------------------------------------------------------------

    def _open(self, protocol: Handshake) -> ClientConnection:
        """A connection to the protocol's route, its handshake done."""
        ws = self._connect(protocol.path)
        try:
            replies = protocol.start()
            while True:
                with contextlib.suppress(ConnectionClosed):  # a refusal is read next (see _answer)
                    for message in replies:
                        ws.send(message)
                if protocol.opened:
                    return ws
                replies = protocol.accept(self._answer(ws))
        except BaseException:
            ws.close()
            raise

    def _connect(self, path: str) -> ClientConnection:
        # legacy=True: the connection is returned, not entered as a context manager (a chat session
        # outlives this call); websockets 17.1 warns without the flag.
        try:
            ws: ClientConnection = connect(self.ws_base + path, legacy=True, **self._ws_options())
        except common.CONNECT_ERRORS as exc:
            raise common.handshake_error(exc) from exc
        return ws

    def _answer(self, ws: ClientConnection) -> str | bytes:
        """The next message of a handshake. A server that refuses (no LLM, a bad config) may have
        closed already: its error event, or its close, is what is read."""
        try:
            return ws.recv(timeout=self.timeout)
        except ConnectionClosed as exc:
            raise common.no_answer(exc) from None
        except TimeoutError:
            raise ClientError("no answer from the server", code="timeout") from None

    def _session(self, protocol: StreamProtocol[T]) -> Generator[T, None, None]:
        with self._open(protocol) as ws:
            progress = threading.Condition()

            def send() -> None:
                for item in _items(protocol):
                    for piece in protocol.pieces(item):
                        with progress:
                            progress.wait_for(functools.partial(protocol.can_send, piece), SEND_WAIT_S)
                        ws.send(protocol.send(piece))
                for message in protocol.finish():
                    ws.send(message)

            with contextlib.closing(_messages(ws, send)) as messages:
                for message in messages:
                    events = protocol.receive(message)
                    with progress:
                        progress.notify_all()
                    yield from events
                    if protocol.finished:
                        return
            error = protocol.closed(ws.close_code, ws.close_reason or "")
            if error is not None:
                raise error


def _decoded(decoder: Decoder[T], chunks: Iterable[bytes]) -> Iterator[T]:
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.end()


def _items(protocol: StreamProtocol[Any]) -> Iterable[Any]:
    """The source's items: one str/bytes, or a sync iterable's."""
    if protocol.single():
        return (protocol.source,)
    if isinstance(protocol.source, AsyncIterable):
        raise common.sync_source_error(protocol)
    source: Iterable[Any] = protocol.source
    return source


def _messages(ws: ClientConnection, sender: Callable[[], None]) -> Generator[str | bytes, None, None]:
    """Messages until the server closes, while ``sender()`` runs in a thread; a sender failure is
    raised here (the sender closes the socket to wake this loop)."""
    failure: list[BaseException] = []

    def send() -> None:
        try:
            sender()
        except ConnectionClosed:
            pass  # the receiving side reports why
        except Exception as exc:
            failure.append(exc)
            ws.close(1000, "client input failed")

    thread = threading.Thread(target=send, name="voxserve-client-send", daemon=True)
    thread.start()
    try:
        while True:
            try:
                message = ws.recv()
            except ConnectionClosed as exc:
                thread.join(5)
                common.raise_closed(exc, failure)
                return
            yield message
    finally:
        # Closing stops a sender blocked on the socket; one blocked in the caller's iterator
        # ends at its next item (it is a daemon thread either way).
        ws.close()
        thread.join(1)


class ChatSession:
    """A ``WS /v1/stream/chat`` session of :class:`Client` (from :meth:`Client.chat`): the methods of
    :class:`~voxserve.client.AsyncChatSession`, blocking, on websockets' sync client. Sending is
    thread-safe: a microphone thread may call :meth:`send_audio` while another thread iterates."""

    def __init__(self, client: Client, chat: ChatProtocol) -> None:
        self._client = client
        self._chat = chat
        self._ws: ClientConnection | None = None
        self.ready: dict[str, Any] = {}
        """The server's ``ready`` event (``voice``, ``response_format``, ``sample_rate``, ``llm_model``)."""

    def open(self) -> ChatSession:
        if self._ws is not None:
            raise RuntimeError("the chat is already open")
        self._ws = self._client._open(self._chat)
        self.ready = self._chat.ready
        return self

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    def __enter__(self) -> ChatSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: str | bytes) -> None:
        if self._ws is None:
            raise RuntimeError(NOT_OPEN)
        try:
            self._ws.send(message)
        except ConnectionClosed as exc:
            raise common.sent_after_close(exc) from None

    def say(self, text: str) -> None:
        """A typed user turn (see :meth:`AsyncChatSession.say`)."""
        self._send(self._chat.say(text))

    def send_audio(self, pcm: bytes) -> None:
        """Microphone audio (see :meth:`AsyncChatSession.send_audio`)."""
        for frame in self._chat.audio(pcm):
            self._send(frame)

    def cancel(self) -> None:
        """Stop the current answer."""
        self._send(self._chat.cancel)

    def end(self) -> None:
        """Finish the last turn and its answer; then the server closes the chat."""
        self._send(self._chat.end)

    def receive(self, timeout: float | None = None) -> ChatEvent | None:
        """The next event; ``None`` once the server has closed the chat normally. ``timeout``: seconds
        to wait for it (then ``ClientError`` ``timeout``), or forever."""
        if self._ws is None:
            raise RuntimeError(NOT_OPEN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                message = self._ws.recv(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except ConnectionClosed as exc:
                common.raise_closed(exc)
                return None
            except TimeoutError:
                raise ClientError("no event from the server in time", code="timeout") from None
            event = self._chat.receive(message)
            if event is not None:
                return event

    def __iter__(self) -> ChatSession:
        return self

    def __next__(self) -> ChatEvent:
        event = self.receive()
        if event is None:
            raise StopIteration
        return event

    def ask(self, text: str) -> tuple[str, bytes]:
        """Say ``text`` and ``end`` the chat once its answer is written (see
        :meth:`AsyncChatSession.ask`)."""
        answer = Answer(text)
        self.say(text)
        while (event := self.receive()) is not None:
            if answer.handle(event):
                self.end()
        return answer.result()
