"""voxserve's Python client: every route of a running server, sync and async.

:class:`AsyncClient` is built on ``httpx.AsyncClient`` and websockets' asyncio client; :class:`Client`
has the same methods on ``httpx.Client`` and websockets' sync client (no event loop per call)::

    from voxserve import Client

    with Client("http://127.0.0.1:8000") as client:
        mp3 = client.speech("Hello from voxserve.", voice="alloy")
        for chunk in client.speak_stream(["The answer", " is forty", "-two."]):
            ...  # s16le mono 24 kHz PCM, as soon as the first fragment is speakable
        answer, audio = client.ask("What is the capital of France?")  # WS /v1/stream/chat (an LLM)

``chat(...)`` opens a voice-chat session (typed turns, microphone audio, cancel, end) whose typed
events — :data:`ChatEvent` — are iterated while sending.

Every failure the server reports — an HTTP error envelope ``{"error": {"message", "type", "param",
"code"}}``, a WebSocket ``{"type": "error", "code", "message"}`` event or an abnormal close code — is
raised as :class:`ClientError` (a :class:`voxserve.errors.VoxserveError`) carrying the server's
``code``, ``message`` and HTTP ``status`` (or WebSocket ``close_code``). Transport failures (refused
connection, aborted body) are :class:`ClientError` too, with code ``connection_error``.

Streaming methods are generators: iterate them to the end, or close them (``contextlib.closing`` /
``contextlib.aclosing``) when you stop early, so the connection is released at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import mimetypes
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias, cast

import httpx
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from voxserve.errors import VoxserveError
from voxserve.runtime.bridge import iterate_in_thread

__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncClient",
    "AudioSource",
    "AsyncChatSession",
    "CaptionedSpeech",
    "ChatCancelled",
    "ChatError",
    "ChatEvent",
    "ChatResponseDelta",
    "ChatResponseDone",
    "ChatResponseStarted",
    "ChatSession",
    "ChatSpeechStarted",
    "ChatTranscript",
    "Client",
    "ClientError",
    "FileTarget",
    "RealtimeCompleted",
    "RealtimeDelta",
    "RealtimeEvent",
    "RealtimeFailed",
    "Sentence",
    "SpeakDone",
    "SpeakEvent",
    "TextSource",
    "TranscriptResult",
    "TranscriptionDelta",
    "TranscriptionDone",
    "TranscriptionEvent",
    "Word",
    "error_from_close",
    "error_from_event",
    "error_from_response",
    "SSEParser",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

TextSource: TypeAlias = str | Iterable[str] | AsyncIterable[str]
"""Text to speak: one string, or pieces (LLM tokens) from a sync or async iterator."""

AudioSource: TypeAlias = bytes | Iterable[bytes] | AsyncIterable[bytes]
"""Raw PCM to transcribe: one buffer, or chunks from a sync or async iterator (a microphone)."""

FileInput: TypeAlias = bytes | str | os.PathLike[str] | IO[bytes]

_TEXT_PIECE_CHARS = 1000
"""Longest text message sent (the server accepts ``max_input_chars``, 4096 by default)."""
_AUDIO_FRAME_BYTES = 32000
"""Binary audio frames are cut to this size (the server's limit is 256 KiB)."""
_REALTIME_APPEND_BYTES = 48000
"""Raw bytes per ``input_audio_buffer.append`` (1 s of 24 kHz pcm16; 64 KB once in base64)."""
_BACKLOG_WAIT_S = 10.0
"""How long a text sender waits for speech to catch up before sending anyway."""
_CLOSE_CODES = {
    1001: "going_away",
    1003: "unsupported_data",
    1006: "connection_lost",
    1007: "invalid_data",
    1008: "policy_violation",
    1009: "message_too_big",
    1011: "server_error",
    1013: "at_capacity",
}
_JSON_FORMATS = ("json", "verbose_json")

# --- errors ------------------------------------------------------------------------------------------


class ClientError(VoxserveError):
    """An error reported by the server (or the connection to it).

    ``code`` is the server's stable error code (``unknown_voice``, ``at_capacity``, ...); ``status``
    the HTTP status (``None`` on a WebSocket); ``close_code`` the WebSocket close code of an abnormal
    close (``None`` for HTTP and for an error event, which names the problem itself).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        close_code: int | None = None,
        error_type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, code=code, param=param)
        self._status = status
        self._close_code = close_code
        self._error_type = error_type or (
            "server_error" if (status or 500) >= 500 else "invalid_request_error"
        )

    # The base class declares these per subclass; a client error carries the server's values.
    @property
    def status(self) -> int | None:  # type: ignore[override]
        return self._status

    @property
    def close_code(self) -> int | None:  # type: ignore[override]
        return self._close_code

    @property
    def error_type(self) -> str:  # type: ignore[override]
        return self._error_type

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else f"close {self.close_code}"
        if self.status is None and self.close_code is None:
            where = "error event"
        return f"{self.message} ({self.code}, {where})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_client_error, (self.message, self.code, self.status, self.close_code, self.param))


def _rebuild_client_error(
    message: str, code: str, status: int | None, close_code: int | None, param: str | None
) -> ClientError:
    return ClientError(message, code=code, status=status, close_code=close_code, param=param)


def error_from_response(status: int, body: bytes | str) -> ClientError:
    """The :class:`ClientError` for an HTTP error response (OpenAI's envelope, or anything else)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return ClientError(
            str(err.get("message") or f"HTTP {status}"),
            code=str(err.get("code") or f"http_{status}"),
            status=status,
            error_type=str(err["type"]) if err.get("type") else None,
            param=str(err["param"]) if err.get("param") is not None else None,
        )
    if isinstance(obj, dict) and isinstance(obj.get("detail"), str):
        text = obj["detail"]
    return ClientError(text.strip()[:300] or f"HTTP {status}", code=f"http_{status}", status=status)


def error_from_event(event: dict[str, Any], close_code: int | None = None) -> ClientError:
    """The :class:`ClientError` for a WebSocket error event: voxserve's ``{"type": "error", "code",
    "message"}`` or the Realtime API's ``{"type": "error", "error": {...}}``."""
    body = event.get("error") if isinstance(event.get("error"), dict) else event
    assert isinstance(body, dict)
    return ClientError(
        str(body.get("message") or "the server reported an error"),
        code=str(body.get("code") or "server_error"),
        close_code=close_code,
        error_type=str(body["type"]) if body.get("type") not in (None, "error") else None,
        param=str(body["param"]) if body.get("param") is not None else None,
    )


def error_from_close(code: int | None, reason: str = "") -> ClientError | None:
    """The :class:`ClientError` for a WebSocket close, or ``None`` for a normal one (1000)."""
    if code == 1000:
        return None
    name = _CLOSE_CODES.get(code or 1006, f"close_{code}")
    return ClientError(
        reason or f"the server closed the connection ({name})", code=name, close_code=code or 1006
    )


def _closed_error(exc: ConnectionClosed) -> ClientError | None:
    if exc.rcvd is None:
        return error_from_close(1006, "the connection was lost")
    return error_from_close(exc.rcvd.code, exc.rcvd.reason)


def _handshake_error(exc: Exception) -> ClientError:
    if isinstance(exc, InvalidStatus):
        return error_from_response(exc.response.status_code, bytes(exc.response.body or b""))
    return ClientError(f"could not connect: {exc}", code="connection_error")


# --- server-sent events ----------------------------------------------------------------------------


class SSEParser:
    """Server-sent events, line by line: :meth:`feed` returns each complete event's JSON ``data``."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        line = line.rstrip("\r\n")
        if line:
            if line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
            return None  # comments, event names and ids carry nothing we need
        return self.end()

    def end(self) -> dict[str, Any] | None:
        """The event being built (at a blank line, or the end of the stream)."""
        data, self._data = "\n".join(self._data), []
        if not data or data == "[DONE]":
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            raise ClientError("the server sent an event that is not JSON", code="invalid_event") from None
        return obj if isinstance(obj, dict) else None


# --- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """A word with its times, in seconds of audio, and (for speech) the input characters it speaks."""

    word: str
    start_s: float
    end_s: float
    source_start: int | None = None
    """Where the word's source starts in the text sent (``$100`` for "hundred"); None if unknown."""
    source_end: int | None = None


def _word(w: dict[str, Any], start: str, end: str) -> Word:
    a, b = w.get("source_start"), w.get("source_end")
    return Word(
        str(w["word"]),
        float(w[start]),
        float(w[end]),
        int(a) if a is not None else None,
        int(b) if b is not None else None,
    )


@dataclass(frozen=True)
class Sentence:
    """A fragment of text whose audio starts next, at ``start_s`` seconds of the stream's audio."""

    text: str
    start_s: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class SpeakDone:
    """Everything was spoken: ``audio_s`` seconds of audio in all."""

    audio_s: float


SpeakEvent: TypeAlias = bytes | Sentence | SpeakDone
"""What :meth:`AsyncClient.speak_stream_events` yields: audio bytes, or an event."""


@dataclass(frozen=True)
class TranscriptResult:
    """A result of ``WS /v1/stream/transcribe``: an interim (``is_final`` false: replaces the previous
    interim) or a final (never revised). ``end_s``: seconds of audio from the start of the stream."""

    transcript: str
    is_final: bool
    stability: float
    end_s: float
    confidence: float = 0.0


@dataclass(frozen=True)
class TranscriptionDelta:
    """A recognised segment of a streamed transcription (``stream=true``)."""

    delta: str


@dataclass(frozen=True)
class TranscriptionDone:
    """The end of a streamed transcription, with the full text."""

    text: str


TranscriptionEvent: TypeAlias = TranscriptionDelta | TranscriptionDone


@dataclass(frozen=True)
class RealtimeDelta:
    """Newly confirmed words of item ``item_id`` (append-only)."""

    item_id: str
    delta: str


@dataclass(frozen=True)
class RealtimeCompleted:
    """The final transcript of item ``item_id`` (one utterance)."""

    item_id: str
    transcript: str


@dataclass(frozen=True)
class RealtimeFailed:
    """Item ``item_id`` could not be transcribed; the session goes on."""

    item_id: str
    code: str
    message: str


RealtimeEvent: TypeAlias = RealtimeDelta | RealtimeCompleted | RealtimeFailed


@dataclass(frozen=True)
class CaptionedSpeech:
    """Audio with word timestamps (``/dev/captioned_speech``)."""

    audio: bytes
    audio_format: str
    words: tuple[Word, ...]


@dataclass(frozen=True)
class ChatTranscript:
    """What the user said (``WS /v1/stream/chat``): an interim (``is_final`` false: replaces the
    previous interim) or a final, which becomes a user turn."""

    text: str
    is_final: bool
    stability: float = 0.0


@dataclass(frozen=True)
class ChatSpeechStarted:
    """The server's VAD heard the user start speaking, ``time_s`` seconds into the audio sent."""

    time_s: float


@dataclass(frozen=True)
class ChatResponseStarted:
    """The LLM starts answering ``user_text`` (a final transcript or a typed turn)."""

    response_id: int
    user_text: str


@dataclass(frozen=True)
class ChatResponseDelta:
    """More text of answer ``response_id``, as the LLM writes it."""

    response_id: int
    delta: str


@dataclass(frozen=True)
class ChatResponseDone:
    """Answer ``response_id`` is complete (``interrupted``: cut short by barge-in or ``cancel``; its
    audio may still be coming unless it was interrupted)."""

    response_id: int
    text: str
    interrupted: bool


@dataclass(frozen=True)
class ChatCancelled:
    """A cancel took effect: no audio of the dropped answer follows; stop playback and drop the
    audio buffered so far."""

    dropped_fragments: int


@dataclass(frozen=True)
class ChatError:
    """A non-fatal error event (``invalid_text``, ``llm_unavailable``, ...): the chat goes on. Fatal
    errors (a bad config, no LLM configured, an abnormal close) are raised as :class:`ClientError`."""

    code: str
    message: str


ChatEvent: TypeAlias = (
    bytes
    | Sentence
    | ChatTranscript
    | ChatSpeechStarted
    | ChatResponseStarted
    | ChatResponseDelta
    | ChatResponseDone
    | ChatCancelled
    | ChatError
)
"""What a chat session yields: the answers' audio as ``bytes`` (one continuous stream in the chosen
``response_format``), a :class:`Sentence` before each fragment's audio, and the chat events."""


def _sentence(event: dict[str, Any]) -> Sentence:
    return Sentence(
        str(event.get("text", "")),
        float(event.get("start_s", 0.0)),
        tuple(_word(w, "start_s", "end_s") for w in event.get("words", ())),
    )


def _results(event: dict[str, Any]) -> list[TranscriptResult]:
    out = []
    for r in event.get("results", ()):
        alternatives = r.get("alternatives") or [{}]
        out.append(
            TranscriptResult(
                str(alternatives[0].get("transcript", "")),
                bool(r.get("is_final")),
                float(r.get("stability", 0.0)),
                float(r.get("result_end_time", 0.0)),
                float(alternatives[0].get("confidence", 0.0)),
            )
        )
    return out


def _transcription_event(event: dict[str, Any]) -> TranscriptionEvent | None:
    kind = event.get("type")
    if kind == "transcript.text.delta":
        return TranscriptionDelta(str(event.get("delta", "")))
    if kind == "transcript.text.done":
        return TranscriptionDone(str(event.get("text", "")))
    if kind == "error":
        raise error_from_event(event)
    return None


# --- request bodies (shared by both clients) ---------------------------------------------------------


def _speech_body(
    text: str,
    voice: str,
    model: str,
    response_format: str,
    speed: float,
    instructions: str | None,
    stream: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "input": text,
        "voice": voice,
        "response_format": response_format,
        "speed": speed,
        "stream": stream,
        **extra,
    }
    if instructions is not None:
        body["instructions"] = instructions
    return body


def _transcription_form(
    model: str,
    language: str | None,
    prompt: str | None,
    response_format: str,
    temperature: float | None,
    timestamp_granularities: Iterable[str] | None,
    stream: bool,
) -> dict[str, Any]:
    form: dict[str, Any] = {"model": model, "response_format": response_format}
    if language is not None:
        form["language"] = language
    if prompt is not None:
        form["prompt"] = prompt
    if temperature is not None:
        form["temperature"] = str(temperature)
    if timestamp_granularities:
        form["timestamp_granularities[]"] = list(timestamp_granularities)
    if stream:
        form["stream"] = "true"
    return form


def _file_part(file: FileInput, filename: str | None) -> tuple[str, bytes, str]:
    """(filename, content, content type) for a multipart upload (reads a path or a file object)."""
    if isinstance(file, bytes | bytearray | memoryview):
        data, name = bytes(file), filename or "audio.wav"
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        data, name = path.read_bytes(), filename or path.name
    else:
        data = file.read()
        name = filename or Path(str(getattr(file, "name", "") or "audio.wav")).name
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, content_type


def _transcription_result(response: httpx.Response, response_format: str) -> str | dict[str, Any]:
    if response_format in _JSON_FORMATS:
        result: dict[str, Any] = response.json()
        return result
    return response.text


def _captioned(obj: dict[str, Any]) -> CaptionedSpeech:
    return CaptionedSpeech(
        base64.b64decode(obj.get("audio", "")),
        str(obj.get("audio_format", "")),
        tuple(_word(w, "start_time", "end_time") for w in obj.get("timestamps", ())),
    )


def _speak_config(voice: str | None, response_format: str, speed: float, model: str | None) -> str:
    cfg: dict[str, Any] = {"type": "config", "response_format": response_format, "speed": speed}
    if voice is not None:
        cfg["voice"] = voice
    if model is not None:
        cfg["model"] = model
    return json.dumps(cfg)


def _stream_config(sample_rate_hz: int, encoding: str, language: str | None, interim_results: bool) -> str:
    return json.dumps(
        {
            "type": "config",
            "sample_rate_hz": sample_rate_hz,
            "encoding": encoding,
            "language": language,
            "interim_results": interim_results,
        }
    )


def _realtime_update(
    model: str, language: str | None, prompt: str | None, audio_format: str, turn_detection: Any
) -> str:
    fmt: dict[str, Any] = {"type": audio_format}
    if audio_format == "audio/pcm":
        fmt["rate"] = 24000
    transcription: dict[str, Any] = {"model": model, "language": language}
    if prompt is not None:
        transcription["prompt"] = prompt
    td = {"type": "server_vad"} if turn_detection == "server_vad" else turn_detection
    return json.dumps(
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"format": fmt, "transcription": transcription, "turn_detection": td}},
            },
        }
    )


