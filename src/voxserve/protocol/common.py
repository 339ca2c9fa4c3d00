"""Messages shared by voxserve's own streaming protocols (``/v1/stream/transcribe``, ``/speak``,
``/chat``): the same wire shape and the same rules wherever they appear.

Client → server: :class:`AudioMessage` (a binary frame, or ``{"type": "audio", "audio": "<base64>"}``),
:class:`TextMessage`, :class:`FlushMessage`, :class:`CancelMessage`, :class:`EndMessage`.
Server → client: :class:`ErrorEvent` ``{"type": "error", "code", "message"}``.

Audio frames stay ``bytes``: :func:`audio_from_frame` turns either form of audio into its bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from voxserve.errors import InvalidValue, VoxserveError
from voxserve.protocol.json import WireMessage, decode_base64, describe, invalid, loads

__all__ = [
    "AudioMessage",
    "CancelMessage",
    "EndMessage",
    "ErrorEvent",
    "FlushMessage",
    "TextMessage",
    "audio_from_frame",
    "config_object",
    "message_type",
    "typed_message",
    "unexpected_config",
    "unknown_message",
]

M = TypeVar("M", bound=WireMessage)


@dataclass(frozen=True)
class AudioMessage(WireMessage):
    """Audio from the client: a binary frame, or the same bytes as base64 in a text message.

    A missing ``audio`` field is zero bytes (as the server has always read it).
    """

    type: ClassVar[str] = "audio"
    audio: bytes
    """The raw audio bytes, in the encoding the session's config named."""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "audio": base64.b64encode(self.audio).decode("ascii")}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_base64`` unless ``audio`` is strict base64
        (no whitespace, data-URL prefix, URL-safe characters or misplaced padding)."""
        try:
            return cls(decode_base64(obj.get("audio", "")))
        except (binascii.Error, ValueError, TypeError):
            raise invalid("invalid_base64", "audio must be valid base64") from None


@dataclass(frozen=True)
class TextMessage(WireMessage):
    """A piece of text: LLM tokens to speak (``/speak``) or a typed user turn (``/chat``)."""

    type: ClassVar[str] = "text"
    text: str

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_text`` unless ``text`` is a string."""
        text = obj.get("text")
        if not isinstance(text, str):
            raise invalid("invalid_text", '"text" must be a string')
        return cls(text)


@dataclass(frozen=True)
class FlushMessage(WireMessage):
    """``/speak``: speak what is buffered now, although no sentence has ended."""

    type: ClassVar[str] = "flush"


@dataclass(frozen=True)
class CancelMessage(WireMessage):
    """Barge-in: stop the audio and drop what is queued; the session stays open."""

    type: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class EndMessage(WireMessage):
    """The client is done: the server finishes what it has (last final, last answer) and closes 1000."""

    type: ClassVar[str] = "end"


@dataclass(frozen=True)
class ErrorEvent(WireMessage):
    """``{"type": "error", "code", "message"}``: the session goes on unless a close follows."""

    type: ClassVar[str] = "error"
    code: str
    """Stable machine-readable code (``invalid_json``, ``invalid_base64``, ``backlog_full``, ...)."""
    message: str
    """For a human; never a stack trace."""

    @classmethod
    def from_error(cls, exc: VoxserveError) -> Self:
        """The event that reports ``exc`` to the peer."""
        return cls(exc.code, exc.message)


# ------------------------------------------------------------------------- parsing helpers


def message_type(obj: Any) -> Any:
    """The ``"type"`` of a parsed message (``None`` when it is not a JSON object)."""
    return obj.get("type") if isinstance(obj, dict) else None


def unknown_message(kind: Any) -> VoxserveError:
    """``unknown_message``: a ``"type"`` this protocol does not have (or no object at all)."""
    return invalid("unknown_message", f"unknown message type {describe(kind)}")


def typed_message(obj: Any, messages: Mapping[str, type[M]], *, configured: str | None = None) -> M:
    """The message of a parsed JSON value, by its ``"type"``: ``messages`` maps each type to its class.

    Raises:
        InvalidRequest: ``unexpected_config`` (a ``config`` when ``configured`` names what is already
            configured), ``unknown_message`` (no object, or a type not in ``messages``), and what
            the class's ``from_json`` raises.
    """
    kind = message_type(obj)
    if configured is not None and kind == "config":
        raise unexpected_config(configured)
    cls = messages.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise unknown_message(kind)
    return cls.from_json(obj)


def unexpected_config(what: str = "session") -> VoxserveError:
    """``unexpected_config``: a second ``config`` on a configured session."""
    return invalid("unexpected_config", f"the {what} is already configured")


def config_object(data: str | bytes, *, binary_message: str, json_message: str) -> dict[str, Any]:
    """The first message of a session as a ``{"type": "config", ...}`` object; anything else raises
    :class:`InvalidValue` ``invalid_config`` (the server then closes with 1008)."""
    if not isinstance(data, str):
        raise InvalidValue(binary_message, code="invalid_config")
    try:
        obj = loads(data, code="invalid_config", message=json_message)
    except VoxserveError as exc:
        raise InvalidValue(exc.message, code="invalid_config") from None
    if not isinstance(obj, dict) or obj.get("type") != "config":
        raise InvalidValue('the first message must be {"type": "config", ...}', code="invalid_config")
    return obj


def audio_from_frame(frame: str | bytes) -> bytes:
    """The audio bytes of a binary frame (as is) or of an ``{"type": "audio", ...}`` text message.

    Raises:
        InvalidRequest: ``invalid_json``, ``unknown_message`` (another type), ``invalid_base64``.
    """
    if not isinstance(frame, str):
        return bytes(frame)
    obj = loads(frame)
    if message_type(obj) != AudioMessage.type:
        raise unknown_message(message_type(obj))
    return AudioMessage.from_json(obj).audio
