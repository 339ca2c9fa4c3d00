"""``WS /v1/stream/transcribe``: the mobile-app streaming protocol (Google Speech's result shape).

Client → server: first :class:`TranscribeConfig`; then audio as binary frames or
:class:`~voxserve.protocol.common.AudioMessage`; then :class:`~voxserve.protocol.common.EndMessage`
(the server sends the last final and closes 1000).

Server → client: :class:`ResultEvent` (interim and final results), :class:`~voxserve.protocol.common.
ErrorEvent`, and additive extras a client may ignore: :class:`TranscribeReady`, :class:`SpeechEvent`,
:class:`LagEvent`.

The server reads the first message with :func:`parse_config` (any error: ``invalid_config`` event,
close 1008) and every later frame with :func:`parse_client_message` (any error: error event, the
stream goes on). Whether ``model`` is served is the server's check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from voxserve.errors import InvalidValue
from voxserve.protocol.common import (
    AudioMessage,
    EndMessage,
    ErrorEvent,
    config_object,
    typed_message,
)
from voxserve.protocol.json import (
    JsonFields,
    WireMessage,
    describe,
    get_bool,
    get_list,
    get_number,
    invalid,
    loads,
)

__all__ = [
    "ENCODINGS",
    "SPEECH_ACTIVITY_BEGIN",
    "SPEECH_ACTIVITY_END",
    "Alternative",
    "AudioMessage",
    "EndMessage",
    "ErrorEvent",
    "LagEvent",
    "RecognitionResult",
    "ResultEvent",
    "SpeechEvent",
    "TranscribeClientMessage",
    "TranscribeConfig",
    "TranscribeReady",
    "TranscribeServerEvent",
    "parse_audio_fields",
    "parse_client_message",
    "parse_config",
    "parse_server_event",
]

ENCODINGS: tuple[str, ...] = ("linear16", "float32")
"""Sample encodings of the audio frames: s16le or f32le, mono."""

SPEECH_ACTIVITY_BEGIN = "SPEECH_ACTIVITY_BEGIN"
SPEECH_ACTIVITY_END = "SPEECH_ACTIVITY_END"


def parse_audio_fields(obj: Mapping[str, Any]) -> tuple[int, str, str, bool, str | None]:
    """The audio fields of a config message: ``(sample_rate_hz, encoding, language,
    interim_results, model)``; ``model`` is ``None`` when absent (the server's default).

    ``interim_results`` is read as JSON truthiness (``0`` and ``""`` are false), as it always was.

    Raises:
        InvalidValue: ``invalid_config``, with a message that names the field.
    """

    def bad(message: str) -> InvalidValue:
        return InvalidValue(message, code="invalid_config")

    rate = obj.get("sample_rate_hz", 16000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise bad("sample_rate_hz must be an integer from 8000 to 48000")
    encoding = obj.get("encoding", "linear16")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise bad("encoding must be linear16 or float32")
    language = obj.get("language", "en")
    if not isinstance(language, str) or len(language) > 16:
        raise bad("language must be a language code such as en")
    model = obj.get("model")
    if "model" in obj and not isinstance(model, str):
        raise bad(f"unknown model {describe(model)}")
    return rate, encoding, language, bool(obj.get("interim_results", True)), model


@dataclass(frozen=True)
class TranscribeConfig(WireMessage):
    """The first message: the audio the client will send. The server answers :class:`TranscribeReady`."""

    type: ClassVar[str] = "config"
    sample_rate_hz: int = 16000
    """8000 to 48000; the server resamples once per stream."""
    encoding: str = "linear16"
    """One of :data:`ENCODINGS`."""
    language: str = "en"
    """A language code (``en``, ``en-US``: the server uses the part before ``-``)."""
    interim_results: bool = True
    """Send interim (non-final) results."""
    model: str | None = None
    """An STT model id; ``None``: the server's default."""

    @property
    def base_language(self) -> str:
        """The language without its region, lower case (``en-US`` → ``en``), as the engine takes it."""
        return self.language.split("-")[0].lower()

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "type": self.type,
            "sample_rate_hz": self.sample_rate_hz,
            "encoding": self.encoding,
            "language": self.language,
            "interim_results": self.interim_results,
        }
        if self.model is not None:
            obj["model"] = self.model
        return obj

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidValue` ``invalid_config``. Unknown fields are ignored."""
        return cls(*parse_audio_fields(obj))


TranscribeClientMessage = AudioMessage | EndMessage
"""What a configured stream receives (a binary frame arrives as an :class:`AudioMessage`)."""

_CLIENT: dict[str, type[TranscribeClientMessage]] = {m.type: m for m in (AudioMessage, EndMessage)}


def parse_config(data: str | bytes) -> TranscribeConfig:
    """The first message of a stream.

    Raises:
        InvalidValue: ``invalid_config`` (a binary frame, not JSON, not a config, a bad field).
    """
    obj = config_object(
        data,
        binary_message='the first message must be a text {"type": "config", ...} message',
        json_message="the first message must be a JSON config",
    )
    return TranscribeConfig.from_json(obj)


def parse_client_message(data: str | bytes) -> TranscribeClientMessage:
    """A frame after the config: a binary frame (``bytes``) is audio as it is; a text frame is JSON.

    Raises:
        InvalidRequest: ``invalid_json``, ``invalid_base64``, ``unexpected_config``,
            ``unknown_message``.
    """
    if not isinstance(data, str):
        return AudioMessage(bytes(data))
    return typed_message(loads(data), _CLIENT, configured="stream")


# ------------------------------------------------------------------------------- server events


@dataclass(frozen=True)
class TranscribeReady(WireMessage):
    """The config is accepted; the stream's limits."""

    type: ClassVar[str] = "ready"
    sample_rate_hz: int
    encoding: str
    max_message_bytes: int
    """Larger messages close the stream with 1009."""
    idle_timeout_s: float
    """No message for this long closes the stream with 1000."""
    max_session_s: float
    """The stream is closed with 1008 after this long."""


def _objects(obj: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    items = get_list(obj, key)
    if not all(isinstance(item, dict) for item in items):
        raise invalid("invalid_event", f"{key} must be objects", param=key)
    return items


@dataclass(frozen=True)
class Alternative(JsonFields):
    """One hypothesis of a result."""

    transcript: str
    confidence: float
    """0 to 1: the model's confidence in a final; 0.0 for interim results."""


@dataclass(frozen=True)
class RecognitionResult:
    """A result: interim (replaces the previous interim) or final (never revised)."""

    alternatives: tuple[Alternative, ...]
    is_final: bool
    stability: float
    """0 to 1, how likely an interim result is to stay as it is (0.0 for finals)."""
    result_end_time: float
    """Seconds of audio from the start of the stream to the end of this result."""

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return {
            "alternatives": [a.to_json() for a in self.alternatives],
            "is_final": self.is_final,
            "stability": self.stability,
            "result_end_time": self.result_end_time,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_event`` for a malformed result."""
        return cls(
            tuple(Alternative.from_json(a) for a in _objects(obj, "alternatives")),
            get_bool(obj, "is_final"),
            get_number(obj, "stability"),
            get_number(obj, "result_end_time"),
        )


@dataclass(frozen=True)
class ResultEvent(WireMessage):
    """``{"type": "result", "results": [...]}``; the server sends one result with one alternative."""

    type: ClassVar[str] = "result"
    results: tuple[RecognitionResult, ...]

    @classmethod
    def single(
        cls,
        transcript: str,
        *,
        is_final: bool,
        end_s: float,
        stability: float = 0.0,
        confidence: float = 0.0,
    ) -> Self:
        """One result with one alternative, as the server sends it: ``stability`` rounded to 2
        decimals and ``end_s`` to 3; ``confidence`` as given."""
        alternative = Alternative(transcript, confidence)
        return cls((RecognitionResult((alternative,), is_final, round(stability, 2), round(end_s, 3)),))

    @property
    def transcript(self) -> str:
        """The first alternative of the first result (``""`` if there is none)."""
        first = self.results[0].alternatives if self.results else ()
        return first[0].transcript if first else ""

    @property
    def is_final(self) -> bool:
        """Whether the first result is final."""
        return bool(self.results) and self.results[0].is_final

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "results": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(tuple(RecognitionResult.from_json(r) for r in _objects(obj, "results")))


@dataclass(frozen=True)
class SpeechEvent(WireMessage):
    """Voice activity: :data:`SPEECH_ACTIVITY_BEGIN` or :data:`SPEECH_ACTIVITY_END`."""

    type: ClassVar[str] = "speech_event"
    event: str
    time: float
    """Seconds of audio from the start of the stream."""


@dataclass(frozen=True)
class LagEvent(WireMessage):
    """Recognition is behind the audio; interim results were skipped (never finals)."""

    type: ClassVar[str] = "lag"
    lag_ms: int
    dropped_partials: int


TranscribeServerEvent = TranscribeReady | ResultEvent | SpeechEvent | LagEvent | ErrorEvent
"""What a transcribe client receives."""

_SERVER: dict[str, type[TranscribeServerEvent]] = {
    m.type: m for m in (TranscribeReady, ResultEvent, SpeechEvent, LagEvent, ErrorEvent)
}


def parse_server_event(text: str | bytes) -> TranscribeServerEvent:
    """A text frame from the server.

    Raises:
        InvalidRequest: ``invalid_json``, ``unknown_message`` (a newer server's extra, which a
            client may skip), ``invalid_event`` (a malformed field).
    """
    return typed_message(loads(text, message="server messages must be JSON"), _SERVER)
