"""``Client.chat`` / ``AsyncClient.chat`` (``WS /v1/stream/chat``) against a real server and the stub LLM."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from tests.e2e.conftest import CHAT_SENTENCES, Server
from tests.e2e.ws_helpers import pcm16
from tests.speech_dev import by_name
from tests.stub_llm import StubLLM, answer_for
from tests.timing import scaled
from tests.wer import wer

from voxserve import AsyncClient, Client, ClientError
from voxserve.client import (
    ChatCancelled,
    ChatError,
    ChatEvent,
    ChatResponseDone,
    ChatResponseStarted,
    ChatSpeechStarted,
    ChatTranscript,
    Sentence,
)

pytestmark = pytest.mark.e2e

UTTERANCE = "librispeech_1272-141231-0002.wav"
PCM_BYTES_PER_S = 48000  # s16le mono 24 kHz


def expected_answer(question: str) -> str:
    return answer_for([{"role": "user", "content": question}], CHAT_SENTENCES)


@pytest.fixture
def client(chat_server: Server) -> Iterator[Client]:
    with Client(chat_server.url, timeout=60) as c:
        yield c


@pytest.fixture
async def aclient(chat_server: Server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(chat_server.url, timeout=60) as c:
        yield c


def test_sync_ask_gets_the_answer_and_its_audio(client: Client, stub: StubLLM) -> None:
    question = "What is the weather like?"
    text, audio = client.ask(question, voice="alloy", system_prompt="You are a test.")
    assert text == expected_answer(question)
    assert len(audio) % 2 == 0 and 6.0 < len(audio) / PCM_BYTES_PER_S < 25.0
    system, user = stub.requests()[-1][:2]
    assert system == {"role": "system", "content": "You are a test."}
    assert user == {"role": "user", "content": question}


async def test_async_ask_in_a_session_and_one_shot(aclient: AsyncClient) -> None:
    async with asyncio.timeout(scaled(120)):
        text, audio = await aclient.ask("How are you?")
        assert text == expected_answer("How are you?")
        assert 6.0 < len(audio) / PCM_BYTES_PER_S < 25.0
        async with aclient.chat(voice="alloy") as chat:
            assert chat.ready["type"] == "ready" and chat.ready["llm_model"] == "stub-model"
            text, audio = await chat.ask("  Is it raining?  ")
        assert text == expected_answer("Is it raining?")
        assert 6.0 < len(audio) / PCM_BYTES_PER_S < 25.0


async def test_async_typed_turn_then_cancel(aclient: AsyncClient) -> None:
    events: list[ChatEvent] = []
    async with asyncio.timeout(scaled(120)), aclient.chat() as chat:
        await chat.say("Tell me a long story.")
        async for event in chat:
            events.append(event)
            if isinstance(event, bytes):
                break  # the answer is being heard
        await chat.cancel()
        async for event in chat:
            events.append(event)
            if isinstance(event, ChatCancelled):
                break
        await chat.say("")  # an error event, and the chat goes on
        async for event in chat:
            events.append(event)
            if isinstance(event, ChatError):
                break
        await chat.end()
        events += [event async for event in chat]  # until the server closes (1000)
    started = [e for e in events if isinstance(e, ChatResponseStarted)]
    assert [e.user_text for e in started] == ["Tell me a long story."]
    done = [e for e in events if isinstance(e, ChatResponseDone)]
    assert len(done) == 1 and done[0].response_id == started[0].response_id
    assert done[0].interrupted is True and "sentence number 39" not in done[0].text
    assert any(isinstance(e, ChatCancelled) for e in events)
    assert [e.code for e in events if isinstance(e, ChatError)] == ["invalid_text"]
    assert any(isinstance(e, Sentence) for e in events)


def test_sync_spoken_turn_is_transcribed_and_answered(client: Client) -> None:
    utterance = by_name(UTTERANCE)
    pcm = pcm16(utterance.path)
    failure: list[BaseException] = []
    events: list[ChatEvent] = []
    with client.chat(sample_rate_hz=16000, encoding="linear16", language="en") as chat:

        def microphone() -> None:  # 100 ms frames at 4x real time, from another thread
            try:
                for i in range(0, len(pcm), 3200):
                    chat.send_audio(pcm[i : i + 3200])
                    time.sleep(0.025)
                chat.send_audio(b"\x00\x00" * 16000)  # a second of silence ends the last utterance
                chat.end()  # flushes the last final, answers it, then the server closes
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=microphone, name="test-microphone")
        thread.start()
        try:
            while (event := chat.receive(timeout=scaled(120))) is not None:
                events.append(event)
        finally:
            thread.join(scaled(30))
    assert not failure, failure
    finals = [e.text for e in events if isinstance(e, ChatTranscript) and e.is_final]
    assert wer(utterance.text, " ".join(finals)) <= 0.35, finals
    assert any(isinstance(e, ChatSpeechStarted) for e in events)
    started = [e for e in events if isinstance(e, ChatResponseStarted)]
    assert [e.user_text for e in started] == finals
    done = [e for e in events if isinstance(e, ChatResponseDone)]
    assert done[-1].response_id == started[-1].response_id and not done[-1].interrupted
    assert done[-1].text.startswith("You said: " + finals[-1].rstrip(".?!"))
    assert any(isinstance(e, bytes) and e for e in events), "the answer is spoken"


def test_a_bad_config_is_a_client_error(client: Client) -> None:
    with pytest.raises(ClientError) as info, client.chat(voice="nobody"):
        pass
    assert (info.value.code, info.value.status) == ("unknown_voice", None)
    chat = client.chat()
    with pytest.raises(RuntimeError, match="not open"):
        chat.say("Hello?")
