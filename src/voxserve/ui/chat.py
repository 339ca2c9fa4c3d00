"""The Chat tab: type or speak to the configured LLM; the answer streams as text and as speech.

Each browser session gets one :class:`~voxserve.chat.pipeline.VoiceChat` (the pipeline behind
``WS /v1/stream/chat``), so the conversation history and the barge-in rules are the same as there: a
new message interrupts an answer still being generated. A spoken message is recorded, transcribed by
the Whisper pool, and sent as the turn. With no LLM configured the tab says so instead of answering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from voxserve.api.chat_ws import NO_LLM, make_llm
from voxserve.api.speak_ws import SpeakConfig, open_speak_session, resolve_speak_voice
from voxserve.audio.decode import decode_audio
from voxserve.chat.llm import ChatLLM
from voxserve.chat.pipeline import ChatError, ResponseDelta, ResponseDone, VoiceChat
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import VoxserveError
from voxserve.tts.stream import AudioData
from voxserve.ui.media import ensure_ffmpeg, pcm_to_wav_chunk

if TYPE_CHECKING:
    from voxserve.ui.app import UiContext

__all__ = ["build_chat_tab"]

_ANSWER_TIMEOUT_S = 120.0


class _ChatSession:
    """One browser session's conversation: its VoiceChat and the events of the answer in progress."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.chat: VoiceChat | None = None

    async def emit(self, event: Any) -> None:
        self.events.put_nowait(event)


class _ChatSessions:
    def __init__(self, ctx: UiContext) -> None:
        self.ctx = ctx
        self.sessions: dict[str, _ChatSession] = {}

    async def get(self, key: str, llm: ChatLLM) -> _ChatSession:
        session = self.sessions.get(key)
        if session is not None and session.chat is not None:
            return session
        state = self.ctx.state
        session = _ChatSession()
        voice = await resolve_speak_voice(state.registry, state.settings.default_voice)
        config = SpeakConfig(voice, "pcm", 1.0)
        session.chat = VoiceChat(
            llm,
            session.emit,
            lambda emit: open_speak_session(state.registry, state.settings, config, emit),
            system_prompt=state.settings.llm_system_prompt,
            max_history_messages=state.settings.llm_max_history_messages,
        )
        self.sessions[key] = session
        return session

    async def drop(self, key: str) -> None:
        session = self.sessions.pop(key, None)
        if session is not None and session.chat is not None:
            await session.chat.close()


async def _transcribe(ctx: UiContext, path: str) -> str:
    state = ctx.state
    data = await asyncio.to_thread(Path(path).read_bytes)
    audio = await asyncio.to_thread(decode_audio, data, max_seconds=state.settings.max_audio_seconds)
    pool = state.registry.stt_pool(state.settings.stt_default_model)
    stream = await pool.stream_call(
        "transcribe", audio, TranscribeOptions(language="en", beam_size=state.settings.stt_beam_size)
    )
    try:
        values = [v async for v in stream]
    finally:
        with contextlib.suppress(Exception):
            stream.abort()
    parts = [segment.text for segment in values[1:]]
    return " ".join(p.strip() for p in parts if p.strip())


def build_chat_tab(ctx: UiContext) -> None:
    sessions = _ChatSessions(ctx)
    configured = ctx.state.settings.llm_base_url is not None
    rate = ctx.state.settings.output_sample_rate
    with gr.Tab("Chat", id="chat"):
        if not configured:
            gr.Markdown(f"**{NO_LLM}.**", elem_id="chat-no-llm")
        reply_audio = gr.Audio(
            label="Spoken reply",
            streaming=True,
            autoplay=True,
            interactive=False,
            elem_id="chat-audio",
            render=False,
        )

        async def respond(
            message: dict[str, Any] | str, history: list[Any], request: gr.Request
        ) -> AsyncIterator[tuple[str, Any]]:
            """ChatInterface's function: the answer's text so far and, with each piece of speech,
            one more audio chunk for the streamed player."""
            text, files = (
                (message, [])
                if isinstance(message, str)
                else (message.get("text") or "", message.get("files") or [])
            )
            text = text.strip()
            heard = ""
            if not text and files:
                path = files[0] if isinstance(files[0], str) else files[0].get("path", "")
                try:
                    text = heard = await _transcribe(ctx, path)
                except VoxserveError as exc:
                    raise gr.Error(exc.message) from None
                if not text:
                    raise gr.Error("No speech was heard in the recording.")
            if not text:
                raise gr.Error("Type or say something first.")
            prefix = f"*(heard: “{heard}”)*\n\n" if heard else ""
            llm = getattr(ctx.app.state, "llm", None) or make_llm(ctx.state)
            if llm is None:
                yield prefix + NO_LLM, gr.skip()
                return
            await asyncio.to_thread(ensure_ffmpeg, ctx.state.settings.cache_dir)
            try:
                session = await sessions.get(request.session_hash or "", llm)
            except VoxserveError as exc:
                raise gr.Error(exc.message) from None
            chat = session.chat
            assert chat is not None
            while not session.events.empty():  # what is left of an interrupted answer
                session.events.get_nowait()
            await chat.say(text)
            answer = prefix
            yield answer, gr.skip()
            done = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _ANSWER_TIMEOUT_S
            while loop.time() < deadline:
                if done and chat.speaker.drained.is_set() and session.events.empty():
                    break
                try:
                    async with asyncio.timeout(0.25):  # not wait_for: it can drop an event on 3.11
                        event = await session.events.get()
                except TimeoutError:
                    continue
                if isinstance(event, ResponseDelta):
                    answer += event.delta
                    yield answer, gr.skip()
                elif isinstance(event, AudioData) and event.data:
                    yield answer, pcm_to_wav_chunk(event.data, rate)
                elif isinstance(event, ChatError):
                    answer += f"\n\n⚠️ {event.message}"
                    yield answer, gr.skip()
                elif isinstance(event, ResponseDone):
                    done = True

        with gr.Row():
            with gr.Column(scale=3):
                gr.ChatInterface(
                    respond,
                    multimodal=True,
                    chatbot=gr.Chatbot(label="Conversation", elem_id="chat-history", height=360),
                    textbox=gr.MultimodalTextbox(
                        placeholder="Type a message, or record one with the microphone.",
                        sources=["microphone"],
                        file_types=["audio"],
                        elem_id="chat-message",
                    ),
                    additional_outputs=[reply_audio],
                    api_name="chat",
                    fill_height=False,
                )
            with gr.Column(scale=2):
                reply_audio.render()  # type: ignore[no-untyped-call]

        async def on_unload(request: gr.Request) -> None:
            await sessions.drop(request.session_hash or "")

        ctx.blocks.unload(on_unload)
