"""``WS /v1/stream/speak``, sans I/O: text pieces up, audio and :class:`Sentence` events down.

The wire messages are :mod:`voxserve.protocol.speak`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxserve.client.errors import ClientError, closed_early
from voxserve.client.events import Sentence, SpeakDone, SpeakEvent
from voxserve.client.protocol.session import (
    END,
    TEXT_PIECE_CHARS,
    Outgoing,
    StreamProtocol,
    TextSource,
    cut_text,
    typed,
)
from voxserve.client.protocol.words import sentence
from voxserve.protocol import speak as wire
from voxserve.protocol.common import ErrorEvent, TextMessage

__all__ = ["SpeakProtocol", "speak_stream", "speak_stream_events"]


class SpeakProtocol(StreamProtocol[SpeakEvent]):
    """One speak session. Flow control: the text sent but not yet spoken (``sentence`` events tell
    what has been) stays under ``max_pending_chars``, which the server refuses with ``backlog_full``.

    ``audio_only``: :meth:`receive` returns audio only, and hands each :class:`Sentence` to
    ``on_sentence`` instead.
    """

    path = "/v1/stream/speak"
    unit = (str,)

    def __init__(
        self,
        text: TextSource,
        config: wire.SpeakConfig,
        *,
        max_pending_chars: int = 8000,
        audio_only: bool = False,
        on_sentence: Callable[[Sentence], Any] | None = None,
    ) -> None:
        super().__init__(text)
        self.config = config
        self.max_pending_chars = max_pending_chars
        self.audio_only = audio_only
        self.on_sentence = on_sentence
        self.sent_chars = 0
        self.spoken_chars = 0
        self.done = False

    def start(self) -> list[Outgoing]:
        return [self.config.to_text()]

    def handshake(self, event: dict[str, Any]) -> list[Outgoing]:
        self.opened = True  # "ready"
        return []

    def pieces(self, item: Any) -> list[str]:
        return cut_text(item, TEXT_PIECE_CHARS)

    def pending(self, extra: int) -> bool:
        """Whether ``extra`` more characters would pass the limit (one piece may always go alone)."""
        unspoken = self.sent_chars - self.spoken_chars
        return unspoken > 0 and unspoken + extra > self.max_pending_chars

    def can_send(self, piece: str) -> bool:
        return not self.pending(len(piece))

    def send(self, piece: str) -> str:
        self.sent_chars += len(piece)
        return TextMessage(piece).to_text()

    def finish(self) -> list[Outgoing]:
        return [END]

    def receive(self, message: str | bytes) -> list[SpeakEvent]:
        if isinstance(message, bytes):
            return [message]
        event = typed(wire.parse_server_event, message)
        if isinstance(event, wire.SentenceEvent):
            spoken = sentence(event)
            self.spoken_chars += len(spoken.text)
            if not self.audio_only:
                return [spoken]
            if self.on_sentence is not None:
                self.on_sentence(spoken)
        elif isinstance(event, wire.DoneEvent):
            self.done = True
            if not self.audio_only:
                return [SpeakDone(float(event.audio_s))]
        elif isinstance(event, ErrorEvent):
            raise ClientError(event.message, code=event.code)
        return []

    def closed(self, code: int | None, reason: str) -> ClientError | None:
        if self.done:
            return None
        return closed_early(reason or "the server closed the session before it was done", code)


def speak_stream_events(
    text: TextSource,
    *,
    voice: str | None = None,
    response_format: str = "pcm",
    speed: float = 1.0,
    model: str | None = None,
    max_pending_chars: int = 8000,
) -> SpeakProtocol:
    """``WS /v1/stream/speak``: send ``text`` (a str, or pieces from an iterator: LLM tokens) while
    receiving; yield audio ``bytes`` (one continuous stream in ``response_format``: ``pcm`` s16le
    24 kHz, ``wav``, ``mp3``, ``opus``), a :class:`Sentence` before each fragment's audio, and
    :class:`SpeakDone` at the end.

    :class:`AsyncClient` takes sync and async iterators (a sync one is read in a thread, so a
    blocking LLM streamer never blocks the loop); :class:`Client` takes sync ones. Error events — a
    bad config, a fragment the engine failed on, more text than the server holds — are raised as
    :class:`ClientError`.
    """
    config = wire.SpeakConfig(voice, response_format, speed, model)
    return SpeakProtocol(text, config, max_pending_chars=max_pending_chars)


def speak_stream(
    text: TextSource,
    *,
    voice: str | None = None,
    response_format: str = "pcm",
    speed: float = 1.0,
    model: str | None = None,
    on_sentence: Callable[[Sentence], Any] | None = None,
) -> SpeakProtocol:
    """:meth:`speak_stream_events`, audio only; ``on_sentence`` is called with each
    :class:`Sentence` just before its audio."""
    config = wire.SpeakConfig(voice, response_format, speed, model)
    return SpeakProtocol(text, config, audio_only=True, on_sentence=on_sentence)
