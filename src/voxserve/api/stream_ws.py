"""``WS /v1/stream/transcribe``: the mobile-app streaming protocol (Google Speech's result shape).

Client → server: first ``{"type": "config", "sample_rate_hz": 16000, "encoding": "linear16" |
"float32", "language": "en", "interim_results": true}``; then audio as binary frames or as
``{"type": "audio", "audio": "<base64>"}``; then ``{"type": "end"}``, which flushes the last final
before the server closes normally (1000).

Server → client: ``{"type": "result", "results": [{"alternatives": [{"transcript", "confidence"}],
"is_final", "stability", "result_end_time"}]}`` and ``{"type": "error", "code", "message"}``; extras
clients may ignore: ``{"type": "ready", ...limits}``, ``{"type": "speech_event", "event":
"SPEECH_ACTIVITY_BEGIN" | "SPEECH_ACTIVITY_END", "time"}`` and ``{"type": "lag", "lag_ms"}``.

A bad frame (invalid base64, odd-length PCM, NaN floats, JSON out of order) gets an error event and the
session stays open. A bad config closes with 1008; an oversized message closes with 1009; at capacity
the server closes with 1013, and so does a session too far behind (``transcription_backlog``, after
the finals of the audio it had accepted); no audio for ``session_idle_timeout_s`` closes with 1000.
(Wire messages: :mod:`voxserve.protocol.transcribe`; the session front end: :mod:`voxserve.api.ws`.)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from voxserve.api.ws import EndSession, TranscribingHandler, WsConnection, websocket_route
from voxserve.audio.decode import PcmConverter
from voxserve.protocol import transcribe as wire
from voxserve.protocol.common import AudioMessage, EndMessage
from voxserve.state import AppState
from voxserve.stt.service import open_transcriber
from voxserve.stt.session import Final, Lag, Partial, SpeechStarted, SpeechStopped
from voxserve.stt.transcriber import Transcriber

__all__ = ["TranscribeHandler", "check_stt_model", "router"]

router = APIRouter()


def check_stt_model(state: AppState, model: str | None) -> str:
    """The served model a streaming config names (the server's default if none): a served id, one of
    OpenAI's names or an alias; ``model_not_found`` otherwise."""
    return state.registry.stt_model_id(model or state.settings.stt_default_model)


class TranscribeHandler(TranscribingHandler):
    """One ``/v1/stream/transcribe`` session: audio frames in, results out."""

    def __init__(self, conn: WsConnection, config: wire.TranscribeConfig) -> None:
        self.conn = conn
        self.config = config
        self.convert = PcmConverter(config.encoding, config.sample_rate_hz)
        self.transcriber: Transcriber | None = None

    @classmethod
    async def open(cls, conn: WsConnection, state: AppState) -> TranscribeHandler:
        """Read and check the config, start the transcriber, answer ``ready``."""
        config = wire.parse_config(await conn.receive_config())
        model = check_stt_model(state, config.model)
        handler = cls(conn, config)
        handler.transcriber = await open_transcriber(
            state, model, handler.emit, language=config.base_language, interim=config.interim_results
        )
        settings = state.settings
        await conn.send_json(
            wire.TranscribeReady(
                sample_rate_hz=config.sample_rate_hz,
                encoding=config.encoding,
                max_message_bytes=settings.ws_max_message_bytes,
                idle_timeout_s=settings.session_idle_timeout_s,
                max_session_s=settings.max_session_s,
            )
        )
        return handler

    async def on_message(self, data: str | bytes) -> None:
        assert self.transcriber is not None
        message = wire.parse_client_message(data)
        if isinstance(message, EndMessage):
            await self.transcriber.finish()
            raise EndSession(1000, "end of stream")
        if isinstance(message, AudioMessage):
            await self.transcriber.feed_encoded(message.audio, self.convert)

    async def emit(self, event: Any) -> None:
        """The transcriber's events, in the wire's shape."""
        send = self.conn.send_json
        if isinstance(event, Final):
            if event.text:
                await send(
                    wire.ResultEvent.single(
                        event.text,
                        is_final=True,
                        end_s=event.end_s,
                        confidence=getattr(event, "confidence", 0.9),
                    )
                )
        elif isinstance(event, Partial):
            text = " ".join(t for t in (event.committed_text, event.tentative_text) if t)
            if self.config.interim_results and text:
                await send(
                    wire.ResultEvent.single(
                        text, is_final=False, end_s=event.end_s, stability=event.stability
                    )
                )
        elif isinstance(event, SpeechStarted):
            await send(wire.SpeechEvent(wire.SPEECH_ACTIVITY_BEGIN, round(event.start_s, 3)))
        elif isinstance(event, SpeechStopped):
            await send(wire.SpeechEvent(wire.SPEECH_ACTIVITY_END, round(event.end_s, 3)))
        elif isinstance(event, Lag):
            await send(wire.LagEvent(int(event.lag_s * 1000), event.dropped_partials))


# Registered after the handler class it opens.
websocket_route(
    router, "/v1/stream/transcribe", admission=lambda s: s.stt_admission, open_session=TranscribeHandler.open
)
