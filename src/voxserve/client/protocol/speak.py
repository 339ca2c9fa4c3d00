"""``WS /v1/stream/speak``, sans I/O: text pieces up, audio and :class:`Sentence` events down."""

from __future__ import annotations

import json
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
    parse_event,
)
from voxserve.client.protocol.words import sentence

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
        config: dict[str, Any],
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
        return [json.dumps(self.config)]

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
        return json.dumps({"type": "text", "text": piece})

    def finish(self) -> list[Outgoing]:
        return [END]

    def receive(self, message: str | bytes) -> list[SpeakEvent]:
        if isinstance(message, bytes):
            return [message]
        event = parse_event(message)
        kind = event.get("type")
        if kind == "sentence":
            spoken = sentence(event)
            self.spoken_chars += len(spoken.text)
            if not self.audio_only:
                return [spoken]
            if self.on_sentence is not None:
                self.on_sentence(spoken)
        elif kind == "done":
            self.done = True
            if not self.audio_only:
                return [SpeakDone(float(event.get("audio_s", 0.0)))]
        return []

    def closed(self, code: int | None, reason: str) -> ClientError | None:
        if self.done:
            return None
        return closed_early(reason or "the server closed the session before it was done", code)


def _config(voice: str | None, response_format: str, speed: float, model: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"type": "config", "response_format": response_format, "speed": speed}
    if voice is not None:
        cfg["voice"] = voice
    if model is not None:
        cfg["model"] = model
    return cfg


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
    config = _config(voice, response_format, speed, model)
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
    config = _config(voice, response_format, speed, model)
    return SpeakProtocol(text, config, audio_only=True, on_sentence=on_sentence)
