"""What every WebSocket route of the client shares, sans I/O: the opening handshake, and the shape
of a session that streams a source up (text or audio) while events come down.

A front end drives a :class:`StreamProtocol` this way, and does nothing else:

1. connect to :attr:`~Handshake.path`; send :meth:`~Handshake.start`'s messages;
2. until :attr:`~Handshake.opened`, read a message and send what :meth:`~Handshake.accept` returns;
3. in a sender (a task, or a thread): for each item of :attr:`~StreamProtocol.source`, for each of
   its :meth:`~StreamProtocol.pieces`, wait (at most :data:`SEND_WAIT_S`) until
   :meth:`~StreamProtocol.can_send`, then send :meth:`~StreamProtocol.send`; at the end send
   :meth:`~StreamProtocol.finish`;
4. meanwhile yield the events :meth:`~StreamProtocol.receive` returns for each message, until
   :attr:`~StreamProtocol.finished` or the server closes; after a normal close, raise
   :meth:`~StreamProtocol.closed` if it returns an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from voxserve.client.errors import ClientError, error_from_event
from voxserve.client.protocol.http import json_value
from voxserve.errors import VoxserveError
from voxserve.protocol.common import EndMessage

__all__ = [
    "AUDIO_FRAME_BYTES",
    "END",
    "SEND_WAIT_S",
    "TEXT_PIECE_CHARS",
    "Handshake",
    "AudioSource",
    "Outgoing",
    "StreamProtocol",
    "TextSource",
    "cut_audio",
    "cut_text",
    "parse_event",
    "typed",
    "unexpected",
]

E = TypeVar("E")
W = TypeVar("W")

Outgoing: TypeAlias = str | bytes
"""A message to send: a text frame or a binary frame."""

TextSource: TypeAlias = str | Iterable[str] | AsyncIterable[str]
"""Text to speak: one string, or pieces (LLM tokens) from a sync or async iterator."""

AudioSource: TypeAlias = bytes | Iterable[bytes] | AsyncIterable[bytes]
"""Raw PCM to transcribe: one buffer, or chunks from a sync or async iterator (a microphone)."""

TEXT_PIECE_CHARS = 1000
"""Longest text message sent (the server accepts ``max_input_chars``, 4096 by default)."""
AUDIO_FRAME_BYTES = 32000
"""Binary audio frames are cut to this size (the server's limit is 256 KiB)."""
SEND_WAIT_S = 10.0
"""How long a sender waits for :meth:`StreamProtocol.can_send` before sending anyway."""
END = EndMessage().to_text()


def cut_text(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters."""
    if not isinstance(text, str):
        raise TypeError(f"text pieces must be str, not {type(text).__name__}")
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


def cut_audio(data: bytes, size: int) -> list[bytes]:
    """``data`` in frames of at most ``size`` bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"audio chunks must be bytes, not {type(data).__name__}")
    data = bytes(data)
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse_event(message: str | bytes) -> dict[str, Any]:
    """A JSON event from the server; an error event is raised as :class:`ClientError`, and so is a
    message that is not a JSON object (``invalid_event``)."""
    event = json_value(message)
    if not isinstance(event, dict):
        raise ClientError("the server sent an event that is not a JSON object", code="invalid_event")
    if event.get("type") == "error":
        raise error_from_event(event)
    return event


def typed(parse: Callable[[str | bytes], W], message: str | bytes) -> W | None:
    """A server message read by its :mod:`voxserve.protocol` parser: ``None`` for a type the parser
    does not know (a newer server's event: skipped), :class:`ClientError` ``invalid_event`` for a
    message that is not valid."""
    try:
        return parse(message)
    except VoxserveError as exc:
        if exc.code in ("unknown_message", "unknown_event"):
            return None
        raise ClientError(f"the server sent an invalid event: {exc.message}", code="invalid_event") from None


def unexpected(event: dict[str, Any]) -> ClientError:
    """``unexpected_event``: the handshake got an event it did not expect."""
    return ClientError(f"unexpected event {event.get('type')!r}", code="unexpected_event")


class Handshake(ABC):
    """The opening of a WebSocket route."""

    path: ClassVar[str]
    """Where to connect, relative to the client's WebSocket base URL."""

    def __init__(self) -> None:
        self.opened = False
        """True once the handshake is complete."""

    def start(self) -> list[Outgoing]:
        """The messages to send as soon as the connection is open."""
        return []

    def accept(self, message: str | bytes) -> list[Outgoing]:
        """Take a message read during the handshake; the messages to send in reply."""
        return self.handshake(parse_event(message))

    @abstractmethod
    def handshake(self, event: dict[str, Any]) -> list[Outgoing]:
        """Take a (non-error) event read during the handshake; set :attr:`opened` when it is done."""


class StreamProtocol(Handshake, Generic[E]):
    """A session that sends :attr:`source` in pieces while it receives events of type ``E``."""

    unit: ClassVar[tuple[type, ...]]
    """What a source may be instead of an iterable of them (``str`` for text, ``bytes`` for audio)."""

    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source = source
        """A single :attr:`unit`, or a sync or async iterable of them."""
        self.finished = False
        """True when nothing more is to be received: the front end stops reading (and closes)."""

    @property
    def unit_name(self) -> str:
        return self.unit[0].__name__

    def single(self) -> bool:
        """Whether :attr:`source` is one item rather than an iterable of items."""
        return isinstance(self.source, self.unit)

    @abstractmethod
    def pieces(self, item: Any) -> list[Any]:
        """One item of the source, cut into the pieces sent one message each (type-checked)."""

    def can_send(self, piece: Any) -> bool:
        """Whether the server has room for ``piece`` now (flow control); else wait for events."""
        return True

    @abstractmethod
    def send(self, piece: Any) -> Outgoing:
        """The message that carries ``piece`` (called just before it is sent)."""

    @abstractmethod
    def finish(self) -> list[Outgoing]:
        """The messages that end the source."""

    @abstractmethod
    def receive(self, message: str | bytes) -> list[E]:
        """The events a message from the server carries; error events are raised."""

    def closed(self, code: int | None, reason: str) -> ClientError | None:
        """What to raise when the server closed normally (1000) while :attr:`finished` is false."""
        return None