def _append(data: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})


_COMMIT = json.dumps({"type": "input_audio_buffer.commit", "event_id": "voxserve_client_commit"})
# The barrier after the last audio: the server answers ``input_audio_buffer.cleared`` once it has
# handled every earlier event, so every utterance it will ever commit has been committed by then.
_BARRIER = json.dumps({"type": "input_audio_buffer.clear", "event_id": "voxserve_client_end"})
_END = json.dumps({"type": "end"})


class _RealtimeTracker:
    """Knows when a realtime session has delivered every transcript after the audio ended."""

    def __init__(self) -> None:
        self.committed: set[str] = set()
        self.finished: set[str] = set()
        self.ended = False

    def handle(self, event: dict[str, Any]) -> RealtimeEvent | None:
        kind = event.get("type")
        item = str(event.get("item_id", ""))
        if kind == "input_audio_buffer.committed":
            self.committed.add(item)
        elif kind == "conversation.item.input_audio_transcription.delta":
            return RealtimeDelta(item, str(event.get("delta", "")))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.finished.add(item)
            return RealtimeCompleted(item, str(event.get("transcript", "")))
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.finished.add(item)
            err = event.get("error") or {}
            return RealtimeFailed(item, str(err.get("code", "")), str(err.get("message", "")))
        elif kind == "input_audio_buffer.cleared":
            self.ended = True
        elif kind == "error":
            err = event.get("error") or {}
            if err.get("code") == "input_audio_buffer_commit_empty" and err.get("event_id") in (
                None,
                "voxserve_client_commit",
            ):
                return None  # the audio ended between utterances: nothing left to commit
            raise error_from_event(event)
        return None

    @property
    def done(self) -> bool:
        return self.ended and self.committed <= self.finished


