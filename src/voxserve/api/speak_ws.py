"""``WS /v1/stream/speak``: text in (an LLM's tokens), audio out as soon as each fragment is complete.

Client → server, as JSON text messages: first ``{"type": "config", "voice": "...", "response_format":
"pcm" | "wav" | "mp3" | "opus", "speed": 1.0}``; then any number of ``{"type": "text", "text": "..."}``,
``{"type": "flush"}`` (speak what is buffered now), ``{"type": "cancel"}`` (barge-in: stop the audio
and drop what is queued) and finally ``{"type": "end"}`` (speak the rest, then close 1000).

Server → client: audio as binary frames (one continuous stream in the chosen format) and JSON events:
``{"type": "ready", ...}`` after the config, ``{"type": "sentence", "text", "start_s", "words"}`` before
each fragment's audio, ``{"type": "cancelled", "dropped_fragments"}`` once a cancel has taken effect
(no audio of the dropped text follows it), ``{"type": "done", "audio_s"}`` after ``end``, and
``{"type": "error", "code", "message"}``.

A bad config gets an error event and close 1008; a bad message gets an error event and the session
stays open; at capacity the server closes with 1013; no message for ``session_idle_timeout_s`` closes
with 1000; ``max_session_s`` and the message-size limit hold as on every WebSocket
(:mod:`voxserve.api.ws`). Wire messages: :mod:`voxserve.protocol.speak`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from voxserve.api.ws import EndSession, WsConnection, websocket_route
from voxserve.protocol import speak as wire
from voxserve.protocol.common import CancelMessage, EndMessage, ErrorEvent, FlushMessage, TextMessage
from voxserve.state import AppState
from voxserve.tts.speak import speak_config, start_speak_session
from voxserve.tts.stream import AudioData, Cancelled, Failed, Finished, SentenceStarted, SpeakSession

__all__ = ["SpeakHandler", "event_message", "router", "send_speak_event"]

router = APIRouter()


def event_message(event: Any) -> Any:
    """The wire message of a speak session event (``None`` for audio, which travels as binary frames
    and for events that are not the speak protocol's)."""
    if isinstance(event, SentenceStarted):
        sources = event.sources or (None,) * len(event.words)
        words = tuple(
            wire.Word(w.word, w.start_s, w.end_s, *(span if span else (None, None)))
            for w, span in zip(event.words, sources, strict=True)
        )
        return wire.SentenceEvent(event.text, event.start_s, words)
    if isinstance(event, Cancelled):
        return wire.CancelledEvent(event.dropped_fragments)
    if isinstance(event, Failed):
        return ErrorEvent.from_error(event.error)
    if isinstance(event, Finished):
        return wire.DoneEvent(round(event.audio_s, 3), event.samples)
    return None


async def send_speak_event(conn: WsConnection, event: Any) -> None:
    """Send a speak session event: audio as a binary frame, the rest as JSON."""
    if isinstance(event, AudioData):
        await conn.send_bytes(event.data)
        return
    message = event_message(event)
    if message is not None:
        await conn.send_json(message)


class SpeakHandler:
    """One ``/v1/stream/speak`` session: text in, audio and sentence events out."""

    def __init__(self, conn: WsConnection) -> None:
        self.conn = conn
        self.session: SpeakSession | None = None

    @classmethod
    async def open(cls, conn: WsConnection, state: AppState) -> SpeakHandler:
        """Read and resolve the config, start the session, answer ``ready``."""
        wire_config = wire.parse_config(await conn.receive_config())
        config = await speak_config(
            state,
            voice=wire_config.voice,
            response_format=wire_config.response_format,
            speed=wire_config.speed,
            model=wire_config.model,
        )
        handler = cls(conn)
        handler.session = start_speak_session(state, config, handler.on_event)
        await conn.send_json(
            wire.SpeakReady(config.voice.id, config.fmt, state.settings.output_sample_rate, config.speed)
        )
        return handler

    async def on_event(self, event: Any) -> None:
        await send_speak_event(self.conn, event)
        if isinstance(event, Finished):
            self.conn.end(EndSession(1000, "done"))

    async def on_message(self, data: str | bytes) -> None:
        session = self.session
        assert session is not None
        message = wire.parse_client_message(data)
        if isinstance(message, TextMessage):
            session.push(message.text)
        elif isinstance(message, FlushMessage):
            session.flush()
        elif isinstance(message, CancelMessage):
            await session.cancel()
        elif isinstance(message, EndMessage):
            session.end()

    async def drain(self, timeout_s: float) -> None:
        """Nothing to deliver: audio not yet sent is dropped when a speak session ends on an error."""

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


# Registered after the handler class it opens.
websocket_route(
    router, "/v1/stream/speak", admission=lambda s: s.speak_admission, open_session=SpeakHandler.open
)
