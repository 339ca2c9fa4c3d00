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
with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voxserve.api.speech import check_model
from voxserve.api.state import AppState
from voxserve.api.stt_common import admitted
from voxserve.config import Settings
from voxserve.errors import InvalidValue, VoxserveError
from voxserve.runtime.pool import SynthStream
from voxserve.runtime.registry import EngineRegistry, ResolvedVoice
from voxserve.text.markup import Fragment
from voxserve.tts.stream import (
    STREAM_FORMATS,
    AudioData,
    Cancelled,
    Failed,
    Finished,
    SentenceStarted,
    SpeakEvent,
    SpeakSession,
)

__all__ = [
    "Sender",
    "SpeakConfig",
    "open_speak_session",
    "parse_speak_config",
    "receive_config",
    "resolve_speak_voice",
    "router",
    "start_speak_session",
]

_log = logging.getLogger("voxserve.speak")

router = APIRouter()


@dataclass(frozen=True)
class SpeakConfig:
    """A validated speak session configuration."""

    voice: ResolvedVoice
    fmt: str
    speed: float


async def parse_speak_config(state: AppState, cfg: Any) -> SpeakConfig:
    """Validate a ``config`` message; raises :class:`VoxserveError` with the client's error code."""
    if not isinstance(cfg, dict) or cfg.get("type") != "config":
        raise InvalidValue('the first message must be {"type": "config", ...}', code="invalid_config")
    fmt = cfg.get("response_format", "pcm")
    if fmt not in STREAM_FORMATS:
        raise InvalidValue(
            f"response_format must be one of {', '.join(STREAM_FORMATS)}", code="unsupported_format"
        )
    speed = cfg.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise InvalidValue("speed must be a number from 0.25 to 4.0", code="invalid_speed")
    voice = cfg.get("voice", state.settings.default_voice)
    if not isinstance(voice, str | dict):
        raise InvalidValue("voice must be a voice id", code="invalid_voice")
    if isinstance(voice, dict):
        voice = voice.get("id", "")
    engine_hint = check_model(state, cfg["model"]) if "model" in cfg else None
    resolved = await resolve_speak_voice(state.registry, str(voice), engine_hint=engine_hint)
    return SpeakConfig(resolved, fmt, float(speed))


async def resolve_speak_voice(
    registry: EngineRegistry, voice: str, *, engine_hint: str | None = None
) -> ResolvedVoice:
    """Resolve a voice and have its engine check it (starting the engine if needed), so a bad voice
    fails the configuration, not the first sentence."""
    resolved = await registry.resolve(voice, engine_hint=engine_hint)
    pool = registry.pool(resolved.engine)
    await pool.start()
    # An installed voice is known from the workers' handshake; only other names (Kokoro blends) need
    # the engine's word, which waits for a free worker: a busy server must not fail a plain config.
    if resolved.name not in {v.name for v in pool.voices}:
        await pool.call("check_voice", resolved.name)
    return resolved


def start_speak_session(
    state: AppState, config: SpeakConfig, emit: Any, *, first_fragment_max_chars: int | None = None
) -> SpeakSession:
    """A running :class:`SpeakSession` on this server's worker pool."""
    return open_speak_session(
        state.registry, state.settings, config, emit, first_fragment_max_chars=first_fragment_max_chars
    )


def open_speak_session(
    registry: EngineRegistry,
    settings: Settings,
    config: SpeakConfig,
    emit: Any,
    *,
    first_fragment_max_chars: int | None = None,
) -> SpeakSession:
    """A running :class:`SpeakSession` on ``registry``'s worker pool (the server's, or the one of an
    in-process :class:`voxserve.SpeechStream`)."""
    pool = registry.pool(config.voice.engine)

    async def synthesize(fragments: tuple[Fragment, ...]) -> SynthStream:
        return await pool.synth(
            {
                "voice": config.voice.name,
                "speed": config.speed,
                "fmt": "pcm",
                "sample_rate": settings.output_sample_rate,
                "fragments": fragments,
            }
        )

    session = SpeakSession(
        synthesize,
        emit,
        fmt=config.fmt,
        sample_rate=settings.output_sample_rate,
        first_fragment_max_chars=first_fragment_max_chars or settings.first_fragment_max_chars,
        max_fragment_chars=settings.max_fragment_chars,
        max_text_chars=settings.max_input_chars,
        max_pending_chars=settings.max_pending_chars,
    )
    session.start()
    return session


def event_json(event: SpeakEvent) -> dict[str, Any] | None:
    """The wire form of a session event (``None`` for audio, which travels as binary frames)."""
    if isinstance(event, SentenceStarted):
        return {
            "type": "sentence",
            "text": event.text,
            "start_s": event.start_s,
            "words": [
                {
                    "word": w.word,
                    "start_s": w.start_s,
                    "end_s": w.end_s,
                    "source_start": span[0] if span else None,
                    "source_end": span[1] if span else None,
                }
                for w, span in zip(event.words, event.sources or [None] * len(event.words), strict=True)
            ],
        }
    if isinstance(event, Cancelled):
        return {"type": "cancelled", "dropped_fragments": event.dropped_fragments}
    if isinstance(event, Failed):
        return {"type": "error", "code": event.error.code, "message": event.error.message}
    if isinstance(event, Finished):
        return {"type": "done", "audio_s": round(event.audio_s, 3), "samples": event.samples}
    return None


