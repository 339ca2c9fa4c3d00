"""``WS /v1/realtime?intent=transcription``: the OpenAI Realtime transcription subset.

Both dialects are served. A client that sends ``OpenAI-Beta: realtime=v1`` in its handshake (as the
beta SDKs do) speaks beta: ``transcription_session.created``, ``transcription_session.update`` →
``transcription_session.updated``; any other client speaks GA: ``session.created`` with
``session.type == "transcription"``, ``session.update`` → ``session.updated``. The query
(``?intent=transcription``) does not pick the dialect: GA SDKs send it too. After an update the server
answers in the dialect of the update. Audio is ``pcm16`` at 24 kHz (resampled once per stream with a
stateful resampler), or real G.711 μ-law / A-law at 8 kHz when the session asks.

Deltas (``conversation.item.input_audio_transcription.delta``) carry only confirmed words, so they are
append-only; ``.completed`` carries the final transcript. Server VAD defaults to OpenAI's: threshold 0.5,
prefix padding 300 ms, silence 500 ms; ``turn_detection: null`` means manual ``commit`` only.
A session too far behind gets error ``transcription_backlog`` and close 1013, after the transcripts
of the audio it had accepted. Wire messages: :mod:`voxserve.protocol.realtime`.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from fastapi import APIRouter

from voxserve.api.ws import TranscribingHandler, WsConnection, websocket_route
from voxserve.audio.decode import PcmConverter
from voxserve.errors import InvalidRequest, VoxserveError
from voxserve.protocol import realtime as wire
from voxserve.state import AppState
from voxserve.stt.service import open_transcriber
from voxserve.stt.session import Final, Partial, SpeechStarted, SpeechStopped, UtteranceFailed
from voxserve.stt.transcriber import Transcriber, session_config

__all__ = ["RealtimeHandler", "realtime_error", "router"]

router = APIRouter()

_MIN_COMMIT_MS = 100


def realtime_error(exc: VoxserveError, event_id: str | None = None) -> dict[str, Any]:
    """The Realtime error event; it names the client event it answers, where that had an id."""
    return wire.RealtimeErrorEvent.from_error(exc, event_id or getattr(exc, "event_id", None)).to_json()


class RealtimeHandler(TranscribingHandler):
    """One Realtime connection: its dialect, session settings and items, around a :class:`Transcriber`."""

    def __init__(self, conn: WsConnection, state: AppState, dialect: wire.Dialect) -> None:
        self.conn = conn
        self.state = state
        self.dialect: wire.Dialect = dialect
        self.session = wire.TranscriptionSession(max_message_bytes=state.settings.ws_max_message_bytes)
        self.transcriber: Transcriber | None = None
        self.convert = PcmConverter("linear16", 24000)
        self.items: dict[int, str] = {}
        self.sent: dict[int, str] = {}
        self.previous_item: str | None = None
        self.buffered_ms = 0.0

    @classmethod
    async def open(cls, conn: WsConnection, state: AppState) -> RealtimeHandler:
        """Start a transcriber with the default session and announce it (``*.created``) in the
        dialect of the handshake."""
        dialect = wire.dialect_from_headers(conn.ws.headers)
        handler = cls(conn, state, dialect)
        await handler.build()
        await conn.send_json(wire.session_created(dialect, handler.session))
        return handler

    async def build(self) -> None:
        """(Re)create the transcriber for the current session settings."""
        if self.transcriber is not None:
            await self.transcriber.finish(timeout_s=5)
            await self.transcriber.close()
            self.transcriber = None
        td = self.session.turn_detection
        config = session_config(
            self.state.settings,
            threshold=None if td is None or td.threshold is None else float(td.threshold),
            silence_ms=None if td is None or td.silence_duration_ms is None else int(td.silence_duration_ms),
            prefix_ms=None if td is None or td.prefix_padding_ms is None else int(td.prefix_padding_ms),
        )
        if td is None:
            config = replace(config, vad_threshold=None)  # manual commits only
        self.transcriber = await open_transcriber(
            self.state,
            self.session.model,
            self.on_event,
            language=self.session.language,
            prompt=self.session.prompt or None,
            config=config,
        )
        encoding, rate = wire.AUDIO_FORMATS[self.session.input_audio_format]
        self.convert = PcmConverter(encoding, rate)

    # --- client events ------------------------------------------------------------------------------

    async def on_message(self, data: str | bytes) -> None:
        event = wire.parse_client_message(data)
        transcriber = self.transcriber
        assert transcriber is not None
        if isinstance(event, wire.InputAudioBufferAppend):
            try:
                samples = await transcriber.feed_encoded(event.audio, self.convert)
            except InvalidRequest as exc:  # bad audio: this event is refused, the session goes on
                exc.param = exc.param or "audio"
                await self.conn.send_error(exc, event.event_id)
                return
            self.buffered_ms += 1000 * samples / 16000
        elif isinstance(event, wire.InputAudioBufferCommit):
            if self.buffered_ms < _MIN_COMMIT_MS:
                raise wire.InvalidClientEvent(
                    f"buffer too small: expected at least {_MIN_COMMIT_MS} ms of audio, "
                    f"got {self.buffered_ms:.0f} ms",
                    code="input_audio_buffer_commit_empty",
                    event_id=event.event_id,
                )
            await transcriber.commit()
        elif isinstance(event, wire.InputAudioBufferClear):
            await transcriber.clear()
            self.buffered_ms = 0.0
            await self.conn.send_json(wire.Cleared())
        else:
            await self.update(event)

    async def update(self, event: wire.TranscriptionSessionUpdate | wire.SessionUpdate) -> None:
        """Apply a session update (checked first: a model not served here changes nothing)."""
        if event.model is not wire.KEEP:
            self.state.registry.stt_pool(event.model)  # raises model_not_found
        self.dialect = "beta" if isinstance(event, wire.TranscriptionSessionUpdate) else "ga"
        self.session = self.session.apply(event)
        await self.build()
        await self.conn.send_json(wire.session_updated(self.dialect, self.session))

    # --- transcriber events -------------------------------------------------------------------------

    def item_id(self, utterance: int) -> str:
        if utterance not in self.items:
            self.items[utterance] = "item_" + secrets.token_hex(10)
        return self.items[utterance]

    async def on_event(self, event: Any) -> None:
        send = self.conn.send_json
        server_vad = self.session.turn_detection is not None
        if isinstance(event, SpeechStarted):
            if server_vad:  # manual commit mode: no server VAD events, as with OpenAI
                item = self.item_id(event.utterance_id)
                await send(wire.SpeechStarted(int(event.start_s * 1000), item))
        elif isinstance(event, SpeechStopped):
            item = self.item_id(event.utterance_id)
            if server_vad:
                await send(wire.SpeechStopped(int(event.end_s * 1000), item))
            await send(wire.Committed(item, self.previous_item))
            await send(wire.item_created(self.dialect, item, self.previous_item))
            self.previous_item = item
            self.buffered_ms = 0.0
        elif isinstance(event, Partial):
            await self.delta(event.utterance_id, event.committed_text)
        elif isinstance(event, UtteranceFailed):
            if event.reason == "decode_failed":
                await send(wire.TranscriptionFailed(self.item_id(event.utterance_id)))
        elif isinstance(event, Final):
            await self.delta(event.utterance_id, event.text)
            usage = round(event.end_s - event.start_s, 3)
            await send(wire.TranscriptionCompleted(self.item_id(event.utterance_id), event.text, usage))

    async def delta(self, utterance: int, text: str) -> None:
        """Send what ``text`` adds to what this item has had (deltas only ever append)."""
        sent = self.sent.get(utterance, "")
        if not text.startswith(sent) or len(text) <= len(sent):
            return
        self.sent[utterance] = text
        await self.conn.send_json(wire.TranscriptionDelta(self.item_id(utterance), text[len(sent) :]))


# Registered after the handler class it opens.
websocket_route(
    router,
    "/v1/realtime",
    admission=lambda s: s.stt_admission,
    open_session=RealtimeHandler.open,
    encode_error=realtime_error,
)
