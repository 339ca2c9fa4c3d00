"""``WS /v1/stream/chat``: talk to an LLM by voice (or text) and hear it answer, with barge-in.

Client → server: first :class:`ChatConfig` (the audio fields of ``/v1/stream/transcribe``, the speech
fields of ``/v1/stream/speak``, ``system_prompt`` and ``barge_in``); then microphone audio (binary
frames or :class:`~voxserve.protocol.common.AudioMessage`), typed turns
(:class:`~voxserve.protocol.common.TextMessage`, non-empty), :class:`~voxserve.protocol.common.
CancelMessage` and :class:`~voxserve.protocol.common.EndMessage`.

Server → client: :class:`ChatReady`, :class:`SpeechStartedEvent`, :class:`TranscriptEvent`,
:class:`ResponseStarted`, :class:`ResponseTextDelta`, :class:`ResponseDone`, the answer's audio as
binary frames with the speak events (:class:`~voxserve.protocol.speak.SentenceEvent`,
:class:`~voxserve.protocol.speak.CancelledEvent`, :class:`~voxserve.protocol.speak.DoneEvent`), and
:class:`~voxserve.protocol.common.ErrorEvent`.

The server reads the first message with :func:`parse_config` (any error: error event, close 1008),
every later frame with :func:`parse_client_message` (any error: error event, the chat goes on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from voxserve.errors import InvalidValue
from voxserve.protocol.common import (
    AudioMessage,
    CancelMessage,
    EndMessage,
    ErrorEvent,
    TextMessage,
    config_object,
    message_type,
    typed_message,
)
from voxserve.protocol.json import (
    WireMessage,
    invalid,
    loads,
)
from voxserve.protocol.speak import CancelledEvent, DoneEvent, SentenceEvent, parse_speak_fields
from voxserve.protocol.transcribe import parse_audio_fields

__all__ = [
    "AudioMessage",
    "CancelMessage",
    "CancelledEvent",
    "ChatClientMessage",
    "ChatConfig",
    "ChatReady",
    "ChatServerEvent",
    "DoneEvent",
    "EndMessage",
    "ErrorEvent",
    "ResponseDone",
    "ResponseStarted",
    "ResponseTextDelta",
    "SentenceEvent",
    "SpeechStartedEvent",
    "TextMessage",
    "TranscriptEvent",
    "parse_client_message",
    "parse_config",
    "parse_server_event",
]

_FIRST_MESSAGE = 'the first message must be a JSON {"type": "config", ...}'
_SYSTEM_PROMPT = "system_prompt must be a string of at most max_input_chars"


@dataclass(frozen=True)
class ChatConfig(WireMessage):
    """The first message: the microphone's audio, the answer's voice, and the conversation."""

    type: ClassVar[str] = "config"
    sample_rate_hz: int = 16000
    """Microphone audio: 8000 to 48000 Hz."""
    encoding: str = "linear16"
    """Microphone audio: ``linear16`` or ``float32``."""
    language: str = "en"
    interim_results: bool = True
    model: str | None = None
    """One ``model`` serves both checks the server makes (as a speech model and an STT model)."""
    voice: str | None = None
    """The answer's voice; ``None``: the server's default voice."""
    response_format: str = "pcm"
    """The answer's audio: one of :data:`voxserve.protocol.speak.SPEAK_FORMATS`."""
    speed: float = 1.0
    system_prompt: str | None = None
    """``None``: the server's default prompt."""
    barge_in: bool = True
    """Cancel the answer when the user starts speaking (turn off without echo cancellation)."""

    @property
    def base_language(self) -> str:
        """The language without its region, lower case (``en-US`` → ``en``)."""
        return self.language.split("-")[0].lower()

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "type": self.type,
            "sample_rate_hz": self.sample_rate_hz,
            "encoding": self.encoding,
            "language": self.language,
            "interim_results": self.interim_results,
        }
        if self.voice is not None:
            obj["voice"] = self.voice
        obj |= {"response_format": self.response_format, "speed": self.speed}
        if self.model is not None:
            obj["model"] = self.model
        if self.system_prompt is not None:
            obj["system_prompt"] = self.system_prompt
        return obj | {"barge_in": self.barge_in}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """The speech fields are checked first, then the audio fields, then ``system_prompt``.

        Raises:
            InvalidValue: ``unsupported_format``, ``invalid_speed``, ``invalid_voice``,
                ``invalid_config`` (an audio field, ``system_prompt``).
            UnknownModel: a ``model`` that is not a string.
        """
        voice, fmt, speed, model = parse_speak_fields(obj)
        rate, encoding, language, interim, _ = parse_audio_fields(obj)
        system_prompt = obj.get("system_prompt")
        if "system_prompt" in obj and not isinstance(system_prompt, str):
            raise InvalidValue(_SYSTEM_PROMPT, code="invalid_config")
        barge_in = bool(obj.get("barge_in", True))
        return cls(rate, encoding, language, interim, model, voice, fmt, speed, system_prompt, barge_in)