def _chat_config(
    voice: str | None,
    response_format: str,
    speed: float,
    sample_rate_hz: int,
    encoding: str,
    language: str | None,
    system_prompt: str | None,
    barge_in: bool,
    interim_results: bool,
) -> str:
    cfg: dict[str, Any] = {
        "type": "config",
        "response_format": response_format,
        "speed": speed,
        "sample_rate_hz": sample_rate_hz,
        "encoding": encoding,
        "language": language,
        "barge_in": barge_in,
        "interim_results": interim_results,
    }
    if voice is not None:
        cfg["voice"] = voice
    if system_prompt is not None:
        cfg["system_prompt"] = system_prompt
    return json.dumps(cfg)


def _chat_event(message: str | bytes) -> ChatEvent | None:
    """The typed event for a ``WS /v1/stream/chat`` message (``None`` for ``ready`` and unknown types)."""
    if isinstance(message, bytes):
        return message
    try:
        event = json.loads(message)
    except ValueError:
        raise ClientError("the server sent an event that is not JSON", code="invalid_event") from None
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if kind == "transcript":
        return ChatTranscript(
            str(event.get("text", "")), bool(event.get("is_final")), float(event.get("stability", 0.0))
        )
    if kind == "speech_started":
        return ChatSpeechStarted(float(event.get("time", 0.0)))
    if kind == "response.started":
        return ChatResponseStarted(int(event.get("response_id", 0)), str(event.get("user_text", "")))
    if kind == "response.text.delta":
        return ChatResponseDelta(int(event.get("response_id", 0)), str(event.get("delta", "")))
    if kind == "response.done":
        return ChatResponseDone(
            int(event.get("response_id", 0)), str(event.get("text", "")), bool(event.get("interrupted"))
        )
    if kind == "sentence":
        return _sentence(event)
    if kind == "cancelled":
        return ChatCancelled(int(event.get("dropped_fragments", 0)))
    if kind == "error":
        err = error_from_event(event)
        return ChatError(err.code, err.message)
    return None


class _Answer:
    """Collects the answer to one typed turn (:meth:`ChatSession.ask`): its text, and the audio from
    its first ``sentence`` on (audio of an earlier answer still arriving comes before it)."""

    def __init__(self, text: str) -> None:
        self.user_text = text.strip()
        self.response_id: int | None = None
        self.text: str | None = None
        self.speaking = False
        self.audio = bytearray()

    def handle(self, event: ChatEvent) -> bool:
        """Take the next event; true once the answer's text is complete (time to send ``end``)."""
        if isinstance(event, ChatError):
            raise ClientError(event.message, code=event.code)
        if self.response_id is None:
            if isinstance(event, ChatResponseStarted) and event.user_text == self.user_text:
                self.response_id = event.response_id
            return False
        if isinstance(event, Sentence):
            self.speaking = True
        elif isinstance(event, bytes):
            if self.speaking:
                self.audio += event
        elif isinstance(event, ChatResponseDone):
            done = event.response_id == self.response_id and self.text is None
            if done:
                self.text = event.text
            return done
        return False

    def result(self) -> tuple[str, bytes]:
        if self.text is None:
            raise ClientError("the chat ended before the answer was complete", code="closed", close_code=1000)
        return self.text, bytes(self.audio)


def _sent_after_close(exc: ConnectionClosed) -> ClientError:
    return _closed_error(exc) or ClientError("the chat has ended", code="closed", close_code=1000)


_NOT_OPEN = "the chat is not open: use it as a context manager (or call open() first)"
_CANCEL = json.dumps({"type": "cancel"})


# --- text and audio pieces ---------------------------------------------------------------------------


def _cut(text: str, size: int) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"text pieces must be str, not {type(text).__name__}")
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


def _frames(data: bytes, size: int) -> list[bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"audio chunks must be bytes, not {type(data).__name__}")
    data = bytes(data)
    return [data[i : i + size] for i in range(0, len(data), size)]


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


async def text_pieces(source: TextSource, size: int = _TEXT_PIECE_CHARS) -> AsyncGenerator[str, None]:
    """The pieces of a text source, none longer than ``size`` characters."""
    if isinstance(source, str):
        for piece in _cut(source, size):
            yield piece
        return
    async with contextlib.aclosing(_aiter_source(source)) as items:
        async for item in items:
            for piece in _cut(item, size):
                yield piece


def _sync_text_pieces(
    source: str | Iterable[str], size: int = _TEXT_PIECE_CHARS
) -> Generator[str, None, None]:
    if isinstance(source, str):
        yield from _cut(source, size)
        return
    if isinstance(source, AsyncIterable):
        raise TypeError("the sync Client takes str or a sync iterator; use AsyncClient for async iterators")
    for item in source:
        yield from _cut(item, size)


async def _audio_frames(source: AudioSource, size: int) -> AsyncGenerator[bytes, None]:
    if isinstance(source, bytes | bytearray | memoryview):
        for frame in _frames(bytes(source), size):
            yield frame
        return
    async with contextlib.aclosing(_aiter_source(source)) as items:
        async for item in items:
            for frame in _frames(item, size):
                yield frame


def _sync_audio_frames(source: bytes | Iterable[bytes], size: int) -> Generator[bytes, None, None]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield from _frames(bytes(source), size)
        return
    if isinstance(source, AsyncIterable):
        raise TypeError("the sync Client takes bytes or a sync iterator; use AsyncClient for async iterators")
    for item in source:
        yield from _frames(item, size)


class _Backlog:
    """Keeps the text sent but not yet spoken under a limit (the server refuses more than
    ``max_pending_chars`` with ``backlog_full``). ``sentence`` events tell what has been spoken."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.spoken = 0
        self._progress = asyncio.Event()
        self._cond = threading.Condition()

    def pending(self, extra: int) -> bool:
        return self.sent > self.spoken and self.sent - self.spoken + extra > self.limit

    def on_sentence(self, text: str) -> None:
        with self._cond:
            self.spoken += len(text)
            self._cond.notify_all()
        self._progress.set()

    async def room(self, extra: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BACKLOG_WAIT_S
        while self.pending(extra) and loop.time() < deadline:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), deadline - loop.time())

    def room_sync(self, extra: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self.pending(extra), _BACKLOG_WAIT_S)


_JOBS_PATH = "/v1/audio/speech/jobs"
_JOB_POLL_S = 1.0
"""Default interval between two polls of a speech job's status."""
_DOWNLOAD_CHUNK = 256 * 1024

