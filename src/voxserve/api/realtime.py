"""``WS /v1/realtime?intent=transcription``: the OpenAI Realtime transcription subset.

Both dialects are accepted: beta (``transcription_session.update`` → ``transcription_session.updated``)
and GA (``session.update`` with ``session.type == "transcription"`` → ``session.updated``); the server
answers in the dialect the client last used. Audio is ``pcm16`` at 24 kHz (resampled once per stream
with a stateful resampler), or real G.711 μ-law / A-law at 8 kHz when the session asks.

Deltas (``conversation.item.input_audio_transcription.delta``) carry only confirmed words, so they are
append-only; ``.completed`` carries the final transcript. Server VAD defaults to OpenAI's: threshold 0.5,
prefix padding 300 ms, silence 500 ms; ``turn_detection: null`` means manual ``commit`` only.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voxserve.api.state import AppState
from voxserve.api.stt_common import admitted, pcm_converter, session_config, vad_for
from voxserve.audio.decode import decode_base64
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import VoxserveError
from voxserve.runtime.transcriber import Transcriber
from voxserve.stt.session import Final, Partial, SpeechStarted, SpeechStopped, UtteranceFailed

__all__ = ["router"]

router = APIRouter()

_FORMATS = {"pcm16": ("linear16", 24000), "g711_ulaw": ("mulaw", 8000), "g711_alaw": ("alaw", 8000)}
_GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


class RealtimeSession:
    """The state of one Realtime connection (dialect, format, items) around a :class:`Transcriber`."""

    def __init__(self, ws: WebSocket, state: AppState) -> None:
        self.ws = ws
        self.state = state
        self.dialect = "beta" if ws.query_params.get("intent") == "transcription" else "ga"
        self.format = "pcm16"
        self.model = "whisper-1"
        self.language: str | None = "en"
        self.prompt = ""
        self.turn_detection: dict[str, Any] | None = {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
        self.transcriber: Transcriber | None = None
        self.convert = pcm_converter("linear16", 24000)
        self.items: dict[int, str] = {}
        self.sent: dict[int, str] = {}
        self.previous_item: str | None = None
        self.buffered_ms = 0.0
        self.manual_item = 0

    # --- wire helpers -------------------------------------------------------------------------------

    async def send(self, obj: dict[str, Any]) -> None:
        obj.setdefault("event_id", "event_" + secrets.token_hex(8))
        await self.ws.send_text(json.dumps(obj, separators=(",", ":")))

    async def error(
        self, code: str, message: str, event_id: str | None = None, param: str | None = None
    ) -> None:
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": event_id,
                },
            }
        )

    def session_object(self) -> dict[str, Any]:
        td = self.turn_detection
        if self.dialect == "beta":
            return {
                "object": "realtime.transcription_session",
                "input_audio_format": self.format,
                "input_audio_transcription": {
                    "model": self.model,
                    "language": self.language,
                    "prompt": self.prompt,
                },
                "turn_detection": td,
                "max_message_bytes": self.state.settings.ws_max_message_bytes,
            }
        fmt = {v: k for k, v in _GA_FORMATS.items()}[self.format]
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt},
                    "transcription": {"model": self.model, "language": self.language, "prompt": self.prompt},
                    "turn_detection": td,
                }
            },
            "max_message_bytes": self.state.settings.ws_max_message_bytes,
        }

    # --- session lifecycle --------------------------------------------------------------------------

    async def build(self) -> None:
        """(Re)create the transcriber for the current settings."""
        if self.transcriber is not None:
            await self.transcriber.finish(timeout_s=5)
            await self.transcriber.close()
        model = self.model
        pool = self.state.registry.stt_pool(model)
        await pool.start()
        td = self.turn_detection
        config = session_config(
            self.state.settings,
            threshold=float(td.get("threshold", 0.5)) if td else None,
            silence_ms=int(td.get("silence_duration_ms", 500)) if td else None,
            prefix_ms=int(td.get("prefix_padding_ms", 300)) if td else None,
        )
        if td is None:
            from dataclasses import replace

            config = replace(config, vad_threshold=None)
        self.transcriber = Transcriber(
            pool,
            config,
            await vad_for(self.ws.app),
            self.on_event,
            options=TranscribeOptions(
                language=self.language,
                prompt=self.prompt or None,
                beam_size=self.state.settings.stt_beam_size,
            ),
        )
        encoding, rate = _FORMATS[self.format]
        self.convert = pcm_converter(encoding, rate)

    async def update(self, event: dict[str, Any], dialect: str) -> None:
        self.dialect = dialect
        session = event.get("session")
        if not isinstance(session, dict):
            await self.error("invalid_session", "session must be an object", event.get("event_id"), "session")
            return
        try:
            if dialect == "beta":
                fmt = session.get("input_audio_format", self.format)
                transcription = session.get("input_audio_transcription") or {}
                td = session.get("turn_detection", self.turn_detection)
            else:
                audio_in = _object(_object(session.get("audio"), "session.audio").get("input"), "audio.input")
                fmt_obj = audio_in.get("format") or {"type": "audio/pcm", "rate": 24000}
                fmt_obj = _object(fmt_obj, "audio.input.format")
                fmt = _GA_FORMATS.get(str(fmt_obj.get("type")), "?")
                if fmt == "pcm16" and fmt_obj.get("rate", 24000) != 24000:
                    raise _Invalid("unsupported_format", "audio/pcm must be 24000 Hz")
                transcription = audio_in.get("transcription") or {}
                td = audio_in.get("turn_detection", self.turn_detection)
            if not isinstance(fmt, str) or fmt not in _FORMATS:
                raise _Invalid("unsupported_format", f"unsupported input audio format {fmt!r}")
            if td is not None and (not isinstance(td, dict) or td.get("type", "server_vad") != "server_vad"):
                raise _Invalid("unsupported_turn_detection", "turn_detection must be server_vad or null")
            _check_turn_detection(td)
            transcription = _object(transcription, "transcription")
            model = transcription.get("model", self.model)
            for key in ("model", "language", "prompt"):
                if not isinstance(transcription.get(key, ""), str | None) or (
                    key == "model" and model is None
                ):
                    raise _Invalid("invalid_value", f"transcription.{key} must be a string")
            self.state.registry.stt_pool(model)  # 404-style check
        except _Invalid as exc:
            await self.error(exc.code, exc.message, event.get("event_id"))
            return
        except VoxserveError as exc:
            await self.error(exc.code, exc.message, event.get("event_id"))
            return
        self.format = fmt
        self.model = model
        self.language = transcription.get("language", self.language) or None
        self.prompt = transcription.get("prompt", self.prompt) or ""
        self.turn_detection = None if td is None else {**(self.turn_detection or {}), **td}
        await self.build()
        kind = "transcription_session.updated" if dialect == "beta" else "session.updated"
        await self.send({"type": kind, "session": self.session_object()})

    def item_id(self, utterance: int) -> str:
        if utterance not in self.items:
            self.items[utterance] = "item_" + secrets.token_hex(10)
        return self.items[utterance]

    async def on_event(self, event: Any) -> None:
        if isinstance(event, SpeechStarted):
            if self.turn_detection is None:
                return  # manual commit mode: no server VAD events, as with OpenAI
            await self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": int(event.start_s * 1000),
                    "item_id": self.item_id(event.utterance_id),
                }
            )
        elif isinstance(event, SpeechStopped):
            item = self.item_id(event.utterance_id)
            if self.turn_detection is not None:
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": int(event.end_s * 1000),
                        "item_id": item,
                    }
                )
            await self.committed(item)
        elif isinstance(event, Partial):
            await self.delta(event.utterance_id, event.committed_text)
        elif isinstance(event, UtteranceFailed):
            if event.reason == "decode_failed":
                await self.send(
                    {
                        "type": "conversation.item.input_audio_transcription.failed",
                        "item_id": self.item_id(event.utterance_id),
                        "content_index": 0,
                        "error": {
                            "type": "server_error",
                            "code": "transcription_failed",
                            "message": "decode failed",
                        },
                    }
                )
        elif isinstance(event, Final):
            item = self.item_id(event.utterance_id)
            sent = self.sent.get(event.utterance_id, "")
            if event.text.startswith(sent) and len(event.text) > len(sent):
                await self.delta(event.utterance_id, event.text)
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item,
                    "content_index": 0,
                    "transcript": event.text,
                    "usage": {"type": "duration", "seconds": round(event.end_s - event.start_s, 3)},
                }
            )

    async def committed(self, item: str) -> None:
        await self.send(
            {"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": self.previous_item}
        )
        created = "conversation.item.created" if self.dialect == "beta" else "conversation.item.added"
        await self.send(
            {
                "type": created,
                "previous_item_id": self.previous_item,
                "item": {
                    "id": item,
                    "object": "realtime.item",
                    "type": "message",
                    "status": "completed",
                    "role": "user",
                    "content": [{"type": "input_audio", "transcript": None}],
                },
            }
        )
        self.previous_item = item
        self.buffered_ms = 0.0

    async def delta(self, utterance: int, text: str) -> None:
        sent = self.sent.get(utterance, "")
        if not text.startswith(sent) or len(text) <= len(sent):
            return
        piece = text[len(sent) :]
        self.sent[utterance] = text
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": self.item_id(utterance),
                "content_index": 0,
                "delta": piece,
            }
        )

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        eid = event.get("event_id")
        assert self.transcriber is not None
        if kind == "input_audio_buffer.append":
            audio = event.get("audio")
            if not isinstance(audio, str):
                await self.error("invalid_audio", "audio must be a base64 string", eid, "audio")
                return
            try:
                data = decode_base64(audio)
                pcm = self.convert(data)
            except (binascii.Error, ValueError):
                await self.error("invalid_base64", "audio must be valid base64", eid, "audio")
                return
            except VoxserveError as exc:
                await self.error(exc.code, exc.message, eid, "audio")
                return
            self.buffered_ms += 1000 * len(pcm) / 16000
            await self.transcriber.feed(pcm)
        elif kind == "input_audio_buffer.commit":
            if self.buffered_ms < 100:
                await self.error(
                    "input_audio_buffer_commit_empty",
                    f"buffer too small: expected at least 100 ms of audio, got {self.buffered_ms:.0f} ms",
                    eid,
                )
                return
            await self.transcriber.commit()
        elif kind == "input_audio_buffer.clear":
            await self.transcriber.clear()
            self.buffered_ms = 0.0
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "transcription_session.update":
            await self.update(event, "beta")
        elif kind == "session.update":
            await self.update(event, "ga")
        else:
            await self.error("unknown_event", f"unknown event type {kind!r}", eid, "type")


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def _object(value: Any, name: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, ``{}`` if absent; an ``invalid_value`` error otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("invalid_value", f"{name} must be an object")
    return value


_TURN_DETECTION_RANGES = {
    "threshold": (0.0, 1.0),
    "silence_duration_ms": (0, 60_000),
    "prefix_padding_ms": (0, 60_000),
}


def _check_turn_detection(td: dict[str, Any] | None) -> None:
    """The numbers of a ``server_vad`` turn detection are numbers, in range (NaN is not)."""
    for key, (lo, hi) in _TURN_DETECTION_RANGES.items():
        value = (td or {}).get(key, lo)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise _Invalid("invalid_value", f"turn_detection.{key} must be a number from {lo} to {hi}")


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    state: AppState = ws.app.state.vox
    async with admitted(ws) as ok:
        if ok:
            await _serve(ws, state)


async def _serve(ws: WebSocket, state: AppState) -> None:
    session: RealtimeSession | None = None
    try:
        session = RealtimeSession(ws, state)
        await session.build()
        created = "transcription_session.created" if session.dialect == "beta" else "session.created"
        await session.send({"type": created, "session": session.session_object()})
        started = time.monotonic()
        settings = state.settings
        while True:
            remaining = settings.max_session_s - (time.monotonic() - started)
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(min(remaining, settings.session_idle_timeout_s)):
                    message = await ws.receive()
            except TimeoutError:
                # Whichever came first: the session limit, or a client silent for the idle timeout.
                if remaining <= settings.session_idle_timeout_s:
                    await ws.close(code=1008, reason="maximum session length reached")
                else:
                    await ws.close(code=1000, reason="idle timeout: no message received")
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await session.error("invalid_event", "events must be JSON text messages")
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError:
                await session.error("invalid_json", "the event is not valid JSON")
                continue
            if not isinstance(event, dict):
                await session.error("invalid_event", "the event must be a JSON object")
                continue
            await session.handle(event)
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None and session.transcriber is not None:
            await session.transcriber.close()
