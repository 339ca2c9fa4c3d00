"""The Chat tab: type or speak to the configured LLM; the answer streams as text and as speech.

Each browser session gets one :class:`~voxserve.chat.pipeline.VoiceChat` (the pipeline behind
``WS /v1/stream/chat``), so the conversation history and the barge-in rules are the same as there: a
new message interrupts an answer still being generated. A spoken message is recorded, transcribed by
the Whisper pool, and sent as the turn. With no LLM configured the tab says so instead of answering.
The answer's events reach the page through a bounded queue per tab (:class:`ChatSession`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from voxserve.chat.llm import ChatLLM
from voxserve.chat.pipeline import ChatError, ChatEvent, ResponseDelta, ResponseDone, VoiceChat
from voxserve.chat.setup import make_llm, no_llm_message
from voxserve.engines.base import TranscribeOptions
from voxserve.tts.speak import SpeakConfig, open_speak_session, resolve_speak_voice
from voxserve.tts.stream import AudioData, SpeakEvent
from voxserve.ui.errors import ui_handler
from voxserve.ui.media import ensure_ffmpeg, pcm_to_wav_chunk

if TYPE_CHECKING:
    from voxserve.ui.app import UiContext

__all__ = ["EVENT_QUEUE_SIZE", "ChatSession", "TurnEvents", "build_chat_tab"]

_ANSWER_TIMEOUT_S = 120.0

EVENT_QUEUE_SIZE = 32
"""Events of an answer one browser tab may hold before its page has been sent them.

The events are the answer's text deltas (a few bytes each; a fast LLM sends tens a second) and its
audio (one event per synthesized sentence: 48 kB a second of speech at 24 kHz, so ~150 kB for a
typical sentence, ~1 MB for the longest fragment). The handler takes every queued event at once each
time it updates the page, so the queue fills only while the page falls behind (Gradio still sending
the previous update). 32 events are room for a second or two of tokens and several sentences, so a
normal answer never waits; past that the producers wait, so a tab never holds more than 32 events
however slow its connection is."""


class TurnEvents:
    """The events of one turn's answer, queued for the handler that shows it (at most ``maxsize``)."""

    def __init__(self, maxsize: int = EVENT_QUEUE_SIZE) -> None:
        self._queue: asyncio.Queue[ChatEvent | SpeakEvent] = asyncio.Queue(maxsize)
        self.closed = False
        """Set when the turn is over for the page: its handler stopped, or a newer turn began."""

    async def put(self, event: ChatEvent | SpeakEvent) -> None:
        """Queue ``event``, waiting while the queue is full; dropped once :attr:`closed`."""
        if not self.closed:
            await self._queue.put(event)

    def empty(self) -> bool:
        return self._queue.empty()

    async def next_batch(self, timeout_s: float) -> list[ChatEvent | SpeakEvent]:
        """Wait up to ``timeout_s`` for an event; return it and every event queued behind it, in
        order (one page update for all of them), or ``[]`` after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: it can drop an event on 3.11
                first = await self._queue.get()
        except TimeoutError:
            return []
        batch = [first]
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def close(self) -> None:
        """Drop what is queued and keep nothing more; a producer waiting for room is let go (its
        event lands in this queue, which nobody reads any more)."""
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()


class ChatSession:
    """One browser tab's conversation: its :class:`VoiceChat`, and the events of the answer shown.

    The chat's tasks (the LLM stream, the speech runner) :meth:`emit` events; while a handler
    listens (:meth:`listen`), they go to that turn's :class:`TurnEvents`, a queue of at most
    :data:`EVENT_QUEUE_SIZE`. When it is full, ``emit`` waits for room: nothing the page is showing
    is dropped, and the LLM and the speech wait for the page (backpressure) instead of piling up in
    memory.

    Each turn gets a queue of its own, so a handler still waiting when a newer message arrives can
    never take the new answer's events. Events emitted while no handler listens (what is left of an
    interrupted answer, the ``Cancelled`` of a barge-in, anything after the handler stopped) would
    never be shown, and are dropped; so a producer never waits on a queue that nobody reads — in
    particular not inside :meth:`VoiceChat.say`, which the handler itself awaits before it listens.
    """

    def __init__(self, maxsize: int = EVENT_QUEUE_SIZE) -> None:
        self.chat: VoiceChat | None = None
        self._maxsize = maxsize
        self._turn: TurnEvents | None = None

    @property
    def listening(self) -> bool:
        """Whether a handler is listening (emitted events are kept)."""
        return self._turn is not None

    async def emit(self, event: ChatEvent | SpeakEvent) -> None:
        """The chat's callback: queue ``event`` for the listening handler, if any."""
        turn = self._turn
        if turn is not None:
            await turn.put(event)

    def listen(self) -> TurnEvents:
        """Start a new turn's queue (ending the previous one's) and return it."""
        self.stop_listening()
        self._turn = TurnEvents(self._maxsize)
        return self._turn

    def stop_listening(self, turn: TurnEvents | None = None) -> None:
        """End the current turn's queue (with ``turn``: only if that one is still current)."""
        current = self._turn
        if current is None or (turn is not None and turn is not current):
            return
        self._turn = None
        current.close()