@router.websocket("/v1/stream/speak")
async def stream_speak(ws: WebSocket) -> None:
    state: AppState = ws.app.state.vox
    with contextlib.suppress(WebSocketDisconnect):
        async with admitted(ws, ws.app.state.speak_admission) as ok:
            if ok:
                await _serve(ws, state)


class Sender:
    """Serialises sends: the runner task and the receive loop both write to the socket.

    A send waits while the client does not read (the server's socket buffer is full): synthesis then
    pauses, which bounds the memory a slow reader costs. A send still waiting after
    ``send_timeout_s`` marks the client :attr:`stalled` (the session ends, close 1008) and every later
    send is dropped.
    """

    def __init__(self, ws: WebSocket, send_timeout_s: float = 30.0) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()
        self.send_timeout_s = send_timeout_s
        self.stalled = asyncio.Event()

    async def _send(self, send: Callable[[], Awaitable[None]]) -> None:
        if self.stalled.is_set():
            return
        async with self.lock:
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await send()
            except TimeoutError:
                _log.warning("client left audio unread for %.0f s: ending its session", self.send_timeout_s)
                self.stalled.set()

    async def json(self, obj: dict[str, Any]) -> None:
        text = json.dumps(obj, separators=(",", ":"))
        await self._send(lambda: self.ws.send_text(text))

    async def event(self, event: SpeakEvent) -> None:
        if isinstance(event, AudioData):
            await self._send(lambda: self.ws.send_bytes(event.data))
            return
        obj = event_json(event)
        if obj is not None:
            await self.json(obj)

    async def close_stalled(self) -> None:
        """Close a stalled client's socket with 1008 if the close frame can still be sent."""
        with contextlib.suppress(Exception):  # the socket may be unwritable or gone
            async with asyncio.timeout(1.0):
                await self.ws.close(code=1008, reason="the client did not read its audio")


async def receive_config(ws: WebSocket, idle_timeout_s: float) -> Any | None:
    """The first message, parsed as JSON; ``None`` if the client left, or sent nothing for
    ``idle_timeout_s`` (then the socket is closed with 1000). Raises ``invalid_config`` if it is not
    JSON text."""
    try:
        first = await asyncio.wait_for(ws.receive(), idle_timeout_s)
    except TimeoutError:
        await ws.close(1000, "idle timeout: no config received")
        return None
    if first["type"] == "websocket.disconnect":
        return None
    try:
        return json.loads(first.get("text") or "")
    except json.JSONDecodeError:
        raise InvalidValue(
            'the first message must be a JSON {"type": "config", ...}', code="invalid_config"
        ) from None


async def _serve(ws: WebSocket, state: AppState) -> None:
    settings = state.settings
    send = Sender(ws, settings.ws_send_timeout_s)
    try:
        cfg = await receive_config(ws, settings.session_idle_timeout_s)
        if cfg is None:
            return
        config = await parse_speak_config(state, cfg)
    except VoxserveError as exc:
        await send.json({"type": "error", "code": exc.code, "message": exc.message})
        await ws.close(code=1008, reason=exc.message[:120])
        return

    session = start_speak_session(state, config, send.event)
    await send.json(
        {
            "type": "ready",
            "voice": config.voice.id,
            "response_format": config.fmt,
            "sample_rate": settings.output_sample_rate,
            "speed": config.speed,
        }
    )
    finished = asyncio.create_task(session.finished.wait())
    stalled = asyncio.create_task(send.stalled.wait())
    receive: asyncio.Task[Any] | None = None
    try:
        while True:
            receive = asyncio.create_task(ws.receive())
            done, _ = await asyncio.wait(
                {receive, finished, stalled},
                timeout=settings.session_idle_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stalled in done:
                await send.close_stalled()
                return
            if finished in done:
                await ws.close(code=1000, reason="done")
                return
            if not done:
                await ws.close(code=1000, reason="idle timeout: no message received")
                return
            message = receive.result()
            receive = None
            if message["type"] == "websocket.disconnect":
                return
            await _handle(message, session, send)
    finally:
        for task in (receive, finished, stalled):
            if task is not None:
                task.cancel()
        await session.close()


async def _handle(message: dict[str, Any], session: SpeakSession, send: Sender) -> None:
    """Apply one client message; protocol errors become error events."""
    if message.get("bytes") is not None:
        await send.json(_error("unexpected_binary", "send text as JSON text messages"))
        return
    try:
        obj = json.loads(message.get("text") or "")
    except json.JSONDecodeError:
        await send.json(_error("invalid_json", "text messages must be JSON"))
        return
    kind = obj.get("type") if isinstance(obj, dict) else None
    try:
        if kind == "text":
            text = obj.get("text")
            if not isinstance(text, str):
                await send.json(_error("invalid_text", '"text" must be a string'))
                return
            session.push(text)
        elif kind == "flush":
            session.flush()
        elif kind == "cancel":
            await session.cancel()
        elif kind == "end":
            session.end()
        elif kind == "config":
            await send.json(_error("unexpected_config", "the session is already configured"))
        else:
            await send.json(_error("unknown_message", f"unknown message type {kind!r}"))
    except VoxserveError as exc:
        await send.json(_error(exc.code, exc.message))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
