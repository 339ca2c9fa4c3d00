"""``WS /v1/stream/chat``: talk to an LLM by voice (or text) and hear it answer, with barge-in.

Client → server: first ``{"type": "config", ...}`` with the audio fields of ``/v1/stream/transcribe``
(``sample_rate_hz``, ``encoding``, ``language``, ``interim_results``) and the speech fields of
``/v1/stream/speak`` (``voice``, ``response_format``, ``speed``), plus ``system_prompt`` and
``barge_in`` (default true); then microphone audio as binary frames (or ``{"type": "audio", "audio":
"<base64>"}``), typed turns ``{"type": "text", "text": "..."}``, ``{"type": "cancel"}`` (stop the
answer) and ``{"type": "end"}`` (finish the last turn and its answer, then close 1000).

Server → client: ``ready``; ``{"type": "transcript", "text", "is_final", "stability"}``;
``{"type": "speech_started", "time"}``; ``{"type": "response.started", "response_id", "user_text"}``;
``{"type": "response.text.delta", "response_id", "delta"}``; ``{"type": "response.done",
"response_id", "text", "interrupted"}``; the answer's audio as binary frames with ``sentence`` and
``cancelled`` events exactly as ``/v1/stream/speak`` sends them; ``{"type": "error", "code",
"message"}``. With no LLM configured the server sends error ``llm_not_configured`` and closes 1008.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voxserve.api.speak_ws import Sender, parse_speak_config, receive_config, start_speak_session
from voxserve.api.state import AppState
from voxserve.api.stt_common import admitted, parse_audio_config, pcm_converter, session_config, vad_for
from voxserve.audio.decode import decode_base64
from voxserve.chat.llm import ChatLLM, OpenAIChatLLM
from voxserve.chat.pipeline import (
    ChatError,
    ResponseDelta,
    ResponseDone,
    ResponseStarted,
    Transcript,
    UserSpeechStarted,
    VoiceChat,
)
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import InvalidValue, VoxserveError
from voxserve.runtime.transcriber import Transcriber

__all__ = ["chat_event_json", "make_llm", "router"]

_log = logging.getLogger("voxserve.chat")

router = APIRouter()

NO_LLM = (
    "no LLM is configured: start the server with --llm-base-url (an OpenAI-compatible endpoint such "
    "as Ollama's http://127.0.0.1:11434/v1) and --llm-model"
)


def make_llm(state: AppState) -> ChatLLM | None:
    """The configured LLM client (``app.state.llm`` wins: tests and embedders can set their own)."""
    settings = state.settings
    if settings.llm_base_url is None:
        return None
    return OpenAIChatLLM(
        settings.llm_base_url,
        settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
    )


def chat_event_json(event: Any) -> dict[str, Any] | None:
    """The wire form of a chat event (``None`` for events that are not chat events)."""
    if isinstance(event, Transcript):
        return {
            "type": "transcript",
            "text": event.text,
            "is_final": event.is_final,
            "stability": round(event.stability, 2),
        }
    if isinstance(event, UserSpeechStarted):
        return {"type": "speech_started", "time": round(event.time_s, 3)}
    if isinstance(event, ResponseStarted):
        return {"type": "response.started", "response_id": event.response_id, "user_text": event.user_text}
    if isinstance(event, ResponseDelta):
        return {"type": "response.text.delta", "response_id": event.response_id, "delta": event.delta}
    if isinstance(event, ResponseDone):
        return {
            "type": "response.done",
            "response_id": event.response_id,
            "text": event.text,
            "interrupted": event.interrupted,
        }
    if isinstance(event, ChatError):
        return {"type": "error", "code": event.code, "message": event.message}
    return None


@router.websocket("/v1/stream/chat")
async def stream_chat(ws: WebSocket) -> None:
    state: AppState = ws.app.state.vox
    with contextlib.suppress(WebSocketDisconnect):
        async with admitted(ws, ws.app.state.chat_admission) as ok:
            if ok:
                await _serve(ws, state)


async def _serve(ws: WebSocket, state: AppState) -> None:
    settings = state.settings
    send = Sender(ws, settings.ws_send_timeout_s)
    llm: ChatLLM | None = getattr(ws.app.state, "llm", None) or make_llm(state)
    if llm is None:
        await send.json({"type": "error", "code": "llm_not_configured", "message": NO_LLM})
        await ws.close(code=1008, reason="no LLM configured")
        return
    try:
        cfg = await receive_config(ws, settings.session_idle_timeout_s)
        if cfg is None:
            return
        speak_config = await parse_speak_config(state, cfg)
        audio = parse_audio_config(cfg, state)
        system_prompt = cfg.get("system_prompt", settings.llm_system_prompt)
        if not isinstance(system_prompt, str) or len(system_prompt) > settings.max_input_chars:
            raise InvalidValue(
                "system_prompt must be a string of at most max_input_chars", code="invalid_config"
            )
    except VoxserveError as exc:
        await send.json({"type": "error", "code": exc.code, "message": exc.message})
        await ws.close(code=1008, reason=exc.message[:120])
        return

    async def emit(event: Any) -> None:
        obj = chat_event_json(event)
        if obj is not None:
            await send.json(obj)
        else:
            await send.event(event)

    chat = VoiceChat(
        llm,
        emit,
        lambda speech_emit: start_speak_session(
            state, speak_config, speech_emit, first_fragment_max_chars=None
        ),
        system_prompt=system_prompt,
        max_history_messages=settings.llm_max_history_messages,
        barge_in=bool(cfg.get("barge_in", True)),
    )
    pool = state.registry.stt_pool(audio["model"])
    try:
        await pool.start()
        chat.attach_transcriber(
            Transcriber(
                pool,
                session_config(settings, interim=audio["interim"]),
                await vad_for(ws.app),
                chat.on_stt_event,
                options=TranscribeOptions(
                    language=audio["language"], beam_size=settings.stt_beam_size, without_timestamps=False
                ),
            )
        )
        convert = pcm_converter(audio["encoding"], audio["rate"])
        await send.json(
            {
                "type": "ready",
                "voice": speak_config.voice.id,
                "response_format": speak_config.fmt,
                "sample_rate": settings.output_sample_rate,
                "input_sample_rate_hz": audio["rate"],
                "encoding": audio["encoding"],
                "llm_model": settings.llm_model,
            }
        )
        await _loop(ws, chat, send, convert, settings.session_idle_timeout_s)
    finally:
        await chat.close()


async def _loop(ws: WebSocket, chat: VoiceChat, send: Sender, convert: Any, idle_s: float) -> None:
    stalled = asyncio.create_task(send.stalled.wait())
    try:
        await _receive_loop(ws, chat, send, convert, idle_s, stalled)
    finally:
        stalled.cancel()


async def _receive_loop(
    ws: WebSocket, chat: VoiceChat, send: Sender, convert: Any, idle_s: float, stalled: asyncio.Task[Any]
) -> None:
    while True:
        receive = asyncio.create_task(ws.receive())
        done, _ = await asyncio.wait({receive, stalled}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
        if receive not in done:
            receive.cancel()
            if stalled in done:
                await send.close_stalled()  # the client left the answer's audio unread
            else:
                await ws.close(1000, "idle timeout: no message received")
            return
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            try:
                obj = json.loads(message.get("text") or "")
            except json.JSONDecodeError:
                await send.json(_error("invalid_json", "text messages must be JSON"))
                continue
            kind = obj.get("type") if isinstance(obj, dict) else None
            if kind == "text":
                text = obj.get("text")
                if not isinstance(text, str) or not text.strip():
                    await send.json(_error("invalid_text", '"text" must be a non-empty string'))
                    continue
                await chat.say(text.strip())
                continue
            if kind == "cancel":
                await chat.interrupt()
                continue
            if kind == "end":
                await chat.transcriber.finish()
                await chat.wait_idle()
                await ws.close(code=1000, reason="end of chat")
                return
            if kind == "config":
                await send.json(_error("unexpected_config", "the chat is already configured"))
                continue
            if kind != "audio":
                await send.json(_error("unknown_message", f"unknown message type {kind!r}"))
                continue
            try:
                data = decode_base64(obj.get("audio", ""))
            except (binascii.Error, ValueError, TypeError):
                await send.json(_error("invalid_base64", "audio must be valid base64"))
                continue
        try:
            pcm = convert(data)
        except VoxserveError as exc:
            await send.json(_error(exc.code, exc.message))
            continue
        await chat.feed_audio(pcm)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
