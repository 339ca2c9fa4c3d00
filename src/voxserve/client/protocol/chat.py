"""``WS /v1/stream/chat`` (a voice chat with the server's LLM), sans I/O: typed events from the
server's messages, the messages a session sends, and :class:`Answer` for one typed turn.

The wire messages are :mod:`voxserve.protocol.chat`'s; the config is built here, since the client
sends ``language: null`` for the server's default."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from voxserve.client.errors import ClientError, closed_early
from voxserve.client.events import (
    ChatCancelled,
    ChatError,
    ChatEvent,
    ChatResponseDelta,
    ChatResponseDone,
    ChatResponseStarted,
    ChatSpeechStarted,
    ChatTranscript,
    Sentence,
)
from voxserve.client.protocol.session import (
    AUDIO_FRAME_BYTES,
    END,
    Handshake,
    Outgoing,
    cut_audio,
    typed,
    unexpected,
)
from voxserve.client.protocol.words import sentence
from voxserve.protocol import chat as wire
from voxserve.protocol.common import CancelMessage, ErrorEvent, TextMessage
from voxserve.protocol.speak import CancelledEvent, SentenceEvent

__all__ = ["NOT_OPEN", "Answer", "ChatProtocol", "Turn", "ask", "chat", "chat_event"]

NOT_OPEN = "the chat is not open: use it as a context manager (or call open() first)"
_CANCEL = CancelMessage().to_text()


def chat_event(message: str | bytes) -> ChatEvent | None:
    """The typed event for a ``WS /v1/stream/chat`` message (``None`` for ``ready``, ``done`` and
    types this version does not know)."""
    if isinstance(message, bytes):
        return message
    event = typed(wire.parse_server_event, message)
    if isinstance(event, wire.TranscriptEvent):
        return ChatTranscript(event.text, event.is_final, float(event.stability))
    if isinstance(event, wire.SpeechStartedEvent):
        return ChatSpeechStarted(float(event.time))
    if isinstance(event, wire.ResponseStarted):
        return ChatResponseStarted(event.response_id, event.user_text)
    if isinstance(event, wire.ResponseTextDelta):
        return ChatResponseDelta(event.response_id, event.delta)
    if isinstance(event, wire.ResponseDone):
        return ChatResponseDone(event.response_id, event.text, event.interrupted)
    if isinstance(event, SentenceEvent):
        return sentence(event)
    if isinstance(event, CancelledEvent):
        return ChatCancelled(event.dropped_fragments)
    if isinstance(event, ErrorEvent):
        return ChatError(event.code, event.message)
    return None


class ChatProtocol(Handshake):
    """One chat session: the config is sent, ``ready`` awaited (kept in :attr:`ready`); then any
    number of messages go either way."""

    path = "/v1/stream/chat"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.ready: dict[str, Any] = {}

    def start(self) -> list[Outgoing]:
        return [json.dumps(self.config)]

    def handshake(self, event: dict[str, Any]) -> list[Outgoing]:
        if event.get("type") != "ready":
            raise unexpected(event)
        self.ready, self.opened = event, True
        return []

    @staticmethod
    def receive(message: str | bytes) -> ChatEvent | None:
        """The typed event of a message (see :func:`chat_event`)."""
        return chat_event(message)

    @staticmethod
    def say(text: str) -> str:
        return TextMessage(text).to_text()

    @staticmethod
    def audio(pcm: bytes) -> list[bytes]:
        return cut_audio(pcm, AUDIO_FRAME_BYTES)

    cancel = _CANCEL
    end = END


class Answer:
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
            raise closed_early("the chat ended before the answer was complete")
        return self.text, bytes(self.audio)


def chat(
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
) -> ChatProtocol:
    """``WS /v1/stream/chat``: a voice chat with the server's LLM, opened by ``with`` (``async with``
    on :class:`AsyncClient`).

    Speech fields as in :meth:`speak_stream_events` (the answers' audio), audio fields as in
    :meth:`transcribe_stream` (the microphone audio sent with ``send_audio``); ``system_prompt``
    (the server's ``llm_system_prompt`` by default) and ``barge_in`` (the user speaking cancels
    the answer). A server with no LLM raises ``ClientError`` ``llm_not_configured``. Iterate the
    session in one thread or task; send from another (a microphone's) or between events.
    """
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
    return ChatProtocol(cfg)


@dataclass(frozen=True)
class Turn:
    """One typed turn in a new chat (:meth:`ask`)."""

    chat: ChatProtocol
    text: str


def ask(
    text: str,
    *,
    voice: str | None = None,
    response_format: str = "pcm",
    speed: float = 1.0,
    system_prompt: str | None = None,
) -> Turn:
    """One typed turn in a new chat: ``(answer text, answer audio)`` (see the chat session's ``ask``)."""
    return Turn(
        chat(voice=voice, response_format=response_format, speed=speed, system_prompt=system_prompt), text
    )