class _ChatSessions:
    def __init__(self, ctx: UiContext) -> None:
        self.ctx = ctx
        self.sessions: dict[str, ChatSession] = {}

    async def get(self, key: str, llm: ChatLLM) -> ChatSession:
        session = self.sessions.get(key)
        if session is not None and session.chat is not None:
            return session
        state = self.ctx.state
        session = ChatSession()
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
        if session is not None:
            session.stop_listening()  # frees a producer waiting for room, so close() can stop it
            if session.chat is not None:
                await session.chat.close()


async def _transcribe(ctx: UiContext, path: str) -> str:
    state = ctx.state
    data = await asyncio.to_thread(Path(path).read_bytes)
    pool = state.registry.stt_pool(state.settings.stt_default_model)
    options = TranscribeOptions(language="en", beam_size=state.settings.stt_beam_size)
    # Decoded in the STT worker, as for the REST route.
    stream = await pool.stream_call("transcribe_upload", data, state.settings.max_audio_seconds, options)
    try:
        values = [v async for v in stream]
    finally:
        with contextlib.suppress(Exception):
            stream.abort()
    parts = [segment.text for segment in values[1:]]
    return " ".join(p.strip() for p in parts if p.strip())


def build_chat_tab(ctx: UiContext) -> None:
    sessions = _ChatSessions(ctx)
    configured = make_llm(ctx.state) is not None
    rate = ctx.state.settings.output_sample_rate
    with gr.Tab("Chat", id="chat"):
        if not configured:
            gr.Markdown(f"**{no_llm_message(ctx.state)}.**", elem_id="chat-no-llm")
        reply_audio = gr.Audio(
            label="Spoken reply",
            streaming=True,
            autoplay=True,
            interactive=False,
            elem_id="chat-audio",
            render=False,
        )

        @ui_handler
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
                text = heard = await _transcribe(ctx, path)
                if not text:
                    raise gr.Error("No speech was heard in the recording.")
            if not text:
                raise gr.Error("Type or say something first.")
            prefix = f"*(heard: “{heard}”)*\n\n" if heard else ""
            llm = getattr(ctx.app.state, "llm", None) or make_llm(ctx.state)
            if llm is None:
                yield prefix + no_llm_message(ctx.state), gr.skip()
                return
            await asyncio.to_thread(ensure_ffmpeg, ctx.state.settings.cache_dir)
            session = await sessions.get(request.session_hash or "", llm)
            chat = session.chat
            assert chat is not None
            # A new message interrupts the answer still running, whose last events are not shown.
            session.stop_listening()
            await chat.say(text)
            # Nothing of the new answer ran yet (say() only starts its task): none of it is lost.
            events = session.listen()
            try:
                answer = prefix
                yield answer, gr.skip()
                done = False
                loop = asyncio.get_running_loop()
                deadline = loop.time() + _ANSWER_TIMEOUT_S
                while loop.time() < deadline and not events.closed:  # closed: a newer message came
                    if done and chat.speaker.drained.is_set() and events.empty():
                        break
                    changed = False
                    pcm = b""
                    for event in await events.next_batch(0.25):
                        if isinstance(event, ResponseDelta):
                            answer += event.delta
                            changed = True
                        elif isinstance(event, AudioData) and event.data:
                            pcm += event.data  # s16le: chunks join into one
                        elif isinstance(event, ChatError):
                            answer += f"\n\n⚠️ {event.message}"
                            changed = True
                        elif isinstance(event, ResponseDone):
                            done = True
                    if pcm:
                        yield answer, pcm_to_wav_chunk(pcm, rate)
                    elif changed:
                        yield answer, gr.skip()
            finally:
                session.stop_listening(events)

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

        @ui_handler
        async def on_unload(request: gr.Request) -> None:
            await sessions.drop(request.session_hash or "")

        ctx.blocks.unload(on_unload)
