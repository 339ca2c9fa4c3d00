"""VoiceChat with a fake LLM and a fake synthesizer: turns, streaming, barge-in, history, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import pytest
from tests.timing import holds_for_async, scaled

from voxserve.chat.llm import ChatMessage, LLMError, parse_sse_line
from voxserve.chat.pipeline import (
    ChatError,
    ResponseDelta,
    ResponseDone,
    ResponseStarted,
    Transcript,
    UserSpeechStarted,
    VoiceChat,
)
from voxserve.runtime.messages import Chunk
from voxserve.stt.session import Final, Partial, SpeechStarted
from voxserve.text.markup import Fragment
from voxserve.tts.stream import AudioData, Cancelled, SentenceStarted, SpeakSession


class FakeLLM:
    def __init__(self, words: int = 6, delay_s: float = 0.0, fail_after: int | None = None) -> None:
        self.words = words
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.calls: list[list[ChatMessage]] = []
        self.closed = 0

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        try:
            for i in range(self.words):
                if self.fail_after is not None and i == self.fail_after:
                    raise LLMError("the LLM went away")
                await asyncio.sleep(self.delay_s)
                yield f"Word{i}{'.' if i % 3 == 2 else ''} "
        finally:
            self.closed += 1


class FakeStream:
    def __init__(self, text: str) -> None:
        self.text = text

    async def _chunks(self) -> AsyncIterator[Chunk]:
        await asyncio.sleep(0)
        yield Chunk(1, np.zeros(2400, dtype="<i2").tobytes(), fragment=0, text=self.text)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    def abort(self) -> None:
        pass


async def fake_synth(fragments: tuple[Fragment, ...]) -> FakeStream:
    return FakeStream(" ".join(f for f in fragments if isinstance(f, str)))


class Harness:
    def __init__(self, llm: FakeLLM, **kwargs: Any) -> None:
        self.events: list[Any] = []
        self.changed = asyncio.Condition()
        self.llm = llm
        self.chat = VoiceChat(llm, self.emit, self.speaker, system_prompt="Be brief.", **kwargs)

    def speaker(self, emit: Any) -> SpeakSession:
        session = SpeakSession(fake_synth, emit, sample_rate=24000)
        session.start()
        return session

    async def emit(self, event: Any) -> None:
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), scaled(5))

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def test_a_typed_turn_streams_text_and_speech() -> None:
    h = Harness(FakeLLM(words=6))
    await h.chat.say("Hello there")
    await h.chat.wait_idle(5)
    assert h.of(ResponseStarted) == [ResponseStarted(1, "Hello there")]
    deltas = "".join(d.delta for d in h.of(ResponseDelta))
    assert deltas == "Word0 Word1 Word2. Word3 Word4 Word5. "
    assert h.of(ResponseDone) == [ResponseDone(1, deltas, interrupted=False)]
    assert [s.text for s in h.of(SentenceStarted)] == ["Word0 Word1 Word2.", "Word3 Word4 Word5."]
    assert h.of(AudioData)
    assert h.llm.calls[0] == [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there")]
    await h.chat.close()


async def test_history_carries_the_conversation() -> None:
    h = Harness(FakeLLM(words=3))
    await h.chat.say("First")
    await h.chat.wait_idle(5)
    await h.chat.say("Second")
    await h.chat.wait_idle(5)
    roles = [(m.role, m.content) for m in h.llm.calls[1]]
    assert roles == [
        ("system", "Be brief."),
        ("user", "First"),
        ("assistant", "Word0 Word1 Word2. "),
        ("user", "Second"),
    ]
    await h.chat.close()


async def test_history_is_bounded() -> None:
    h = Harness(FakeLLM(words=1), max_history_messages=3)
    for i in range(4):
        await h.chat.say(f"turn {i}")
        await h.chat.wait_idle(5)
    assert len(h.llm.calls[-1]) == 1 + 3
    assert h.llm.calls[-1][-1] == ChatMessage("user", "turn 3")
    await h.chat.close()


async def test_user_speech_interrupts_the_answer() -> None:
    h = Harness(FakeLLM(words=200, delay_s=0.01))
    await h.chat.say("Tell me a long story")
    await h.until(lambda: len(h.of(AudioData)) >= 1)
    await h.chat.on_stt_event(SpeechStarted(utterance_id=1, start_s=3.0))
    assert isinstance(h.events[-1], Cancelled)
    done = h.of(ResponseDone)
    assert len(done) == 1 and done[0].interrupted
    assert h.of(Cancelled)
    assert h.of(UserSpeechStarted) == [UserSpeechStarted(3.0)]
    assert h.llm.closed == 1, "the LLM request must be closed"
    assert h.chat.history[-1].role == "assistant" and h.chat.history[-1].content.endswith("…")
    count = len(h.of(AudioData))
    # An observation window: no event could prove that a speaker still running would have spoken by
    # now. 0.1 s is ten of the fake LLM's words, a sentence and its audio three times over.
    await holds_for_async(lambda: len(h.of(AudioData)) == count, 0.1, message="no audio after a barge-in")
    await h.chat.close()


async def test_an_answer_interrupted_while_waiting_for_it_ends_the_wait() -> None:
    # A backlogged chat socket drains (wait_idle) while the user's speech interrupts the answer: the
    # wait used to raise the answer's CancelledError, and the socket ended 1006 without its error event.
    h = Harness(FakeLLM(words=200, delay_s=0.01))
    await h.chat.say("Tell me a long story")
    await h.until(lambda: len(h.of(AudioData)) >= 1)
    waiting = asyncio.create_task(h.chat.wait_idle(5))
    await asyncio.sleep(0)  # the wait has begun
    await h.chat.on_stt_event(SpeechStarted(utterance_id=1, start_s=3.0))
    await waiting  # returns: nothing raised
    assert h.of(ResponseDone)[0].interrupted
    await h.chat.close()


async def test_waiting_for_an_answer_times_out_or_completes() -> None:
    h = Harness(FakeLLM(words=5))
    await h.chat.say("hello")
    with pytest.raises(asyncio.TimeoutError):
        await h.chat.wait_idle(0)  # not done yet: a timeout, not a hang
    await h.chat.wait_idle(5)
    await h.chat.close()


async def test_barge_in_can_be_switched_off() -> None:
    h = Harness(FakeLLM(words=30, delay_s=0.005), barge_in=False)
    await h.chat.say("Talk")
    await h.until(lambda: len(h.of(AudioData)) >= 1)
    await h.chat.on_stt_event(SpeechStarted(utterance_id=1, start_s=1.0))
    await h.chat.wait_idle(5)
    assert h.of(ResponseDone)[0].interrupted is False
    await h.chat.close()


async def test_a_final_transcript_is_a_turn_and_partials_are_shown() -> None:
    h = Harness(FakeLLM(words=3))
    await h.chat.on_stt_event(Partial(1, "what is", "the", stability=0.5, start_s=0.0, end_s=1.0))
    await h.chat.on_stt_event(Final(utterance_id=1, text=" What is the time? ", start_s=0.0, end_s=1.5))
    await h.chat.wait_idle(5)
    assert h.of(Transcript) == [Transcript("what is the", False, 0.5), Transcript("What is the time?", True)]
    assert h.of(ResponseStarted)[0].user_text == "What is the time?"
    await h.chat.on_stt_event(Final(utterance_id=2, text="   ", start_s=2.0, end_s=2.5))
    assert len(h.of(ResponseStarted)) == 1, "an empty final is not a turn"
    await h.chat.close()


async def test_an_llm_failure_is_reported_and_the_chat_goes_on() -> None:
    h = Harness(FakeLLM(words=6, fail_after=4))
    await h.chat.say("Hi")
    await h.chat.wait_idle(5)
    errors = h.of(ChatError)
    assert [e.code for e in errors] == ["llm_unavailable"]
    assert h.of(ResponseDone)[0].text == "Word0 Word1 Word2. Word3 "
    # What was generated before the failure is still spoken.
    assert [s.text for s in h.of(SentenceStarted)] == ["Word0 Word1 Word2.", "Word3"]
    h.llm.fail_after = None
    await h.chat.say("Again")
    await h.chat.wait_idle(5)
    assert len(h.of(ResponseDone)) == 2
    await h.chat.close()


async def test_a_new_turn_replaces_the_answer_in_progress() -> None:
    h = Harness(FakeLLM(words=100, delay_s=0.01))
    await h.chat.say("One")
    await h.until(lambda: len(h.of(ResponseDelta)) >= 2)
    await h.chat.say("Two")
    await h.until(lambda: len(h.of(ResponseDone)) >= 1)
    assert h.of(ResponseDone)[0].interrupted
    await h.chat.interrupt()
    await h.chat.close()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('data: {"choices": [{"delta": {"content": "Hi"}}]}', "Hi"),
        ('data: {"choices": [{"delta": {"role": "assistant"}}]}', ""),
        ('data: {"choices": []}', ""),
        ("data: [DONE]", None),
        (": keep-alive", ""),
        ("", ""),
        ("event: message", ""),
    ],
)
def test_parse_sse_line(line: str, expected: str | None) -> None:
    assert parse_sse_line(line) == expected


@pytest.mark.parametrize("line", ["data: <html>", 'data: {"error": {"message": "quota"}}', "data: [1]"])
def test_parse_sse_line_refuses_garbage(line: str) -> None:
    with pytest.raises(LLMError):
        parse_sse_line(line)