ChatClientMessage = AudioMessage | TextMessage | CancelMessage | EndMessage
"""What a configured chat receives (a binary frame arrives as an :class:`AudioMessage`)."""

_CLIENT: dict[str, type[ChatClientMessage]] = {m.type: m for m in (AudioMessage, CancelMessage, EndMessage)}
"""The messages but ``text`` (a chat's text must not be blank)."""


def parse_config(data: str | bytes, *, max_system_prompt_chars: int | None = None) -> ChatConfig:
    """The first message of a chat; ``max_system_prompt_chars`` is the server's ``max_input_chars``.

    Raises:
        InvalidValue: ``invalid_config`` (not a JSON config, an audio field, ``system_prompt`` not a
            string or too long) and what :meth:`ChatConfig.from_json` raises.
    """
    config = ChatConfig.from_json(
        config_object(data, binary_message=_FIRST_MESSAGE, json_message=_FIRST_MESSAGE)
    )
    prompt = config.system_prompt
    if max_system_prompt_chars is not None and prompt is not None and len(prompt) > max_system_prompt_chars:
        raise InvalidValue(_SYSTEM_PROMPT, code="invalid_config")
    return config


def parse_client_message(data: str | bytes) -> ChatClientMessage:
    """A frame after the config: a binary frame (``bytes``) is microphone audio; a text frame is JSON.

    Raises:
        InvalidRequest: ``invalid_json``, ``invalid_text`` (not a string, or only whitespace),
            ``invalid_base64``, ``unexpected_config``, ``unknown_message``.
    """
    if not isinstance(data, str):
        return AudioMessage(bytes(data))
    obj = loads(data)
    if message_type(obj) == TextMessage.type:
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise invalid("invalid_text", '"text" must be a non-empty string')
        return TextMessage(text)
    return typed_message(obj, _CLIENT, configured="chat")


# ------------------------------------------------------------------------------- server events


@dataclass(frozen=True)
class ChatReady(WireMessage):
    """The config is accepted."""

    type: ClassVar[str] = "ready"
    voice: str
    """The resolved voice id of the answers."""
    response_format: str
    sample_rate: int
    """Hertz of the answers' audio."""
    input_sample_rate_hz: int
    """Hertz of the microphone audio, as configured."""
    encoding: str
    llm_model: str


@dataclass(frozen=True)
class SpeechStartedEvent(WireMessage):
    """The user started speaking (server VAD); an answer in progress is cancelled with barge-in."""

    type: ClassVar[str] = "speech_started"
    time: float
    """Seconds of microphone audio from the start of the chat."""


@dataclass(frozen=True)
class TranscriptEvent(WireMessage):
    """What the user said: interim, or final (a final is a user turn)."""

    type: ClassVar[str] = "transcript"
    text: str
    is_final: bool
    stability: float = 0.0


@dataclass(frozen=True)
class ResponseStarted(WireMessage):
    """The LLM was asked to answer ``user_text``."""

    type: ClassVar[str] = "response.started"
    response_id: int
    user_text: str


@dataclass(frozen=True)
class ResponseTextDelta(WireMessage):
    """More of the answer's text, as the LLM writes it."""

    type: ClassVar[str] = "response.text.delta"
    response_id: int
    delta: str


@dataclass(frozen=True)
class ResponseDone(WireMessage):
    """The answer is complete, or was ``interrupted`` (barge-in or ``cancel``)."""

    type: ClassVar[str] = "response.done"
    response_id: int
    text: str
    interrupted: bool = False


ChatServerEvent = (
    ChatReady
    | SpeechStartedEvent
    | TranscriptEvent
    | ResponseStarted
    | ResponseTextDelta
    | ResponseDone
    | SentenceEvent
    | CancelledEvent
    | DoneEvent
    | ErrorEvent
)
"""What a chat client receives as text frames."""

_SERVER: dict[str, type[ChatServerEvent]] = {
    m.type: m
    for m in (
        ChatReady,
        SpeechStartedEvent,
        TranscriptEvent,
        ResponseStarted,
        ResponseTextDelta,
        ResponseDone,
        SentenceEvent,
        CancelledEvent,
        DoneEvent,
        ErrorEvent,
    )
}


def parse_server_event(text: str | bytes) -> ChatServerEvent:
    """A text frame from the server (binary frames are the answers' audio).

    Raises:
        InvalidRequest: ``invalid_json``, ``unknown_message`` (a newer server's extra, which a
            client may skip), ``invalid_event`` (a malformed field).
    """
    return typed_message(loads(text, message="server messages must be JSON"), _SERVER)
