"""The server-sent events of the HTTP routes: ``POST /v1/audio/speech`` with ``stream_format: "sse"``
and ``POST /v1/audio/transcriptions`` with ``stream=true``.

Each event is one ``data:`` line holding a JSON object (no ``event:`` field, no ``[DONE]``), as the
``openai`` SDK expects. :meth:`to_sse` gives the whole frame; reading the frames of a stream is
:mod:`voxserve.protocol.sse`'s job, and :func:`parse_speech_event` / :func:`parse_transcription_event`
type the JSON of one ``data`` field.

Speech: :class:`SpeechAudioDelta` per audio chunk, then :class:`SpeechAudioDone` (with usage), or
:class:`SpeechAudioError` if synthesis failed after the first byte.
Transcription: :class:`TranscriptTextDelta` per recognised segment, then :class:`TranscriptTextDone`,
or :class:`TranscriptionError`. (The transcription events keep non-ASCII text as UTF-8; the speech
events escape it, as each route always has.)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from voxserve.errors import VoxserveError
from voxserve.protocol.json import (
    WireMessage,
    describe,
    dumps,
    get_int,
    get_object,
    get_opt_str,
    get_str,
    invalid,
    loads,
)

__all__ = [
    "SpeechAudioDelta",
    "SpeechAudioDone",
    "SpeechAudioError",
    "SpeechEvent",
    "TranscriptTextDelta",
    "TranscriptTextDone",
    "TranscriptionError",
    "TranscriptionEvent",
    "parse_speech_event",
    "parse_transcription_event",
]


class _SseEvent(WireMessage):
    """An event sent as one SSE ``data:`` line."""

    ensure_ascii: ClassVar[bool] = True

    def to_text(self) -> str:
        return dumps(self.to_json(), ensure_ascii=self.ensure_ascii)

    def to_sse(self) -> bytes:
        """The whole SSE frame: ``data: {json}`` and a blank line (lone surrogates become ``?``)."""
        return b"data: " + self.to_text().encode("utf-8", "replace") + b"\n\n"


# ----------------------------------------------------------------------------------- speech


@dataclass(frozen=True)
class SpeechAudioDelta(_SseEvent):
    """One chunk of audio in the requested ``response_format``."""

    type: ClassVar[str] = "speech.audio.delta"
    audio: bytes
    """The chunk's bytes (base64 on the wire)."""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "audio": base64.b64encode(self.audio).decode("ascii")}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_base64`` if ``audio`` is not base64."""
        try:
            return cls(base64.b64decode(get_str(obj, "audio"), validate=True))
        except (binascii.Error, ValueError):
            raise invalid("invalid_base64", "audio must be valid base64", param="audio") from None


@dataclass(frozen=True)
class SpeechAudioDone(_SseEvent):
    """The last event of a successful stream. "Tokens" are input characters and audio chunks: a TTS
    engine has no tokenizer."""

    type: ClassVar[str] = "speech.audio.done"
    input_tokens: int
    output_tokens: int
    total_tokens: int

    @classmethod
    def for_speech(cls, input_chars: int, chunks: int) -> Self:
        """The usage of ``input_chars`` characters spoken as ``chunks`` audio chunks."""
        return cls(input_chars, chunks, input_chars + chunks)

    def to_json(self) -> dict[str, Any]:
        usage = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }
        return {"type": self.type, "usage": usage}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        usage = get_object(obj, "usage")
        return cls(
            get_int(usage, "input_tokens"), get_int(usage, "output_tokens"), get_int(usage, "total_tokens")
        )


@dataclass(frozen=True)
class SpeechAudioError(_SseEvent):
    """Synthesis failed after the first byte; the stream ends here."""

    type: ClassVar[str] = "speech.audio.error"
    code: str
    message: str
    error_type: str = "server_error"

    @classmethod
    def from_error(cls, exc: VoxserveError) -> Self:
        """The event that reports ``exc``."""
        return cls(exc.code, exc.message, exc.error_type)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "error": {"type": self.error_type, "code": self.code, "message": self.message},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        error = get_object(obj, "error")
        return cls(
            get_str(error, "code"), get_str(error, "message"), get_str(error, "type", default="server_error")
        )


SpeechEvent = SpeechAudioDelta | SpeechAudioDone | SpeechAudioError
"""The events of a speech SSE stream."""

_SPEECH: dict[str, type[SpeechEvent]] = {
    m.type: m for m in (SpeechAudioDelta, SpeechAudioDone, SpeechAudioError)
}


# ----------------------------------------------------------------------------------- transcription


@dataclass(frozen=True)
class TranscriptTextDelta(_SseEvent):
    """The text of one recognised segment, as soon as it is decoded."""

    type: ClassVar[str] = "transcript.text.delta"
    ensure_ascii: ClassVar[bool] = False
    delta: str


@dataclass(frozen=True)
class TranscriptTextDone(_SseEvent):
    """The last event: the whole transcript."""

    type: ClassVar[str] = "transcript.text.done"
    ensure_ascii: ClassVar[bool] = False
    text: str


@dataclass(frozen=True)
class TranscriptionError(_SseEvent):
    """Transcription failed after the first byte: ``{"type": "error", "error": {...}}``."""

    type: ClassVar[str] = "error"
    ensure_ascii: ClassVar[bool] = False
    code: str
    message: str
    error_type: str | None = "server_error"
    """``error.type``; ``None`` leaves it out."""

    @classmethod
    def from_error(cls, exc: VoxserveError) -> Self:
        """The event that reports ``exc``."""
        return cls(exc.code, exc.message, exc.error_type)

    def to_json(self) -> dict[str, Any]:
        error = {} if self.error_type is None else {"type": self.error_type}
        return {"type": self.type, "error": error | {"code": self.code, "message": self.message}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        error = get_object(obj, "error")
        return cls(get_str(error, "code"), get_str(error, "message"), get_opt_str(error, "type"))


TranscriptionEvent = TranscriptTextDelta | TranscriptTextDone | TranscriptionError
"""The events of a transcription SSE stream."""

_TRANSCRIPTION: dict[str, type[TranscriptionEvent]] = {
    m.type: m for m in (TranscriptTextDelta, TranscriptTextDone, TranscriptionError)
}


def _parse(data: str | bytes, kinds: Mapping[str, type[Any]]) -> Any:
    obj = loads(data, message="the event data is not valid JSON")
    if not isinstance(obj, dict):
        raise invalid("invalid_event", "the event data must be a JSON object")
    kind = obj.get("type")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise invalid("unknown_event", f"unknown event type {describe(kind)}", param="type")
    return cls.from_json(obj)


def parse_speech_event(data: str | bytes) -> SpeechEvent:
    """The ``data`` of one event of a speech SSE stream.

    Raises:
        InvalidRequest: ``invalid_json``, ``invalid_event`` (not an object, a malformed field),
            ``unknown_event``, ``invalid_base64``.
    """
    event: SpeechEvent = _parse(data, _SPEECH)
    return event


def parse_transcription_event(data: str | bytes) -> TranscriptionEvent:
    """The ``data`` of one event of a transcription SSE stream.

    Raises:
        InvalidRequest: ``invalid_json``, ``invalid_event`` (not an object, a malformed field),
            ``unknown_event``.
    """
    event: TranscriptionEvent = _parse(data, _TRANSCRIPTION)
    return event
