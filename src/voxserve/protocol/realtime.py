"""``WS /v1/realtime``: the OpenAI Realtime transcription subset, beta and GA dialects.

Client → server: :class:`~voxserve.protocol.realtime_session.TranscriptionSessionUpdate` (beta) or
:class:`~voxserve.protocol.realtime_session.SessionUpdate` (GA), :class:`InputAudioBufferAppend`,
:class:`InputAudioBufferCommit`, :class:`InputAudioBufferClear`. Each may carry the client's
``event_id``, which an error about it echoes.

Server → client (each with its own ``event_id``, last in the JSON): the session events
(:func:`session_created` / :func:`session_updated` pick the dialect's type), voice activity
(:class:`SpeechStarted`, :class:`SpeechStopped`, server VAD only), :class:`Committed`, the item
(:func:`item_created`: ``conversation.item.created`` in beta, ``.added`` in GA),
:class:`TranscriptionDelta` (confirmed words only: append-only), :class:`TranscriptionCompleted`
(both with :class:`Logprob` entries when the session's ``include`` asks for them),
:class:`TranscriptionFailed`, :class:`Cleared` and :class:`RealtimeErrorEvent`
``{"type": "error", "error": {"type", "code", "message", "param", "event_id"}}``.

The dialect comes from the handshake (:func:`dialect_from_headers`: beta iff ``OpenAI-Beta`` holds
``realtime=v1``); after that the server answers in the dialect of the client's last update. The
server parses with :func:`parse_client_message`; a failure is an :class:`InvalidClientEvent` whose
``event_id`` goes into the error event (:meth:`RealtimeErrorEvent.from_error`), and the session stays
open. A client parses with :func:`parse_server_event`.

Over 600 lines, and one module, on purpose: :mod:`voxserve.protocol` keeps one module per wire
protocol, and the two dialects differ only in the names of six events, which share their base
classes and dispatch tables with the rest, so a beta/GA split would not stand on its own. The
session object and its updates already live apart, in :mod:`voxserve.protocol.realtime_session`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from voxserve.errors import InvalidRequest, VoxserveError
from voxserve.protocol.json import (
    WireMessage,
    decode_base64,
    describe,
    fields_json,
    get_int,
    get_number,
    get_object,
    get_opt_str,
    get_str,
    invalid,
    loads,
    read_fields,
)
from voxserve.protocol.realtime_session import (
    AUDIO_FORMATS,
    GA_FORMATS,
    INCLUDE_LOGPROBS,
    KEEP,
    Dialect,
    SessionUpdate,
    TranscriptionSession,
    TranscriptionSessionUpdate,
    TurnDetection,
    client_event_id,
    dialect_from_headers,
)

__all__ = [
    "AUDIO_FORMATS",
    "GA_FORMATS",
    "INCLUDE_LOGPROBS",
    "KEEP",
    "Cleared",
    "Committed",
    "ConversationItemAdded",
    "ConversationItemCreated",
    "Dialect",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCommit",
    "InvalidClientEvent",
    "Logprob",
    "RealtimeClientEvent",
    "RealtimeErrorEvent",
    "RealtimeServerEvent",
    "SessionCreated",
    "SessionUpdate",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "TranscriptionCompleted",
    "TranscriptionDelta",
    "TranscriptionFailed",
    "TranscriptionSession",
    "TranscriptionSessionCreated",
    "TranscriptionSessionUpdate",
    "TranscriptionSessionUpdated",
    "TurnDetection",
    "dialect_from_headers",
    "item_created",
    "new_event_id",
    "parse_client_message",
    "parse_server_event",
    "session_created",
    "session_updated",
]


def new_event_id() -> str:
    """A fresh server ``event_id`` (``event_`` and 16 hex digits)."""
    return "event_" + secrets.token_hex(8)


class InvalidClientEvent(InvalidRequest):
    """A client event the server refuses; :attr:`event_id` is the client's id for it, if it had one."""

    def __init__(
        self, message: str, *, code: str | None = None, param: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.event_id = event_id


# ----------------------------------------------------------------------------------- client events


@dataclass(frozen=True)
class _ClientEvent(WireMessage):
    event_id: str | None = field(default=None, kw_only=True)
    """The client's id for this event (echoed in an error about it)."""

    def _head(self) -> dict[str, Any]:
        head: dict[str, Any] = {"type": self.type}
        if self.event_id is not None:
            head["event_id"] = self.event_id
        return head

    def to_json(self) -> dict[str, Any]:
        return self._head()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(event_id=client_event_id(obj))


@dataclass(frozen=True)
class InputAudioBufferAppend(_ClientEvent):
    """Audio for the input buffer, in the session's format."""

    type: ClassVar[str] = "input_audio_buffer.append"
    audio: bytes
    """Raw audio bytes (base64 on the wire)."""

    def to_json(self) -> dict[str, Any]:
        return self._head() | {"audio": base64.b64encode(self.audio).decode("ascii")}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_audio`` (not a string) or ``invalid_base64``
        (not strict base64), both with ``param`` ``audio``."""
        audio = obj.get("audio")
        if not isinstance(audio, str):
            raise invalid("invalid_audio", "audio must be a base64 string", param="audio")
        try:
            data = decode_base64(audio)
        except (binascii.Error, ValueError):
            raise invalid("invalid_base64", "audio must be valid base64", param="audio") from None
        return cls(data, event_id=client_event_id(obj))


@dataclass(frozen=True)
class InputAudioBufferCommit(_ClientEvent):
    """End the current utterance by hand (the server needs at least 100 ms of audio)."""

    type: ClassVar[str] = "input_audio_buffer.commit"


@dataclass(frozen=True)
class InputAudioBufferClear(_ClientEvent):
    """Drop the buffered audio; answered with :class:`Cleared` once every earlier event is handled."""

    type: ClassVar[str] = "input_audio_buffer.clear"


RealtimeClientEvent = (
    TranscriptionSessionUpdate
    | SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
)
"""What a realtime server receives."""

_CLIENT: dict[str, type[RealtimeClientEvent]] = {
    m.type: m
    for m in (
        TranscriptionSessionUpdate,
        SessionUpdate,
        InputAudioBufferAppend,
        InputAudioBufferCommit,
        InputAudioBufferClear,
    )
}


def parse_client_message(data: str | bytes) -> RealtimeClientEvent:
    """One WebSocket message from the client (``bytes``: a binary frame).

    Raises:
        InvalidClientEvent: ``invalid_event`` (a binary frame, or JSON that is not an object),
            ``invalid_json``, ``unknown_event`` (param ``type``), and what the event's
            ``from_json`` raises; ``event_id`` is the event's own, when it had one.
    """
    if not isinstance(data, str):
        raise InvalidClientEvent("events must be JSON text messages", code="invalid_event")
    try:
        obj = loads(data, message="the event is not valid JSON")
    except VoxserveError as exc:
        raise InvalidClientEvent(exc.message, code=exc.code) from None
    if not isinstance(obj, dict):
        raise InvalidClientEvent("the event must be a JSON object", code="invalid_event")
    kind, event_id = obj.get("type"), client_event_id(obj)
    cls = _CLIENT.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidClientEvent(
            f"unknown event type {describe(kind)}", code="unknown_event", param="type", event_id=event_id
        )
    try:
        return cls.from_json(obj)
    except VoxserveError as exc:
        raise InvalidClientEvent(exc.message, code=exc.code, param=exc.param, event_id=event_id) from None


# ----------------------------------------------------------------------------------- server events


_EVENT_ID = frozenset({"event_id"})


@dataclass(frozen=True)
class _ServerEvent(WireMessage):
    """A server event: ``type``, the body, then ``event_id``. A flat body (the event's fields in
    order, values as they are) needs no code: :meth:`_body` and :meth:`from_json` read the fields."""

    event_id: str = field(default_factory=new_event_id, kw_only=True)
    """The server's id for this event."""

    def _body(self) -> dict[str, Any]:
        body = fields_json(self)
        del body["event_id"]
        return body

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type} | self._body() | {"event_id": self.event_id}

    @classmethod
    def _id(cls, obj: Mapping[str, Any]) -> str:
        return get_str(obj, "event_id", default="")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(**read_fields(cls, obj, skip=_EVENT_ID), event_id=cls._id(obj))


