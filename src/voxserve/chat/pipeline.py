"""The voice chat: user speech → streaming STT → an LLM → streaming TTS, with barge-in.

:class:`VoiceChat` is transport-neutral: the WebSocket route and the web UI feed it audio (or typed
text) and receive its events through one ``emit`` callback. It owns the conversation history, one
:class:`~voxserve.stt.transcriber.Transcriber` (optional: a text-only chat has none) and one
:class:`~voxserve.tts.stream.SpeakSession`, whose audio is one continuous stream for the whole chat.

A user turn is a final transcript (or a typed message). Its answer streams from the LLM token by token
into the speak session, so speech starts with the answer's first fragment. Barge-in: when the user
starts speaking (VAD) or sends a new turn while an answer is still being generated or spoken, the
answer is cancelled — the LLM request is closed, queued speech dropped, playing audio stopped — and
the part already produced stays in the history, marked as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voxserve.chat.llm import ChatLLM, ChatMessage
from voxserve.errors import VoxserveError
from voxserve.stt.session import Final, Partial, SpeechStarted
from voxserve.tts.stream import AudioData, SpeakEvent, SpeakSession

__all__ = [
    "ChatError",
    "ChatEvent",
    "ResponseDelta",
    "ResponseDone",
    "ResponseStarted",
    "Transcript",
    "UserSpeechStarted",
    "VoiceChat",
]

_log = logging.getLogger("voxserve.chat")


@dataclass(frozen=True)
class Transcript:
    """What the user is saying: interim (``is_final`` False, may change) or final."""

    text: str
    is_final: bool
    stability: float = 0.0


@dataclass(frozen=True)
class UserSpeechStarted:
    time_s: float


@dataclass(frozen=True)
class ResponseStarted:
    response_id: int
    user_text: str


@dataclass(frozen=True)
class ResponseDelta:
    response_id: int
    delta: str


@dataclass(frozen=True)
class ResponseDone:
    response_id: int
    text: str
    interrupted: bool = False


@dataclass(frozen=True)
class ChatError:
    code: str
    message: str


ChatEvent = Transcript | UserSpeechStarted | ResponseStarted | ResponseDelta | ResponseDone | ChatError

Emit = Callable[[ChatEvent | SpeakEvent], Awaitable[None]]


class VoiceChat:
    """One conversation; see the module docstring."""

    def __init__(
        self,
        llm: ChatLLM,
        emit: Emit,
        speaker_factory: Callable[[Callable[[SpeakEvent], Awaitable[None]]], SpeakSession],
        *,
        system_prompt: str = "",
        max_history_messages: int = 20,
        barge_in: bool = True,
    ) -> None:
        self._llm = llm
        self._emit = emit
        self.speaker = speaker_factory(self._on_speech)
        self._system = system_prompt
        self._max_history = max_history_messages
        self.barge_in = barge_in
        self.history: list[ChatMessage] = []
        self.transcriber: Any = None
        self._response: asyncio.Task[None] | None = None
        self._response_ids = itertools.count(1)
        # When the client will have played all audio sent so far (it plays in real time): a barge-in
        # must stop an answer that is still being heard, even after its last byte left the server.
        self._playback_end = 0.0
        self._audio_sent_s = 0.0

    def attach_transcriber(self, transcriber: Any) -> None:
        """Use ``transcriber`` (its ``emit`` must be :meth:`on_stt_event`) for the user's audio."""
        self.transcriber = transcriber

    @property
    def responding(self) -> bool:
        """An answer is being generated or its audio has not all been sent."""
        return (
            self._llm_running
            or not self.speaker.idle
            or asyncio.get_running_loop().time() < self._playback_end
        )

    async def feed_audio(self, pcm: npt.NDArray[np.float32]) -> None:
        """The user's 16 kHz float32 audio."""
        if self.transcriber is None:
            raise VoxserveError("this chat takes no audio", code="no_audio_input")
        await self.transcriber.feed(pcm)

    async def feed_encoded(self, data: bytes, convert: Callable[[bytes], Any]) -> None:
        """The user's audio as the client sent it, decoded by ``convert`` off the event loop."""
        if self.transcriber is None:
            raise VoxserveError("this chat takes no audio", code="no_audio_input")
        await self.transcriber.feed_encoded(data, convert)

    async def on_stt_event(self, event: Any) -> None:
        """The transcriber's events: partials are shown, a final is a user turn."""
        if isinstance(event, SpeechStarted):
            await self._emit(UserSpeechStarted(event.start_s))
            if self.barge_in and self.responding:
                await self.interrupt()
        elif isinstance(event, Partial):
            text = " ".join(t for t in (event.committed_text, event.tentative_text) if t)
            if text:
                await self._emit(Transcript(text, False, event.stability))
        elif isinstance(event, Final) and event.text.strip():
            await self._emit(Transcript(event.text.strip(), True))
            await self.say(event.text.strip())

    async def say(self, text: str) -> None:
        """A user turn (a final transcript or typed text): answer it, interrupting any answer."""
        if self.responding:
            await self.interrupt()
        self.history.append(ChatMessage("user", text))
        response_id = next(self._response_ids)
        await self._emit(ResponseStarted(response_id, text))
        self._response = asyncio.create_task(self._answer(response_id), name=f"voxserve-answer-{response_id}")

    async def interrupt(self) -> None:
        """Barge-in: stop the answer now (LLM, queued speech and audio)."""
        task, self._response = self._response, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._playback_end = 0.0
        await self.speaker.cancel()

    async def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Until the current answer has been generated and all its audio sent (``TimeoutError``
        after ``timeout_s``). An answer cancelled meanwhile (a barge-in while the session drains)
        counts as done: awaiting it through ``shield`` raised its ``CancelledError`` here, which ended
        a backlogged chat socket with 1006 instead of its error event and 1013."""
        response = self._response
        if response is not None:
            _, pending = await asyncio.wait({response}, timeout=timeout_s)
            if pending:
                raise TimeoutError(f"the answer did not finish within {timeout_s:g} s")
            if not response.cancelled():
                response.result()  # an answer that failed raises here, as before
        await asyncio.wait_for(self.speaker.drained.wait(), timeout_s)

    async def close(self) -> None:
        if self._response is not None:
            self._response.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._response
        if self.transcriber is not None:
            await self.transcriber.close()
        await self.speaker.close()

    def _messages(self) -> list[ChatMessage]:
        history = self.history[-self._max_history :]
        return ([ChatMessage("system", self._system)] if self._system else []) + history

    async def _answer(self, response_id: int) -> None:
        parts: list[str] = []
        interrupted = False
        try:
            async for delta in self._llm.stream(self._messages()):
                parts.append(delta)
                self.speaker.push(delta)
                await self._emit(ResponseDelta(response_id, delta))
            self.speaker.flush()
        except asyncio.CancelledError:
            interrupted = True
            raise
        except VoxserveError as exc:
            _log.warning("answer %d failed: %s", response_id, exc.message)
            await self._emit(ChatError(exc.code, exc.message))
            self.speaker.flush()
        finally:
            text = "".join(parts)
            if text:
                self.history.append(ChatMessage("assistant", text + (" …" if interrupted else "")))
            # Emitting from a cancelled task: shield so the client still learns the answer ended.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._emit(ResponseDone(response_id, text, interrupted)))

    async def _on_speech(self, event: SpeakEvent) -> None:
        if isinstance(event, AudioData):
            sent = self.speaker.audio_s - self._audio_sent_s
            self._audio_sent_s = self.speaker.audio_s
            self._playback_end = max(self._playback_end, asyncio.get_running_loop().time()) + sent
        await self._emit(event)

    @property
    def _llm_running(self) -> bool:
        return self._response is not None and not self._response.done()
