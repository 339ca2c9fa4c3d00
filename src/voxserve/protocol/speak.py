"""``WS /v1/stream/speak``: text in (an LLM's tokens), audio out.

Client → server, JSON text messages: first :class:`SpeakConfig`; then any number of
:class:`~voxserve.protocol.common.TextMessage`, :class:`~voxserve.protocol.common.FlushMessage`,
:class:`~voxserve.protocol.common.CancelMessage`; finally
:class:`~voxserve.protocol.common.EndMessage`.

Server → client: audio as binary frames (one continuous stream in the chosen format) and the events
:class:`SpeakReady`, :class:`SentenceEvent` (before each fragment's audio), :class:`CancelledEvent`,
:class:`DoneEvent` and :class:`~voxserve.protocol.common.ErrorEvent`.

The server reads the first message with :func:`parse_config` (any error: error event, close 1008) and
every later one with :func:`parse_client_message` (any error: error event, the session goes on). A
client reads text frames with :func:`parse_server_event`. Checks that need the server's state (is
the voice installed, is the model served, ``max_input_chars``) stay on the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from voxserve.errors import InvalidValue, UnknownModel
from voxserve.protocol.common import (
    CancelMessage,
    EndMessage,
    ErrorEvent,
    FlushMessage,
    TextMessage,
    config_object,
    typed_message,
)
from voxserve.protocol.json import (
    JsonFields,
    WireMessage,
    describe,
    get_list,
    get_number,
    get_str,
    invalid,
    loads,
)

__all__ = [
    "SPEAK_FORMATS",
    "CancelMessage",
    "CancelledEvent",
    "DoneEvent",
    "EndMessage",
    "ErrorEvent",
    "FlushMessage",
    "SentenceEvent",
    "SpeakClientMessage",
    "SpeakConfig",
    "SpeakReady",
    "SpeakServerEvent",
    "TextMessage",
    "Word",
    "parse_client_message",
    "parse_config",
    "parse_server_event",
    "parse_speak_fields",
]

SPEAK_FORMATS: tuple[str, ...] = ("pcm", "wav", "mp3", "opus")
"""Formats a speak session can stream as one continuous file across fragments."""

_FIRST_MESSAGE = 'the first message must be a JSON {"type": "config", ...}'


def parse_speak_fields(obj: Mapping[str, Any]) -> tuple[str | None, str, float, str | None]:
    """The speech fields of a config message: ``(voice, response_format, speed, model)``.

    Raises:
        InvalidValue: ``unsupported_format``, ``invalid_speed`` or ``invalid_voice``.
        UnknownModel: ``model_not_found`` for a ``model`` that is not a string.
    """
    fmt = obj.get("response_format", "pcm")
    if not isinstance(fmt, str) or fmt not in SPEAK_FORMATS:
        raise InvalidValue(
            f"response_format must be one of {', '.join(SPEAK_FORMATS)}", code="unsupported_format"
        )
    speed = obj.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise InvalidValue("speed must be a number from 0.25 to 4.0", code="invalid_speed")
    voice = obj.get("voice")
    if "voice" in obj and not isinstance(voice, str | dict):
        raise InvalidValue("voice must be a voice id", code="invalid_voice")
    if isinstance(voice, dict):
        # OpenAI's {"id": ...} form; whatever the id is, the server's voice lookup judges it.
        voice = str(voice.get("id", ""))
    model = obj.get("model")
    if "model" in obj and not isinstance(model, str):
        raise UnknownModel(
            f"model {describe(model)} is not served here; GET /v1/models lists the models", param="model"
        )
    return voice, fmt, float(speed), model


@dataclass(frozen=True)
class SpeakConfig(WireMessage):
    """The first message: how to speak. The server answers :class:`SpeakReady`."""

    type: ClassVar[str] = "config"
    voice: str | None = None
    """A voice id, OpenAI name or blend; ``None``: the server's default voice."""
    response_format: str = "pcm"
    """One of :data:`SPEAK_FORMATS` (``pcm`` is s16le mono at the server's output rate)."""
    speed: float = 1.0
    """0.25 to 4.0."""
    model: str | None = None
    """As in ``POST /v1/audio/speech``; ``None``: pick by voice."""

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"type": self.type}
        if self.voice is not None:
            obj["voice"] = self.voice
        obj |= {"response_format": self.response_format, "speed": self.speed}
        if self.model is not None:
            obj["model"] = self.model
        return obj

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises what :func:`parse_speak_fields` raises. Unknown fields are ignored."""
        voice, fmt, speed, model = parse_speak_fields(obj)
        return cls(voice, fmt, speed, model)


SpeakClientMessage = TextMessage | FlushMessage | CancelMessage | EndMessage
"""What a configured speak session receives."""

_CLIENT: dict[str, type[SpeakClientMessage]] = {
    m.type: m for m in (TextMessage, FlushMessage, CancelMessage, EndMessage)
}


def parse_config(data: str | bytes) -> SpeakConfig:
    """The first message of a session (a binary frame counts as not JSON).

    Raises:
        InvalidValue: ``invalid_config`` (not a JSON config), ``unsupported_format``,
            ``invalid_speed``, ``invalid_voice``; :class:`UnknownModel` for a non-string model.
    """
    obj = config_object(data, binary_message=_FIRST_MESSAGE, json_message=_FIRST_MESSAGE)
    return SpeakConfig.from_json(obj)


def parse_client_message(data: str | bytes) -> SpeakClientMessage:
    """A message after the config: ``data`` is a text frame (``str``) or a binary frame (``bytes``).

    Raises:
        InvalidRequest: ``unexpected_binary``, ``invalid_json``, ``invalid_text``,
            ``unexpected_config``, ``unknown_message``.
    """
    if not isinstance(data, str):
        raise invalid("unexpected_binary", "send text as JSON text messages")
    return typed_message(loads(data), _CLIENT, configured="session")


# ------------------------------------------------------------------------------- server events


@dataclass(frozen=True)
class SpeakReady(WireMessage):
    """The config is accepted; audio will follow in this format."""

    type: ClassVar[str] = "ready"
    voice: str
    """The resolved voice id (``piper/en_US-joe-medium``)."""
    response_format: str
    sample_rate: int
    """Hertz of the audio stream."""
    speed: float


@dataclass(frozen=True)
class Word(JsonFields):
    """One spoken word of a :class:`SentenceEvent`, timed in the session's audio."""

    word: str
    """The normalised word as spoken (``twelve``)."""
    start_s: float
    """Seconds from the start of the session's audio."""
    end_s: float
    source_start: int | None = None
    """Range of characters, in all the text sent so far, that the word speaks (``None``: unknown)."""
    source_end: int | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_event`` for a malformed word."""
        if not isinstance(obj, dict):
            raise invalid("invalid_event", "words must be objects", param="words")
        return super().from_json(obj)


@dataclass(frozen=True)
class SentenceEvent(WireMessage):
    """Sent just before a fragment's audio: what is about to be heard, and when."""

    type: ClassVar[str] = "sentence"
    text: str
    """The fragment as sent."""
    start_s: float
    """Where the fragment starts in the session's audio (seconds)."""
    words: tuple[Word, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "text": self.text,
            "start_s": self.start_s,
            "words": [w.to_json() for w in self.words],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        words = tuple(Word.from_json(w) for w in get_list(obj, "words", default=[]))
        return cls(get_str(obj, "text"), get_number(obj, "start_s"), words)


@dataclass(frozen=True)
class CancelledEvent(WireMessage):
    """A ``cancel`` took effect: no audio of the dropped text follows this event."""

    type: ClassVar[str] = "cancelled"
    dropped_fragments: int


@dataclass(frozen=True)
class DoneEvent(WireMessage):
    """Everything has been spoken (after ``end``); the server closes with 1000 next."""

    type: ClassVar[str] = "done"
    audio_s: float
    """Seconds of audio sent in the session."""
    samples: int
    """Samples sent in the session (at ``sample_rate``)."""


SpeakServerEvent = SpeakReady | SentenceEvent | CancelledEvent | DoneEvent | ErrorEvent
"""What a speak client receives as text frames."""

_SERVER: dict[str, type[SpeakServerEvent]] = {
    m.type: m for m in (SpeakReady, SentenceEvent, CancelledEvent, DoneEvent, ErrorEvent)
}


def parse_server_event(text: str | bytes) -> SpeakServerEvent:
    """A text frame from the server (binary frames are audio: keep them as bytes).

    Raises:
        InvalidRequest: ``invalid_json``, ``unknown_message`` (a type this module does not know: a
            newer server's extra, which a client may skip), ``invalid_event`` (a malformed field).
    """
    return typed_message(loads(text, message="server messages must be JSON"), _SERVER)
