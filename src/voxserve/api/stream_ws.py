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
the server closes with 1013; no audio for ``session_idle_timeout_s`` closes with 1000.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voxserve.api.state import AppState
from voxserve.api.stt_common import admitted, parse_audio_config, pcm_converter, session_config, vad_for
from voxserve.audio.decode import decode_base64
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import VoxserveError
from voxserve.runtime.transcriber import Transcriber
from voxserve.stt.session import Final, Lag, Partial, SpeechStarted, SpeechStopped

__all__ = ["router"]

_log = logging.getLogger("voxserve.ws")

router = APIRouter()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


class _Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


@router.websocket("/v1/stream/transcribe")
async def stream_transcribe(ws: WebSocket) -> None:
    state: AppState = ws.app.state.vox
    try:
        async with admitted(ws) as ok:
            if ok:
                await _serve(ws, state)
    except WebSocketDisconnect:
        pass


async def _send(ws: WebSocket, obj: dict[str, Any]) -> None:
    await ws.send_text(json.dumps(obj, separators=(",", ":")))


_IDLE = (1000, "idle timeout: no audio received")
_TOO_LONG = (1008, "maximum session length reached")


async def _receive(ws: WebSocket, timeout_s: float, on_timeout: tuple[int, str] = _IDLE) -> dict[str, Any]:
    try:
        message: dict[str, Any] = dict(await asyncio.wait_for(ws.receive(), timeout_s))
    except TimeoutError:
        raise _Closed(*on_timeout) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


def _parse_config(text: str, state: AppState) -> dict[str, Any]:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError:
        raise _Closed(1008, "the first message must be a JSON config") from None
    if not isinstance(cfg, dict) or cfg.get("type") != "config":
        raise _Closed(1008, 'the first message must be {"type": "config", ...}')
    try:
        return parse_audio_config(cfg, state)
    except VoxserveError as exc:
        raise _Closed(1008, exc.message) from None


async def _serve(ws: WebSocket, state: AppState) -> None:
    settings = state.settings
    started = time.monotonic()
    try:
        first = await _receive(ws, settings.session_idle_timeout_s)
        text = first.get("text")
        if text is None:
            raise _Closed(1008, 'the first message must be a text {"type": "config", ...} message')
        cfg = _parse_config(text, state)
    except _Closed as closed:
        await _send(ws, _error("invalid_config", closed.reason))
        await ws.close(code=closed.code, reason=closed.reason[:120])
        return

    async def emit(event: Any) -> None:
        await _emit(ws, event, cfg["interim"])

    pool = state.registry.stt_pool(cfg["model"])
    await pool.start()
    vad = await vad_for(ws.app)
    transcriber = Transcriber(
        pool,
        session_config(settings, interim=cfg["interim"]),
        vad,
        emit,
        options=TranscribeOptions(
            language=cfg["language"], beam_size=settings.stt_beam_size, without_timestamps=False
        ),
    )
    convert = pcm_converter(cfg["encoding"], cfg["rate"])
    await _send(
        ws,
        {
            "type": "ready",
            "sample_rate_hz": cfg["rate"],
            "encoding": cfg["encoding"],
            "max_message_bytes": settings.ws_max_message_bytes,
            "idle_timeout_s": settings.session_idle_timeout_s,
            "max_session_s": settings.max_session_s,
        },
    )
    try:
        while True:
            remaining = settings.max_session_s - (time.monotonic() - started)
            if remaining <= 0:
                raise _Closed(*_TOO_LONG)
            # The wait ends at the idle timeout or at the session limit, whichever comes first.
            limit = _TOO_LONG if remaining < settings.session_idle_timeout_s else _IDLE
            message = await _receive(ws, min(settings.session_idle_timeout_s, remaining), limit)
            data = message.get("bytes")
            if data is None:
                text = message.get("text") or ""
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    await _send(ws, _error("invalid_json", "text messages must be JSON"))
                    continue
                kind = obj.get("type") if isinstance(obj, dict) else None
                if kind == "end":
                    await transcriber.finish()
                    await ws.close(code=1000, reason="end of stream")
                    return
                if kind == "config":
                    await _send(ws, _error("unexpected_config", "the stream is already configured"))
                    continue
                if kind != "audio":
                    await _send(ws, _error("unknown_message", f"unknown message type {kind!r}"))
                    continue
                try:
                    data = decode_base64(obj.get("audio", ""))
                except (binascii.Error, ValueError, TypeError):
                    await _send(ws, _error("invalid_base64", "audio must be valid base64"))
                    continue
            try:
                pcm = convert(data)
            except VoxserveError as exc:
                await _send(ws, _error(exc.code, exc.message))
                continue
            await transcriber.feed(pcm)
    except _Closed as closed:
        await transcriber.finish(timeout_s=5)
        await ws.close(code=closed.code, reason=closed.reason[:120])
    finally:
        await transcriber.close()


async def _emit(ws: WebSocket, event: Any, interim: bool) -> None:
    if isinstance(event, Final):
        if event.text:
            await _send(ws, _result(event.text, True, 0.0, event.end_s))
    elif isinstance(event, Partial):
        text = " ".join(t for t in (event.committed_text, event.tentative_text) if t)
        if interim and text:
            await _send(ws, _result(text, False, event.stability, event.end_s))
    elif isinstance(event, SpeechStarted):
        await _send(
            ws, {"type": "speech_event", "event": "SPEECH_ACTIVITY_BEGIN", "time": round(event.start_s, 3)}
        )
    elif isinstance(event, SpeechStopped):
        await _send(
            ws, {"type": "speech_event", "event": "SPEECH_ACTIVITY_END", "time": round(event.end_s, 3)}
        )
    elif isinstance(event, Lag):
        await _send(
            ws, {"type": "lag", "lag_ms": int(event.lag_s * 1000), "dropped_partials": event.dropped_partials}
        )


def _result(transcript: str, is_final: bool, stability: float, end_s: float) -> dict[str, Any]:
    return {
        "type": "result",
        "results": [
            {
                "alternatives": [{"transcript": transcript, "confidence": 0.9 if is_final else 0.0}],
                "is_final": is_final,
                "stability": 0.0 if is_final else round(stability, 2),
                "result_end_time": round(end_s, 3),
            }
        ],
    }