@dataclass(frozen=True)
class _SessionEvent(_ServerEvent):
    dialect: ClassVar[Dialect]
    session: TranscriptionSession

    def _body(self) -> dict[str, Any]:
        return {"session": self.session.to_json(self.dialect)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        session = TranscriptionSession.from_json(get_object(obj, "session"), cls.dialect)
        return cls(session, event_id=cls._id(obj))


@dataclass(frozen=True)
class TranscriptionSessionCreated(_SessionEvent):
    """Beta: the first event of a session."""

    type: ClassVar[str] = "transcription_session.created"
    dialect: ClassVar[Dialect] = "beta"


@dataclass(frozen=True)
class TranscriptionSessionUpdated(_SessionEvent):
    """Beta: the answer to ``transcription_session.update``."""

    type: ClassVar[str] = "transcription_session.updated"
    dialect: ClassVar[Dialect] = "beta"


@dataclass(frozen=True)
class SessionCreated(_SessionEvent):
    """GA: the first event of a session."""

    type: ClassVar[str] = "session.created"
    dialect: ClassVar[Dialect] = "ga"


@dataclass(frozen=True)
class SessionUpdated(_SessionEvent):
    """GA: the answer to ``session.update``."""

    type: ClassVar[str] = "session.updated"
    dialect: ClassVar[Dialect] = "ga"


def session_created(
    dialect: Dialect, session: TranscriptionSession
) -> TranscriptionSessionCreated | SessionCreated:
    """The first event of a session, in ``dialect``."""
    return TranscriptionSessionCreated(session) if dialect == "beta" else SessionCreated(session)


def session_updated(
    dialect: Dialect, session: TranscriptionSession
) -> TranscriptionSessionUpdated | SessionUpdated:
    """The answer to an update, in ``dialect``."""
    return TranscriptionSessionUpdated(session) if dialect == "beta" else SessionUpdated(session)


@dataclass(frozen=True)
class SpeechStarted(_ServerEvent):
    """Server VAD heard speech start (not sent with ``turn_detection: null``)."""

    type: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    """Milliseconds of audio from the start of the session."""
    item_id: str


@dataclass(frozen=True)
class SpeechStopped(_ServerEvent):
    """Server VAD heard speech end; :class:`Committed` follows."""

    type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


@dataclass(frozen=True)
class Committed(_ServerEvent):
    """An utterance became a conversation item (by server VAD or a commit)."""

    type: ClassVar[str] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


@dataclass(frozen=True)
class _ItemEvent(_ServerEvent):
    item_id: str
    previous_item_id: str | None = None

    def _body(self) -> dict[str, Any]:
        return {
            "previous_item_id": self.previous_item_id,
            "item": {
                "id": self.item_id,
                "object": "realtime.item",
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_audio", "transcript": None}],
            },
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        item = get_object(obj, "item")
        return cls(get_str(item, "id"), get_opt_str(obj, "previous_item_id"), event_id=cls._id(obj))


@dataclass(frozen=True)
class ConversationItemCreated(_ItemEvent):
    """Beta: the user's audio item (its transcript comes in the transcription events)."""

    type: ClassVar[str] = "conversation.item.created"


@dataclass(frozen=True)
class ConversationItemAdded(_ItemEvent):
    """GA: the user's audio item."""

    type: ClassVar[str] = "conversation.item.added"


def item_created(
    dialect: Dialect, item_id: str, previous_item_id: str | None
) -> ConversationItemCreated | ConversationItemAdded:
    """The item event of ``dialect``."""
    cls = ConversationItemCreated if dialect == "beta" else ConversationItemAdded
    return cls(item_id, previous_item_id)


@dataclass(frozen=True)
class Logprob:
    """One entry of ``logprobs``: a piece of the transcript and the model's log probability for it
    (voxserve: one per word, see :mod:`voxserve.stt.hints`)."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    """The UTF-8 bytes of ``token``."""

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.bytes)}

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_event`` for a malformed entry."""
        if not isinstance(obj, dict):
            raise invalid("invalid_event", "a logprobs entry must be an object")
        raw = obj.get("bytes") or []
        if not isinstance(raw, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in raw):
            raise invalid("invalid_event", "logprobs bytes must be a list of integers")
        return cls(get_str(obj, "token"), get_number(obj, "logprob"), tuple(raw))


def _logprobs_json(logprobs: tuple[Logprob, ...] | None) -> dict[str, Any]:
    return {} if logprobs is None else {"logprobs": [entry.to_json() for entry in logprobs]}


def _logprobs(obj: Mapping[str, Any]) -> tuple[Logprob, ...] | None:
    value = obj.get("logprobs")
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("invalid_event", "logprobs must be a list")
    return tuple(Logprob.from_json(entry) for entry in value)


@dataclass(frozen=True)
class TranscriptionDelta(_ServerEvent):
    """Newly confirmed words of an item's transcript (append-only: deltas never change)."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    delta: str
    content_index: int = 0
    logprobs: tuple[Logprob, ...] | None = None
    """The log probabilities of the delta's words (sessions that ``include`` them); ``None``: none
    sent (left out of the JSON)."""

    def _body(self) -> dict[str, Any]:
        body = {"item_id": self.item_id, "content_index": self.content_index, "delta": self.delta}
        return body | _logprobs_json(self.logprobs)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(
            get_str(obj, "item_id"),
            get_str(obj, "delta"),
            get_int(obj, "content_index", default=0),
            _logprobs(obj),
            event_id=cls._id(obj),
        )


@dataclass(frozen=True)
class TranscriptionCompleted(_ServerEvent):
    """The final transcript of an item."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    transcript: str
    usage_seconds: float | None = None
    """Seconds of audio in the item (``usage: {"type": "duration", "seconds"}``); ``None``: no usage."""
    content_index: int = 0
    logprobs: tuple[Logprob, ...] | None = None
    """The log probabilities of the transcript's words (sessions that ``include`` them); ``None``:
    none sent (left out of the JSON)."""

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "item_id": self.item_id,
            "content_index": self.content_index,
            "transcript": self.transcript,
        }
        if self.usage_seconds is not None:
            body["usage"] = {"type": "duration", "seconds": self.usage_seconds}
        return body | _logprobs_json(self.logprobs)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        usage = get_object(obj, "usage", default={})
        seconds = get_number(usage, "seconds") if usage.get("type") == "duration" else None
        return cls(
            get_str(obj, "item_id"),
            get_str(obj, "transcript"),
            seconds,
            get_int(obj, "content_index", default=0),
            _logprobs(obj),
            event_id=cls._id(obj),
        )


@dataclass(frozen=True)
class TranscriptionFailed(_ServerEvent):
    """An item could not be transcribed; the session goes on."""

    type: ClassVar[str] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    code: str = "transcription_failed"
    message: str = "decode failed"
    error_type: str = "server_error"
    content_index: int = 0

    def _body(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "content_index": self.content_index,
            "error": {"type": self.error_type, "code": self.code, "message": self.message},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        error = get_object(obj, "error")
        return cls(
            get_str(obj, "item_id"),
            get_str(error, "code"),
            get_str(error, "message"),
            get_str(error, "type", default="server_error"),
            get_int(obj, "content_index", default=0),
            event_id=cls._id(obj),
        )


@dataclass(frozen=True)
class Cleared(_ServerEvent):
    """The input buffer was cleared (every earlier event has been handled)."""

    type: ClassVar[str] = "input_audio_buffer.cleared"


@dataclass(frozen=True)
class RealtimeErrorEvent(_ServerEvent):
    """``{"type": "error", "error": {"type", "code", "message", "param", "event_id"}}``."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    param: str | None = None
    """The field of the client event at fault (``audio``, ``type``, ``session``)."""
    client_event_id: str | None = None
    """``error.event_id``: the client event that failed, if it had an id."""
    error_type: str = "invalid_request_error"

    @classmethod
    def from_error(cls, exc: VoxserveError, client_event_id: str | None = None) -> Self:
        """The event that reports ``exc``; the client's event id is ``exc.event_id`` for an
        :class:`InvalidClientEvent`, else ``client_event_id``."""
        if isinstance(exc, InvalidClientEvent) and exc.event_id is not None:
            client_event_id = exc.event_id
        return cls(exc.code, exc.message, exc.param, client_event_id, exc.error_type)

    def _body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.error_type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "event_id": self.client_event_id,
            }
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        error = get_object(obj, "error")
        return cls(
            get_opt_str(error, "code") or "",
            get_opt_str(error, "message") or "",
            get_opt_str(error, "param"),
            get_opt_str(error, "event_id"),
            get_str(error, "type", default="invalid_request_error"),
            event_id=cls._id(obj),
        )


RealtimeServerEvent = (
    TranscriptionSessionCreated
    | TranscriptionSessionUpdated
    | SessionCreated
    | SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | Committed
    | ConversationItemCreated
    | ConversationItemAdded
    | TranscriptionDelta
    | TranscriptionCompleted
    | TranscriptionFailed
    | Cleared
    | RealtimeErrorEvent
)
"""What a realtime client receives from voxserve."""

_SERVER: dict[str, type[RealtimeServerEvent]] = {
    m.type: m
    for m in (
        TranscriptionSessionCreated,
        TranscriptionSessionUpdated,
        SessionCreated,
        SessionUpdated,
        SpeechStarted,
        SpeechStopped,
        Committed,
        ConversationItemCreated,
        ConversationItemAdded,
        TranscriptionDelta,
        TranscriptionCompleted,
        TranscriptionFailed,
        Cleared,
        RealtimeErrorEvent,
    )
}


def parse_server_event(text: str | bytes) -> RealtimeServerEvent:
    """One event from the server.

    Raises:
        InvalidRequest: ``invalid_json``, ``invalid_event`` (not an object, or a malformed field),
            ``unknown_event`` (a type this module does not know: OpenAI has many; skip it).
    """
    obj = loads(text, message="the event is not valid JSON")
    if not isinstance(obj, dict):
        raise invalid("invalid_event", "the event must be a JSON object")
    kind = obj.get("type")
    cls = _SERVER.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise invalid("unknown_event", f"unknown event type {describe(kind)}", param="type")
    return cls.from_json(obj)