FileTarget: TypeAlias = str | os.PathLike[str] | IO[bytes]
"""Where a download goes: a path (created or truncated) or a binary file object."""


def _job_body(
    text: str, voice: str, model: str, response_format: str, speed: float, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": model,
        "input": text,
        "voice": voice,
        "response_format": response_format,
        "speed": speed,
        **extra,
    }


def _job_outcome(job: dict[str, Any]) -> dict[str, Any] | None:
    """The job if it succeeded, None while it is queued or running; raises if it failed or was
    cancelled (with the job's own error code, such as ``synthesis_failed``)."""
    status = job.get("status")
    if status == "succeeded":
        return job
    if status in ("queued", "running"):
        return None
    error = job.get("error") or {}
    code = str(error.get("code") or f"job_{status}")
    message = str(error.get("message") or f"the job is {status}")
    raise ClientError(f"speech job {job.get('id')} {status}: {message}", code=code)


def _job_timeout(job_id: str, timeout: float) -> ClientError:
    return ClientError(f"speech job {job_id} did not finish within {timeout:g} s", code="timeout")


# --- the clients -------------------------------------------------------------------------------------


class _Common:
    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.startswith("https://"):
            self.ws_base = "wss://" + self.base_url[len("https://") :]
        elif self.base_url.startswith("http://"):
            self.ws_base = "ws://" + self.base_url[len("http://") :]
        else:
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _ws_options(self) -> dict[str, Any]:
        return {
            "additional_headers": self.headers or None,
            "open_timeout": self.timeout,
            "close_timeout": 5,
            "max_size": 16 * 2**20,
        }


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from_response(response.status_code, response.content)
    return response


