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

from typing import Any

from fastapi import APIRouter

from voxserve.api.speak_ws import send_speak_event
from voxserve.api.stream_ws import check_stt_model
from voxserve.api.ws import EndSession, WsConnection, websocket_route
from voxserve.audio.decode import PcmConverter
from voxserve.chat.llm import ChatLLM
from voxserve.chat.pipeline import (
    ChatError,
    ResponseDelta,
    ResponseDone,
    ResponseStarted,
    Transcript,
    UserSpeechStarted,
    VoiceChat,
)
from voxserve.chat.setup import make_llm, no_llm_message
from voxserve.errors import InvalidRequest
from voxserve.protocol import chat as wire
from voxserve.protocol.common import AudioMessage, CancelMessage, EndMessage, ErrorEvent, TextMessage
from voxserve.state import AppState
from voxserve.stt.service import open_transcriber
from voxserve.tts.speak import speak_config, start_speak_session

__all__ = ["ChatHandler", "chat_event_json", "router"]

router = APIRouter()


def chat_event_json(event: Any) -> Any:
    """The wire message of a chat event (``None`` for events that are not chat events: those are the
    answer's speech, sent as ``/v1/stream/speak`` sends them)."""
    if isinstance(event, Transcript):
        return wire.TranscriptEvent(event.text, event.is_final, round(event.stability, 2))
    if isinstance(event, UserSpeechStarted):
        return wire.SpeechStartedEvent(round(event.time_s, 3))
    if isinstance(event, ResponseStarted):
        return wire.ResponseStarted(event.response_id, event.user_text)
    if isinstance(event, ResponseDelta):
        return wire.ResponseTextDelta(event.response_id, event.delta)
    if isinstance(event, ResponseDone):
        return wire.ResponseDone(event.response_id, event.text, event.interrupted)
    if isinstance(event, ChatError):
        return ErrorEvent(event.code, event.message)
    return None


class ChatHandler:
    """One ``/v1/stream/chat`` session: the user's audio or text in, the LLM's answer spoken back."""

    def __init__(self, conn: WsConnection, chat: VoiceChat, convert: PcmConverter) -> None:
        self.conn = conn
        self.chat = chat
        self.convert = convert

    @classmethod
    async def open(cls, conn: WsConnection, state: AppState) -> ChatHandler:
        """Check that an LLM is configured, read the config, start the chat, answer ``ready``."""
        # ``app.state.llm`` wins over the settings: tests and embedders can set their own client.
        llm: ChatLLM | None = getattr(conn.ws.app.state, "llm", None) or make_llm(state)
        if llm is None:
            raise InvalidRequest(no_llm_message(state), code="llm_not_configured")
        settings = state.settings
        config = wire.parse_config(
            await conn.receive_config(), max_system_prompt_chars=settings.max_input_chars
        )
        # A chat's "model" names its speech-to-text model; the voice picks the speech engine.
        stt_model = check_stt_model(state, config.model)
        speech = await speak_config(
            state, voice=config.voice, response_format=config.response_format, speed=config.speed
        )
        system_prompt = settings.llm_system_prompt if config.system_prompt is None else config.system_prompt

        async def emit(event: Any) -> None:
            message = chat_event_json(event)
            if message is not None:
                await conn.send_json(message)
            else:
                await send_speak_event(conn, event)

        chat = VoiceChat(
            llm,
            emit,
            lambda speech_emit: start_speak_session(state, speech, speech_emit),
            system_prompt=system_prompt,
            max_history_messages=settings.llm_max_history_messages,
            barge_in=config.barge_in,
        )
        try:
            chat.attach_transcriber(
                await open_transcriber(
                    state,
                    stt_model,
                    chat.on_stt_event,
                    language=config.base_language,
                    interim=config.interim_results,
                )
            )
            await conn.send_json(
                wire.ChatReady(
                    voice=speech.voice.id,
                    response_format=speech.fmt,
                    sample_rate=settings.output_sample_rate,
                    input_sample_rate_hz=config.sample_rate_hz,
                    encoding=config.encoding,
                    llm_model=getattr(llm, "model", settings.llm_model),
                )
            )
        except BaseException:
            await chat.close()
            raise
        return cls(conn, chat, PcmConverter(config.encoding, config.sample_rate_hz))

    async def on_message(self, data: str | bytes) -> None:
        message = wire.parse_client_message(data)
        if isinstance(message, AudioMessage):
            await self.chat.feed_encoded(message.audio, self.convert)
        elif isinstance(message, TextMessage):
            await self.chat.say(message.text.strip())
        elif isinstance(message, CancelMessage):
            await self.chat.interrupt()
        elif isinstance(message, EndMessage):
            await self.drain(timeout_s=120.0)
            raise EndSession(1000, "end of chat")

    async def drain(self, timeout_s: float) -> None:
        """Finish the user's last turn and the answer to it."""
        if self.chat.transcriber is not None:
            await self.chat.transcriber.finish(timeout_s=timeout_s)
        await self.chat.wait_idle(timeout_s)

    async def aclose(self) -> None:
        await self.chat.close()


# Registered after the handler class it opens.
websocket_route(
    router, "/v1/stream/chat", admission=lambda s: s.chat_admission, open_session=ChatHandler.open
)
