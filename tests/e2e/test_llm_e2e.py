"""The embedded language model, on a server started with no LLM settings (the shared default server):
``POST /v1/chat/completions`` through the official ``openai`` client, and the voice chat
(``WS /v1/stream/chat``, and the Python client's ``ask``) answered by it out of the box."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import openai
import pytest
from tests.e2e.conftest import Server
from tests.e2e.test_chat_e2e import CONFIG, Conversation, chat_url
from tests.e2e.ws_helpers import pcm16
from tests.speech_dev import by_name
from tests.timing import scaled, until
from websockets.sync.client import connect

from voxserve import Client
from voxserve.config import EMBEDDED_LLM_MODEL

pytestmark = pytest.mark.e2e

QUESTION = [
    {"role": "system", "content": "You are a helpful voice assistant. Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture
def oai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=scaled(120), max_retries=0)


def test_the_model_is_listed_and_answers(oai: openai.OpenAI) -> None:
    assert EMBEDDED_LLM_MODEL in {m.id for m in oai.models.list()}
    answer = oai.chat.completions.create(
        model=EMBEDDED_LLM_MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=40,
    )
    text = answer.choices[0].message.content or ""
    assert "paris" in text.lower(), text
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_streamed_answer_matches_the_buffered_one(oai: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": EMBEDDED_LLM_MODEL, "messages": QUESTION}
    kwargs |= {"temperature": 0, "max_tokens": 40}
    buffered = oai.chat.completions.create(**kwargs).choices[0].message.content
    stream = oai.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == buffered
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_bad_requests_are_refused_with_openai_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_long:
        long = [{"role": "user", "content": "word " * 3000}]
        oai.chat.completions.create(model=EMBEDDED_LLM_MODEL, messages=long)  # type: ignore[arg-type]
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.UnprocessableEntityError) as empty:
        oai.chat.completions.create(model=EMBEDDED_LLM_MODEL, messages=[])
    assert empty.value.code == "invalid_messages"
    with pytest.raises(openai.NotFoundError) as unknown:
        oai.chat.completions.create(model="gpt-9", messages=QUESTION)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"


def _llm_cancels(server: Server) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=scaled(5)).text
    found = re.search(r'voxserve_tts_jobs_cancelled_total\{engine="llm"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_a_client_that_hangs_up_stops_the_model(server: Server, oai: openai.OpenAI) -> None:
    before = _llm_cancels(server)
    stream = oai.chat.completions.create(
        model=EMBEDDED_LLM_MODEL,
        messages=[{"role": "user", "content": "Write a very long story about the sea."}],
        max_tokens=1500,
        temperature=1.0,
        stream=True,
    )
    for i, _chunk in enumerate(stream):
        if i == 5:
            break
    stream.close()
    # The worker confirms the cancel: the answer was stopped, not left to run to its 1500 tokens.
    until(lambda: _llm_cancels(server) == before + 1, 30, message="the worker confirms the cancel")

    def llm_idle() -> bool:
        engines = httpx.get(f"{server.url}/ready", timeout=scaled(5)).json()["engines"]
        return engines["llm"]["busy"] == 0

    until(llm_idle, 30, message="the model's worker is idle again")
    answer = oai.chat.completions.create(model=EMBEDDED_LLM_MODEL, messages=QUESTION, max_tokens=40)  # type: ignore[arg-type]
    assert answer.choices[0].message.content


def test_a_spoken_question_is_answered_by_the_embedded_model(server: Server) -> None:
    utterance = by_name("librispeech_1272-141231-0002.wav")
    pcm = pcm16(utterance.path)
    with connect(chat_url(server)) as ws:
        ws.send(json.dumps(CONFIG))
        chat = Conversation(ws)
        ready = chat.wait_for("ready", 60)
        assert ready["llm_model"] == EMBEDDED_LLM_MODEL
        for i in range(0, len(pcm), 3200):  # 100 ms frames at 4x real time
            ws.send(pcm[i : i + 3200])
            time.sleep(0.025)
        ws.send(b"\x00\x00" * 16000)  # a second of silence ends the last utterance
        ws.send(json.dumps({"type": "end"}))  # flushes the last final, answers it, then closes
        assert chat.drain(120) == 1000
    finals = [e["text"] for e in chat.of("transcript") if e["is_final"]]
    assert finals
    done = chat.of("response.done")
    assert done and done[-1]["text"].strip() and not done[-1]["interrupted"]
    assert not chat.of("error"), chat.of("error")
    assert chat.audio, "the answer is spoken"


def test_the_python_client_asks_the_embedded_model(server: Server) -> None:
    with Client(server.url, timeout=120) as client:
        text, audio = client.ask("What is the capital of France?", voice="alloy")
    assert text.strip()
    assert len(audio) > 0 and len(audio) % 2 == 0