class AsyncClient(_Common):
    """An asyncio client for a voxserve server (see the module docstring)."""

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- HTTP ----------------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"{type(exc).__name__}: {exc}", code="connection_error") from exc
        return _check(response)

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, path: str, **kwargs: Any) -> AsyncGenerator[httpx.Response, None]:
        try:
            async with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, bytes(await response.aread()))
                yield response
        except httpx.TransportError as exc:
            # Also a body aborted mid-stream: the server never ends audio short silently.
            raise ClientError(f"{type(exc).__name__}: {exc}", code="connection_error") from exc

    async def health(self) -> dict[str, Any]:
        """``GET /health``."""
        result: dict[str, Any] = (await self._request("GET", "/health")).json()
        return result

    async def ready(self) -> dict[str, Any]:
        """``GET /ready``: the engines' state (``status`` is ``ready`` or ``starting``; never raises 503)."""
        try:
            response = await self._http.get("/ready")
        except httpx.TransportError as exc:
            raise ClientError(f"{type(exc).__name__}: {exc}", code="connection_error") from exc
        if response.status_code not in (200, 503):
            _check(response)
        result: dict[str, Any] = response.json()
        return result

    async def voices(self) -> dict[str, Any]:
        """``GET /v1/audio/voices``: ``{"voices": [...], "aliases": {...}, "default": "..."}``."""
        result: dict[str, Any] = (await self._request("GET", "/v1/audio/voices")).json()
        return result

    async def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the model objects."""
        result: list[dict[str, Any]] = (await self._request("GET", "/v1/models")).json()["data"]
        return result

    async def model(self, model_id: str) -> dict[str, Any]:
        """``GET /v1/models/{id}`` (``model_not_found`` if it is not served)."""
        result: dict[str, Any] = (await self._request("GET", f"/v1/models/{model_id}")).json()
        return result

    async def speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "mp3",
        speed: float = 1.0,
        instructions: str | None = None,
        **extra: Any,
    ) -> bytes:
        """``POST /v1/audio/speech``: the whole file (exact container sizes). ``extra``: more fields
        (``volume_multiplier``, ``normalization_options``)."""
        body = _speech_body(text, voice, model, response_format, speed, instructions, False, extra)
        return (await self._request("POST", "/v1/audio/speech", json=body)).content

    async def stream_speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "mp3",
        speed: float = 1.0,
        instructions: str | None = None,
        **extra: Any,
    ) -> AsyncGenerator[bytes, None]:
        """``POST /v1/audio/speech``, streamed: audio chunks as the server synthesizes them."""
        body = _speech_body(text, voice, model, response_format, speed, instructions, True, extra)
        async with self._stream("POST", "/v1/audio/speech", json=body) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def transcribe(
        self,
        file: FileInput,
        *,
        model: str = "whisper-1",
        language: str | None = None,
        prompt: str | None = None,
        response_format: str = "json",
        temperature: float | None = None,
        timestamp_granularities: Iterable[str] | None = None,
        filename: str | None = None,
    ) -> str | dict[str, Any]:
        """``POST /v1/audio/transcriptions``: a dict for ``json``/``verbose_json``, else the text
        (``text``, ``srt``, ``vtt``). ``file``: bytes, a path or a binary file object."""
        part = await asyncio.to_thread(_file_part, file, filename)
        form = _transcription_form(
            model, language, prompt, response_format, temperature, timestamp_granularities, False
        )
        response = await self._request("POST", "/v1/audio/transcriptions", data=form, files={"file": part})
        return _transcription_result(response, response_format)

    async def translate(
        self,
        file: FileInput,
        *,
        model: str = "whisper-1",
        prompt: str | None = None,
        response_format: str = "json",
        temperature: float | None = None,
        filename: str | None = None,
    ) -> str | dict[str, Any]:
        """``POST /v1/audio/translations`` (English text), shaped like :meth:`transcribe`."""
        part = await asyncio.to_thread(_file_part, file, filename)
        form = _transcription_form(model, None, prompt, response_format, temperature, None, False)
        response = await self._request("POST", "/v1/audio/translations", data=form, files={"file": part})
        return _transcription_result(response, response_format)

    async def stream_transcription(
        self,
        file: FileInput,
        *,
        model: str = "whisper-1",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        filename: str | None = None,
    ) -> AsyncGenerator[TranscriptionEvent, None]:
        """``POST /v1/audio/transcriptions`` with ``stream=true``: a :class:`TranscriptionDelta` per
        recognised segment, then one :class:`TranscriptionDone`."""
        part = await asyncio.to_thread(_file_part, file, filename)
        form = _transcription_form(model, language, prompt, "json", temperature, None, True)
        parser = SSEParser()
        async with self._stream("POST", "/v1/audio/transcriptions", data=form, files={"file": part}) as r:
            async for line in r.aiter_lines():
                event = parser.feed(line)
                result = _transcription_event(event) if event else None
                if result is not None:
                    yield result
            event = parser.end()
            result = _transcription_event(event) if event else None
            if result is not None:
                yield result

    async def phonemize(self, text: str, *, language: str = "a", voice: str | None = None) -> dict[str, Any]:
        """``POST /dev/phonemize``: ``{"phonemes", "tokens", "voice"}``."""
        body: dict[str, Any] = {"text": text, "language": language}
        if voice is not None:
            body["voice"] = voice
        result: dict[str, Any] = (await self._request("POST", "/dev/phonemize", json=body)).json()
        return result

    async def generate_from_phonemes(
        self, phonemes: str, *, voice: str, response_format: str = "wav", speed: float = 1.0
    ) -> bytes:
        """``POST /dev/generate_from_phonemes``: the audio file."""
        body = {"phonemes": phonemes, "voice": voice, "response_format": response_format, "speed": speed}
        return (await self._request("POST", "/dev/generate_from_phonemes", json=body)).content

    async def captioned_speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "wav",
        speed: float = 1.0,
    ) -> CaptionedSpeech:
        """``POST /dev/captioned_speech`` (not streamed): the audio and its word timestamps."""
        body = _speech_body(text, voice, model, response_format, speed, None, False, {})
        return _captioned((await self._request("POST", "/dev/captioned_speech", json=body)).json())

    # --- long texts: speech jobs -----------------------------------------------------------------------

    async def create_speech_job(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "mp3",
        speed: float = 1.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """``POST /v1/audio/speech/jobs``: queue a long text (up to the server's ``max_job_chars``) to be
        spoken into a file; the ``speech.job`` object (``id``, ``status``, ...). Everything is validated
        before it is accepted (``unknown_voice``, ``no_speakable_text``, ``too_many_jobs``, ...).
        ``extra``: more fields (``volume_multiplier``, ``normalization_options``, ``markup``)."""
        body = _job_body(text, voice, model, response_format, speed, extra)
        result: dict[str, Any] = (await self._request("POST", _JOBS_PATH, json=body)).json()
        return result

    async def get_speech_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/audio/speech/jobs/{id}``: status and progress (``chars_done`` of ``input_chars``)."""
        result: dict[str, Any] = (await self._request("GET", f"{_JOBS_PATH}/{job_id}")).json()
        return result

    async def list_speech_jobs(self) -> list[dict[str, Any]]:
        """``GET /v1/audio/speech/jobs``: every job the server still holds, oldest first."""
        result: list[dict[str, Any]] = (await self._request("GET", _JOBS_PATH)).json()["data"]
        return result

    async def wait_speech_job(
        self, job_id: str, *, max_wait_s: float | None = None, poll_interval_s: float = _JOB_POLL_S
    ) -> dict[str, Any]:
        """Poll the job until it has succeeded and return it. A failed or cancelled job raises
        :class:`ClientError` with the job's error code; ``max_wait_s`` without an end raises
        ``code="timeout"`` (the job goes on: wait again, or delete it)."""
        loop = asyncio.get_running_loop()
        deadline = None if max_wait_s is None else loop.time() + max_wait_s
        while (done := _job_outcome(await self.get_speech_job(job_id))) is None:
            if deadline is not None and loop.time() >= deadline:
                raise _job_timeout(job_id, max_wait_s or 0.0)
            wait = (
                poll_interval_s if deadline is None else min(poll_interval_s, max(deadline - loop.time(), 0))
            )
            await asyncio.sleep(wait)
        return done

    async def speech_job_audio(self, job_id: str) -> bytes:
        """``GET /v1/audio/speech/jobs/{id}/audio``: the finished file, in memory (``job_not_finished``
        until it has succeeded). For long jobs prefer :meth:`download_speech_job`."""
        return (await self._request("GET", f"{_JOBS_PATH}/{job_id}/audio")).content

    async def download_speech_job(self, job_id: str, file: FileTarget) -> int:
        """Stream the finished file to ``file`` (a path or a binary file object) without holding it in
        memory; the number of bytes written. File writes run in a thread."""
        async with self._stream("GET", f"{_JOBS_PATH}/{job_id}/audio") as response:
            owned = isinstance(file, str | os.PathLike)
            out = await asyncio.to_thread(open, file, "wb") if isinstance(file, str | os.PathLike) else file
            written = 0
            try:
                async for chunk in response.aiter_bytes(_DOWNLOAD_CHUNK):
                    written += await asyncio.to_thread(out.write, chunk)
            finally:
                if owned:
                    await asyncio.to_thread(out.close)
        return written

    async def delete_speech_job(self, job_id: str) -> dict[str, Any]:
        """``DELETE /v1/audio/speech/jobs/{id}``: cancel it if it is still running, delete its file;
        the job as it ended, with ``"deleted": true``."""
        result: dict[str, Any] = (await self._request("DELETE", f"{_JOBS_PATH}/{job_id}")).json()
        return result

    # --- WebSockets ----------------------------------------------------------------------------------

    async def _open_ws(self, path: str) -> AsyncConnection:
        try:
            return await async_connect(self.ws_base + path, **self._ws_options())
        except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
            raise _handshake_error(exc) from exc

    @contextlib.asynccontextmanager
    async def _connect(self, path: str) -> AsyncGenerator[AsyncConnection, None]:
        ws = await self._open_ws(path)
        try:
            yield ws
        finally:
            await ws.close()

    async def _first_event(self, ws: AsyncConnection) -> dict[str, Any]:
        """The first JSON event; an error event (or a close) is raised."""
        try:
            message = await asyncio.wait_for(ws.recv(), self.timeout)
        except ConnectionClosed as exc:
            raise _closed_error(exc) or ClientError(
                "the server closed the connection", code="closed", close_code=1000
            ) from None
        except TimeoutError:
            raise ClientError("no answer from the server", code="timeout") from None
        event: dict[str, Any] = json.loads(message)
        if event.get("type") == "error":
            raise error_from_event(event)
        return event

    @staticmethod
    async def _messages(ws: AsyncConnection, sender: Callable[[], Any]) -> AsyncGenerator[str | bytes, None]:
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
                    if failure:
                        raise failure[0] from None
                    error = _closed_error(exc)
                    if error is not None:
                        raise error from None
                    return
                yield message
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def speak_stream_events(
        self,
        text: TextSource,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        model: str | None = None,
        max_pending_chars: int = 8000,
    ) -> AsyncGenerator[SpeakEvent, None]:
        """``WS /v1/stream/speak``: send ``text`` (a str, or pieces from a sync or async iterator:
        LLM tokens) while receiving; yield audio ``bytes`` (one continuous stream in
        ``response_format``: ``pcm`` s16le 24 kHz, ``wav``, ``mp3``, ``opus``), a :class:`Sentence`
        before each fragment's audio, and :class:`SpeakDone` at the end.

        A sync iterator is read in a thread (a blocking LLM streamer never blocks the loop). Error
        events — a bad config, a fragment the engine failed on, more text than the server holds —
        are raised as :class:`ClientError`.
        """
        backlog = _Backlog(max_pending_chars)
        async with self._connect("/v1/stream/speak") as ws:
            await ws.send(_speak_config(voice, response_format, speed, model))
            await self._first_event(ws)

            async def send() -> None:
                async with contextlib.aclosing(text_pieces(text)) as pieces:
                    async for piece in pieces:
                        await backlog.room(len(piece))
                        backlog.sent += len(piece)
                        await ws.send(json.dumps({"type": "text", "text": piece}))
                await ws.send(_END)

            done = False
            async with contextlib.aclosing(self._messages(ws, send)) as messages:
                async for message in messages:
                    if isinstance(message, bytes):
                        yield message
                        continue
                    event = json.loads(message)
                    kind = event.get("type")
                    if kind == "sentence":
                        sentence = _sentence(event)
                        backlog.on_sentence(sentence.text)
                        yield sentence
                    elif kind == "done":
                        done = True
                        yield SpeakDone(float(event.get("audio_s", 0.0)))
                    elif kind == "error":
                        raise error_from_event(event)
            if not done:
                reason = ws.close_reason or "the server closed the session before it was done"
                raise ClientError(reason, code="closed", close_code=ws.close_code)

    async def speak_stream(
        self,
        text: TextSource,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        model: str | None = None,
        on_sentence: Callable[[Sentence], Any] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """:meth:`speak_stream_events`, audio only; ``on_sentence`` is called with each
        :class:`Sentence` just before its audio."""
        events = self.speak_stream_events(
            text, voice=voice, response_format=response_format, speed=speed, model=model
        )
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, bytes):
                    yield event
                elif isinstance(event, Sentence) and on_sentence is not None:
                    on_sentence(event)

    async def transcribe_stream(
        self,
        audio: AudioSource,
        *,
        sample_rate_hz: int = 16000,
        encoding: Literal["linear16", "float32"] = "linear16",
        language: str | None = "en",
        interim_results: bool = True,
    ) -> AsyncGenerator[TranscriptResult, None]:
        """``WS /v1/stream/transcribe``: send raw PCM (``linear16`` s16le or ``float32`` f32le at
        ``sample_rate_hz``) as it comes — send at the pace it is recorded, a file at once is fine
        too — and yield :class:`TranscriptResult` s: interims (if asked) and finals."""
        async with self._connect("/v1/stream/transcribe") as ws:
            await ws.send(_stream_config(sample_rate_hz, encoding, language, interim_results))
            ready = await self._first_event(ws)
            size = min(_AUDIO_FRAME_BYTES, int(ready.get("max_message_bytes", _AUDIO_FRAME_BYTES)))

            async def send() -> None:
                async with contextlib.aclosing(_audio_frames(audio, size)) as frames:
                    async for frame in frames:
                        await ws.send(frame)
                await ws.send(_END)

            async with contextlib.aclosing(self._messages(ws, send)) as messages:
                async for message in messages:
                    event = json.loads(message)
                    if event.get("type") == "result":
                        for result in _results(event):
                            yield result
                    elif event.get("type") == "error":
                        raise error_from_event(event)

    async def realtime_transcribe(
        self,
        audio: AudioSource,
        *,
        model: str = "whisper-1",
        language: str | None = "en",
        prompt: str | None = None,
        audio_format: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm",
        turn_detection: dict[str, Any] | Literal["server_vad"] | None = "server_vad",
    ) -> AsyncGenerator[RealtimeEvent, None]:
        """``WS /v1/realtime?intent=transcription`` (OpenAI Realtime, GA ``session.update``): send
        ``audio`` (``audio/pcm``: pcm16 at 24 kHz; ``audio/pcmu``/``audio/pcma``: G.711 at 8 kHz),
        yield :class:`RealtimeDelta` (confirmed words), :class:`RealtimeCompleted` (each utterance's
        transcript) and :class:`RealtimeFailed`. Utterances end by server VAD, or with
        ``turn_detection=None`` only when the audio ends (it is committed then, in both modes)."""
        update = _realtime_update(model, language, prompt, audio_format, turn_detection)
        tracker = _RealtimeTracker()
        async with self._connect("/v1/realtime?intent=transcription") as ws:
            await self._first_event(ws)  # transcription_session.created
            await ws.send(update)
            updated = await self._first_event(ws)
            if updated.get("type") != "session.updated":
                raise ClientError(f"unexpected event {updated.get('type')!r}", code="unexpected_event")

            async def send() -> None:
                async with contextlib.aclosing(_audio_frames(audio, _REALTIME_APPEND_BYTES)) as frames:
                    async for frame in frames:
                        await ws.send(_append(frame))
                await ws.send(_COMMIT)
                await ws.send(_BARRIER)

            async with contextlib.aclosing(self._messages(ws, send)) as messages:
                async for message in messages:
                    result = tracker.handle(json.loads(message))
                    if result is not None:
                        yield result
                    if tracker.done:
                        return
            raise ClientError("the server closed the session early", code="closed", close_code=ws.close_code)

    def chat(
        self,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        sample_rate_hz: int = 16000,
        encoding: Literal["linear16", "float32"] = "linear16",
        language: str | None = "en",
        system_prompt: str | None = None,
        barge_in: bool = True,
        interim_results: bool = True,
    ) -> AsyncChatSession:
        """``WS /v1/stream/chat``: a voice chat with the server's LLM, opened by ``async with``.

        Speech fields as in :meth:`speak_stream_events` (the answers' audio), audio fields as in
        :meth:`transcribe_stream` (the microphone audio sent with ``send_audio``); ``system_prompt``
        (the server's ``llm_system_prompt`` by default) and ``barge_in`` (the user speaking cancels
        the answer). A server with no LLM raises ``ClientError`` ``llm_not_configured``.
        """
        config = _chat_config(
            voice,
            response_format,
            speed,
            sample_rate_hz,
            encoding,
            language,
            system_prompt,
            barge_in,
            interim_results,
        )
        return AsyncChatSession(self, config)

    async def ask(
        self,
        text: str,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        system_prompt: str | None = None,
    ) -> tuple[str, bytes]:
        """One typed turn in a new chat: ``(answer text, answer audio)`` (see
        :meth:`AsyncChatSession.ask`)."""
        chat = self.chat(
            voice=voice, response_format=response_format, speed=speed, system_prompt=system_prompt
        )
        async with chat:
            return await chat.ask(text)


class Client(_Common):
    """A blocking client for a voxserve server: :class:`AsyncClient`'s methods on ``httpx.Client``
    and websockets' sync client. Text and audio sources are str/bytes or sync iterators; WebSocket
    methods send from a helper thread while the calling thread receives."""

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- HTTP ----------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"{type(exc).__name__}: {exc}", code="connection_error") from exc
        return _check(response)

    @contextlib.contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Generator[httpx.Response, None, None]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, bytes(response.read()))
                yield response
        except httpx.TransportError as exc:
            raise ClientError(f"{type(exc).__name__}: {exc}", code="connection_error") from exc

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        result: dict[str, Any] = self._request("GET", "/health").json()
        return result

    def ready(self) -> dict[str, Any]:
        """``GET /ready`` (``status`` is ``ready`` or ``starting``; never raises 503)."""
        try:
            response = self._http.get("/ready")
        except httpx.TransportError as exc:
            raise ClientError(f"{type(exc).__name__}: {exc}", code="connection_error") from exc
        if response.status_code not in (200, 503):
            _check(response)
        result: dict[str, Any] = response.json()
        return result

    def voices(self) -> dict[str, Any]:
        """``GET /v1/audio/voices``."""
        result: dict[str, Any] = self._request("GET", "/v1/audio/voices").json()
        return result

    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the model objects."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/models").json()["data"]
        return result

    def model(self, model_id: str) -> dict[str, Any]:
        """``GET /v1/models/{id}``."""
        result: dict[str, Any] = self._request("GET", f"/v1/models/{model_id}").json()
        return result

    def speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "mp3",
        speed: float = 1.0,
        instructions: str | None = None,
        **extra: Any,
    ) -> bytes:
        """``POST /v1/audio/speech``: the whole file (see :meth:`AsyncClient.speech`)."""
        body = _speech_body(text, voice, model, response_format, speed, instructions, False, extra)
        return self._request("POST", "/v1/audio/speech", json=body).content

    def stream_speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "mp3",
        speed: float = 1.0,
        instructions: str | None = None,
        **extra: Any,
    ) -> Generator[bytes, None, None]:
        """``POST /v1/audio/speech``, streamed: audio chunks as the server synthesizes them."""
        body = _speech_body(text, voice, model, response_format, speed, instructions, True, extra)
        with self._stream("POST", "/v1/audio/speech", json=body) as response:
            yield from response.iter_bytes()

    def transcribe(
        self,
        file: FileInput,
        *,
        model: str = "whisper-1",
        language: str | None = None,
        prompt: str | None = None,
        response_format: str = "json",
        temperature: float | None = None,
        timestamp_granularities: Iterable[str] | None = None,
        filename: str | None = None,
    ) -> str | dict[str, Any]:
        """``POST /v1/audio/transcriptions`` (see :meth:`AsyncClient.transcribe`)."""
        form = _transcription_form(
            model, language, prompt, response_format, temperature, timestamp_granularities, False
        )
        files = {"file": _file_part(file, filename)}
        response = self._request("POST", "/v1/audio/transcriptions", data=form, files=files)
        return _transcription_result(response, response_format)

    def translate(
        self,
        file: FileInput,
        *,
        model: str = "whisper-1",
        prompt: str | None = None,
        response_format: str = "json",
        temperature: float | None = None,
        filename: str | None = None,
    ) -> str | dict[str, Any]:
        """``POST /v1/audio/translations`` (English text)."""
        form = _transcription_form(model, None, prompt, response_format, temperature, None, False)
        files = {"file": _file_part(file, filename)}
        response = self._request("POST", "/v1/audio/translations", data=form, files=files)
        return _transcription_result(response, response_format)

    def stream_transcription(
        self,
        file: FileInput,
        *,
        model: str = "whisper-1",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        filename: str | None = None,
    ) -> Generator[TranscriptionEvent, None, None]:
        """``POST /v1/audio/transcriptions`` with ``stream=true`` (SSE deltas, then the full text)."""
        form = _transcription_form(model, language, prompt, "json", temperature, None, True)
        files = {"file": _file_part(file, filename)}
        parser = SSEParser()
        with self._stream("POST", "/v1/audio/transcriptions", data=form, files=files) as r:
            for line in r.iter_lines():
                event = parser.feed(line)
                result = _transcription_event(event) if event else None
                if result is not None:
                    yield result
            event = parser.end()
            result = _transcription_event(event) if event else None
            if result is not None:
                yield result

    def phonemize(self, text: str, *, language: str = "a", voice: str | None = None) -> dict[str, Any]:
        """``POST /dev/phonemize``."""
        body: dict[str, Any] = {"text": text, "language": language}
        if voice is not None:
            body["voice"] = voice
        result: dict[str, Any] = self._request("POST", "/dev/phonemize", json=body).json()
        return result

    def generate_from_phonemes(
        self, phonemes: str, *, voice: str, response_format: str = "wav", speed: float = 1.0
    ) -> bytes:
        """``POST /dev/generate_from_phonemes``."""
        body = {"phonemes": phonemes, "voice": voice, "response_format": response_format, "speed": speed}
        return self._request("POST", "/dev/generate_from_phonemes", json=body).content

    def captioned_speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "wav",
        speed: float = 1.0,
    ) -> CaptionedSpeech:
        """``POST /dev/captioned_speech`` (not streamed)."""
        body = _speech_body(text, voice, model, response_format, speed, None, False, {})
        return _captioned(self._request("POST", "/dev/captioned_speech", json=body).json())

    # --- long texts: speech jobs -----------------------------------------------------------------------

    def create_speech_job(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        response_format: str = "mp3",
        speed: float = 1.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """``POST /v1/audio/speech/jobs`` (see :meth:`AsyncClient.create_speech_job`)."""
        body = _job_body(text, voice, model, response_format, speed, extra)
        result: dict[str, Any] = self._request("POST", _JOBS_PATH, json=body).json()
        return result

    def get_speech_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/audio/speech/jobs/{id}``: status and progress."""
        result: dict[str, Any] = self._request("GET", f"{_JOBS_PATH}/{job_id}").json()
        return result

    def list_speech_jobs(self) -> list[dict[str, Any]]:
        """``GET /v1/audio/speech/jobs``: every job the server still holds, oldest first."""
        result: list[dict[str, Any]] = self._request("GET", _JOBS_PATH).json()["data"]
        return result

    def wait_speech_job(
        self, job_id: str, *, max_wait_s: float | None = None, poll_interval_s: float = _JOB_POLL_S
    ) -> dict[str, Any]:
        """Poll the job until it has succeeded (see :meth:`AsyncClient.wait_speech_job`)."""
        deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
        while (done := _job_outcome(self.get_speech_job(job_id))) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise _job_timeout(job_id, max_wait_s or 0.0)
            wait = (
                poll_interval_s
                if deadline is None
                else min(poll_interval_s, max(deadline - time.monotonic(), 0))
            )
            time.sleep(wait)
        return done

    def speech_job_audio(self, job_id: str) -> bytes:
        """``GET /v1/audio/speech/jobs/{id}/audio``: the finished file, in memory."""
        return self._request("GET", f"{_JOBS_PATH}/{job_id}/audio").content

    def download_speech_job(self, job_id: str, file: FileTarget) -> int:
        """Stream the finished file to ``file`` (a path or a binary file object); the bytes written."""
        with self._stream("GET", f"{_JOBS_PATH}/{job_id}/audio") as response, contextlib.ExitStack() as stack:
            out = stack.enter_context(open(file, "wb")) if isinstance(file, str | os.PathLike) else file
            return sum(out.write(chunk) for chunk in response.iter_bytes(_DOWNLOAD_CHUNK))

    def delete_speech_job(self, job_id: str) -> dict[str, Any]:
        """``DELETE /v1/audio/speech/jobs/{id}``: cancel and delete; the job as it ended."""
        result: dict[str, Any] = self._request("DELETE", f"{_JOBS_PATH}/{job_id}").json()
        return result

    # --- WebSockets ----------------------------------------------------------------------------------

    def _open_ws(self, path: str) -> SyncConnection:
        try:
            ws: SyncConnection = sync_connect(self.ws_base + path, **self._ws_options())
        except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
            raise _handshake_error(exc) from exc
        return ws

    @contextlib.contextmanager
    def _connect(self, path: str) -> Generator[SyncConnection, None, None]:
        ws = self._open_ws(path)
        with ws:
            yield ws

    def _first_event(self, ws: SyncConnection) -> dict[str, Any]:
        try:
            message = ws.recv(timeout=self.timeout)
        except ConnectionClosed as exc:
            raise _closed_error(exc) or ClientError(
                "the server closed the connection", code="closed", close_code=1000
            ) from None
        except TimeoutError:
            raise ClientError("no answer from the server", code="timeout") from None
        event: dict[str, Any] = json.loads(message)
        if event.get("type") == "error":
            raise error_from_event(event)
        return event

    @staticmethod
    def _messages(ws: SyncConnection, sender: Callable[[], None]) -> Generator[str | bytes, None, None]:
        """Messages until the server closes, while ``sender()`` runs in a thread (see
        :meth:`AsyncClient._messages`)."""
        failure: list[BaseException] = []

        def send() -> None:
            try:
                sender()
            except ConnectionClosed:
                pass
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
                    if failure:
                        raise failure[0] from None
                    error = _closed_error(exc)
                    if error is not None:
                        raise error from None
                    return
                yield message
        finally:
            # Closing stops a sender blocked on the socket; one blocked in the caller's iterator
            # ends at its next item (it is a daemon thread either way).
            ws.close()
            thread.join(1)

    def speak_stream_events(
        self,
        text: str | Iterable[str],
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        model: str | None = None,
        max_pending_chars: int = 8000,
    ) -> Generator[SpeakEvent, None, None]:
        """``WS /v1/stream/speak`` (see :meth:`AsyncClient.speak_stream_events`)."""
        backlog = _Backlog(max_pending_chars)
        with self._connect("/v1/stream/speak") as ws:
            ws.send(_speak_config(voice, response_format, speed, model))
            self._first_event(ws)

            def send() -> None:
                for piece in _sync_text_pieces(text):
                    backlog.room_sync(len(piece))
                    backlog.sent += len(piece)
                    ws.send(json.dumps({"type": "text", "text": piece}))
                ws.send(_END)

            done = False
            with contextlib.closing(self._messages(ws, send)) as messages:
                for message in messages:
                    if isinstance(message, bytes):
                        yield message
                        continue
                    event = json.loads(message)
                    kind = event.get("type")
                    if kind == "sentence":
                        sentence = _sentence(event)
                        backlog.on_sentence(sentence.text)
                        yield sentence
                    elif kind == "done":
                        done = True
                        yield SpeakDone(float(event.get("audio_s", 0.0)))
                    elif kind == "error":
                        raise error_from_event(event)
            if not done:
                reason = ws.close_reason or "the server closed the session before it was done"
                raise ClientError(reason, code="closed", close_code=ws.close_code)

    def speak_stream(
        self,
        text: str | Iterable[str],
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        model: str | None = None,
        on_sentence: Callable[[Sentence], Any] | None = None,
    ) -> Generator[bytes, None, None]:
        """``WS /v1/stream/speak``, audio only (see :meth:`AsyncClient.speak_stream`)."""
        events = self.speak_stream_events(
            text, voice=voice, response_format=response_format, speed=speed, model=model
        )
        with contextlib.closing(events) as stream:
            for event in stream:
                if isinstance(event, bytes):
                    yield event
                elif isinstance(event, Sentence) and on_sentence is not None:
                    on_sentence(event)

    def transcribe_stream(
        self,
        audio: bytes | Iterable[bytes],
        *,
        sample_rate_hz: int = 16000,
        encoding: Literal["linear16", "float32"] = "linear16",
        language: str | None = "en",
        interim_results: bool = True,
    ) -> Generator[TranscriptResult, None, None]:
        """``WS /v1/stream/transcribe`` (see :meth:`AsyncClient.transcribe_stream`)."""
        with self._connect("/v1/stream/transcribe") as ws:
            ws.send(_stream_config(sample_rate_hz, encoding, language, interim_results))
            ready = self._first_event(ws)
            size = min(_AUDIO_FRAME_BYTES, int(ready.get("max_message_bytes", _AUDIO_FRAME_BYTES)))

            def send() -> None:
                for frame in _sync_audio_frames(audio, size):
                    ws.send(frame)
                ws.send(_END)

            with contextlib.closing(self._messages(ws, send)) as messages:
                for message in messages:
                    event = json.loads(message)
                    if event.get("type") == "result":
                        yield from _results(event)
                    elif event.get("type") == "error":
                        raise error_from_event(event)

    def realtime_transcribe(
        self,
        audio: bytes | Iterable[bytes],
        *,
        model: str = "whisper-1",
        language: str | None = "en",
        prompt: str | None = None,
        audio_format: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm",
        turn_detection: dict[str, Any] | Literal["server_vad"] | None = "server_vad",
    ) -> Generator[RealtimeEvent, None, None]:
        """``WS /v1/realtime?intent=transcription`` (see :meth:`AsyncClient.realtime_transcribe`)."""
        update = _realtime_update(model, language, prompt, audio_format, turn_detection)
        tracker = _RealtimeTracker()
        with self._connect("/v1/realtime?intent=transcription") as ws:
            self._first_event(ws)
            ws.send(update)
            updated = self._first_event(ws)
            if updated.get("type") != "session.updated":
                raise ClientError(f"unexpected event {updated.get('type')!r}", code="unexpected_event")

            def send() -> None:
                for frame in _sync_audio_frames(audio, _REALTIME_APPEND_BYTES):
                    ws.send(_append(frame))
                ws.send(_COMMIT)
                ws.send(_BARRIER)

            with contextlib.closing(self._messages(ws, send)) as messages:
                for message in messages:
                    result = tracker.handle(json.loads(message))
                    if result is not None:
                        yield result
                    if tracker.done:
                        return
            raise ClientError("the server closed the session early", code="closed", close_code=ws.close_code)

    def chat(
        self,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        sample_rate_hz: int = 16000,
        encoding: Literal["linear16", "float32"] = "linear16",
        language: str | None = "en",
        system_prompt: str | None = None,
        barge_in: bool = True,
        interim_results: bool = True,
    ) -> ChatSession:
        """``WS /v1/stream/chat``, opened by ``with`` (see :meth:`AsyncClient.chat`). Iterate the
        session in one thread; ``send_audio`` may be called from another (a microphone's)."""
        config = _chat_config(
            voice,
            response_format,
            speed,
            sample_rate_hz,
            encoding,
            language,
            system_prompt,
            barge_in,
            interim_results,
        )
        return ChatSession(self, config)

    def ask(
        self,
        text: str,
        *,
        voice: str | None = None,
        response_format: str = "pcm",
        speed: float = 1.0,
        system_prompt: str | None = None,
    ) -> tuple[str, bytes]:
        """One typed turn in a new chat: ``(answer text, answer audio)`` (see :meth:`ChatSession.ask`)."""
        chat = self.chat(
            voice=voice, response_format=response_format, speed=speed, system_prompt=system_prompt
        )
        with chat:
            return chat.ask(text)


class AsyncChatSession:
    """A ``WS /v1/stream/chat`` session of :class:`AsyncClient` (from :meth:`AsyncClient.chat`).

    ``async with`` connects, sends the config and waits for ``ready`` (kept in :attr:`ready`); leaving
    it closes the connection. Send with :meth:`say`, :meth:`send_audio`, :meth:`cancel` and
    :meth:`end` — from another task while one iterates, or between events — and iterate
    (``async for``) the :data:`ChatEvent` s until the server closes the chat (after ``end``, or when
    idle). Error events are yielded as :class:`ChatError` (the chat goes on); an abnormal close is
    raised as :class:`ClientError`.
    """

    def __init__(self, client: AsyncClient, config: str) -> None:
        self._client = client
        self._config = config
        self._ws: AsyncConnection | None = None
        self.ready: dict[str, Any] = {}
        """The server's ``ready`` event (``voice``, ``response_format``, ``sample_rate``, ``llm_model``)."""

    async def open(self) -> AsyncChatSession:
        if self._ws is not None:
            raise RuntimeError("the chat is already open")
        ws = await self._client._open_ws("/v1/stream/chat")
        try:
            # A server that refuses the chat (no LLM) may already have closed: its error event is read next.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(self._config)
            ready = await self._client._first_event(ws)
            if ready.get("type") != "ready":
                raise ClientError(f"unexpected event {ready.get('type')!r}", code="unexpected_event")
        except BaseException:
            await ws.close()
            raise
        self._ws, self.ready = ws, ready
        return self

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> AsyncChatSession:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _conn(self) -> AsyncConnection:
        if self._ws is None:
            raise RuntimeError(_NOT_OPEN)
        return self._ws

    async def _send(self, message: str | bytes) -> None:
        try:
            await self._conn().send(message)
        except ConnectionClosed as exc:
            raise _sent_after_close(exc) from None

    async def say(self, text: str) -> None:
        """A typed user turn: the LLM answers it (interrupting an answer still running)."""
        await self._send(json.dumps({"type": "text", "text": text}))

    async def send_audio(self, pcm: bytes) -> None:
        """Microphone audio: raw PCM in the session's ``encoding`` and ``sample_rate_hz``, sent as it
        is recorded (faster is fine). Long buffers are cut into frames the server accepts."""
        for frame in _frames(pcm, _AUDIO_FRAME_BYTES):
            await self._send(frame)

    async def cancel(self) -> None:
        """Stop the current answer (the server sends ``response.done`` interrupted, then ``cancelled``)."""
        await self._send(_CANCEL)

    async def end(self) -> None:
        """Finish: the last utterance is transcribed and answered, its answer spoken, then the
        server closes the chat (iteration ends)."""
        await self._send(_END)

    async def receive(self) -> ChatEvent | None:
        """The next event; ``None`` once the server has closed the chat normally (bound the wait
        with ``asyncio.timeout``)."""
        ws = self._conn()
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                error = _closed_error(exc)
                if error is not None:
                    raise error from None
                return None
            event = _chat_event(message)
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
        answer = _Answer(text)
        await self.say(text)
        while (event := await self.receive()) is not None:
            if answer.handle(event):
                await self.end()
        return answer.result()


class ChatSession:
    """A ``WS /v1/stream/chat`` session of :class:`Client` (from :meth:`Client.chat`): the methods of
    :class:`AsyncChatSession`, blocking, on websockets' sync client. Sending is thread-safe: a
    microphone thread may call :meth:`send_audio` while another thread iterates."""

    def __init__(self, client: Client, config: str) -> None:
        self._client = client
        self._config = config
        self._ws: SyncConnection | None = None
        self._stack = contextlib.ExitStack()
        self.ready: dict[str, Any] = {}
        """The server's ``ready`` event (``voice``, ``response_format``, ``sample_rate``, ``llm_model``)."""

    def open(self) -> ChatSession:
        if self._ws is not None:
            raise RuntimeError("the chat is already open")
        with contextlib.ExitStack() as stack:
            ws = stack.enter_context(self._client._open_ws("/v1/stream/chat"))
            with contextlib.suppress(ConnectionClosed):
                ws.send(self._config)
            ready = self._client._first_event(ws)
            if ready.get("type") != "ready":
                raise ClientError(f"unexpected event {ready.get('type')!r}", code="unexpected_event")
            self._stack = stack.pop_all()
        self._ws, self.ready = ws, ready
        return self

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> ChatSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> SyncConnection:
        if self._ws is None:
            raise RuntimeError(_NOT_OPEN)
        return self._ws

    def _send(self, message: str | bytes) -> None:
        try:
            self._conn().send(message)
        except ConnectionClosed as exc:
            raise _sent_after_close(exc) from None

    def say(self, text: str) -> None:
        """A typed user turn (see :meth:`AsyncChatSession.say`)."""
        self._send(json.dumps({"type": "text", "text": text}))

    def send_audio(self, pcm: bytes) -> None:
        """Microphone audio (see :meth:`AsyncChatSession.send_audio`)."""
        for frame in _frames(pcm, _AUDIO_FRAME_BYTES):
            self._send(frame)

    def cancel(self) -> None:
        """Stop the current answer."""
        self._send(_CANCEL)

    def end(self) -> None:
        """Finish the last turn and its answer; then the server closes the chat."""
        self._send(_END)

    def receive(self, timeout: float | None = None) -> ChatEvent | None:
        """The next event; ``None`` once the server has closed the chat normally. ``timeout``: seconds
        to wait for it (then ``ClientError`` ``timeout``), or forever."""
        ws = self._conn()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                message = ws.recv(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except ConnectionClosed as exc:
                error = _closed_error(exc)
                if error is not None:
                    raise error from None
                return None
            except TimeoutError:
                raise ClientError("no event from the server in time", code="timeout") from None
            event = _chat_event(message)
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
        answer = _Answer(text)
        self.say(text)
        while (event := self.receive()) is not None:
            if answer.handle(event):
                self.end()
        return answer.result()
