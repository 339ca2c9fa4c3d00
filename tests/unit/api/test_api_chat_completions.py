"""``POST /v1/chat/completions`` through the official ``openai`` client, on the app in process with a
fake language model in a real worker process (tests/fakes.py ``FakeLLM``: one word per token). The
real model is exercised in tests/engine/test_engine_llama.py and tests/e2e."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.timing import until_async

from voxserve.api.app import create_app
from voxserve.api.state import AppState
from voxserve.config import Settings
from voxserve.runtime.messages import EngineSpec

FAKE_LLM = EngineSpec(engine="llama", factory="tests.fakes:FakeLLM", options={"step_s": 0.01})


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient, AppState]]:
    model = tmp_path / "fake-llm.gguf"  # a user's own model file: served as "fake-llm"
    model.write_bytes(b"GGUF")
    settings = Settings(ui_enabled=False, llm_model_path=model, model_aliases={"gpt-4o-mini": "fake-llm"})
    app = create_app(settings)
    state: AppState = app.state.vox
    registry = state.registry
    registry.llm_pool = registry._pool(FAKE_LLM, 1, "llm", lazy=True)
    registry.llm_model = "fake-llm"
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:
            client = openai.AsyncOpenAI(
                base_url="http://test/v1", api_key="k", http_client=http, max_retries=0
            )
            yield client, http, state
    finally:
        await registry.stop()


Env = tuple[openai.AsyncOpenAI, httpx.AsyncClient, AppState]
HELLO = [{"role": "user", "content": "hello there"}]


async def test_a_buffered_answer_has_openais_shape_and_usage(env: Env) -> None:
    client, _, _ = env
    answer = await client.chat.completions.create(model="fake-llm", messages=HELLO, max_tokens=5)  # type: ignore[arg-type]
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "fake-llm"
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said hello there word1"
    assert choice.finish_reason == "length"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 5)
    assert answer.usage.total_tokens == 8


async def test_a_streamed_answer_is_chunks_then_usage(env: Env) -> None:
    client, _, _ = env
    stream = await client.chat.completions.create(
        model="fake-llm",
        messages=[{"role": "system", "content": "be brief"}, *HELLO],  # type: ignore[list-item]
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said hello there word1 word2"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert len({c.id for c in chunks}) == 1


async def test_stop_strings_end_the_answer_before_them(env: Env) -> None:
    client, _, _ = env
    answer = await client.chat.completions.create(
        model="gpt-4o-mini",  # an alias of the embedded model
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=20,
        stop=["word3"],
    )
    assert answer.choices[0].message.content == "You said hello there word1 word2"
    assert answer.choices[0].finish_reason == "stop"


async def test_models_lists_the_chat_model_and_its_alias(env: Env) -> None:
    client, _, _ = env
    ids = {m.id async for m in client.models.list()}
    assert {"fake-llm", "gpt-4o-mini", "whisper-1", "tts-1"} <= ids


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "fake-llm", "messages": []}, 422, "invalid_messages"),
        ({"model": "fake-llm", "messages": [{"role": "robot", "content": "hi"}]}, 422, "invalid_messages"),
        ({"model": "fake-llm", "messages": [{"role": "user", "content": 5}]}, 422, "invalid_messages"),
        ({"model": "fake-llm", "messages": "hi"}, 422, "invalid_messages"),
        ({"model": "fake-llm", "messages": [{"role": "user"}]}, 422, "missing_field"),
        ({"model": "fake-llm", "messages": HELLO, "temperature": 3}, 422, "validation_error"),
        ({"model": "fake-llm", "messages": HELLO, "n": 2}, 422, "validation_error"),
        ({"model": "fake-llm", "messages": HELLO, "tools": []}, 422, "unknown_field"),
        ({"model": "fake-llm", "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 422, "invalid_stop"),
        ({"model": "fake-llm", "messages": HELLO, "stop": [""]}, 422, "invalid_stop"),
        ({"model": "gpt-5", "messages": HELLO}, 404, "model_not_found"),
        (
            {"model": "fake-llm", "messages": [{"role": "user", "content": "word " * 80}]},
            400,
            "context_length_exceeded",
        ),
    ],
)
async def test_bad_requests_get_openai_shaped_errors(
    env: Env, body: dict[str, Any], status: int, code: str
) -> None:
    _, http, _ = env
    for stream in (False, True):
        r = await http.post("/v1/chat/completions", json=body | {"stream": stream})
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json")
        error = r.json()["error"]
        assert error["code"] == code and error["message"], error


async def test_a_worker_crash_mid_answer_ends_the_stream_with_an_error(env: Env) -> None:
    client, http, _ = env
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "fake-llm", "messages": [{"role": "user", "content": "CRASH"}], "stream": True},
    ) as r:
        assert r.status_code == 200
        events = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "worker_crashed"
    assert "[DONE]" not in events
    # The worker was replaced: the next answer comes.
    answer = await client.chat.completions.create(model="fake-llm", messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said"


async def test_without_a_model_the_route_says_why(env: Env) -> None:
    _, http, state = env
    state.registry.llm_pool = None
    state.registry.llm_model = None
    r = await http.post("/v1/chat/completions", json={"model": "fake-llm", "messages": HELLO})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "llm_not_available"


async def test_the_limits_on_stop_strings_and_messages_at_n_and_n_plus_1(env: Env) -> None:
    _, http, _ = env

    async def status(**fields: Any) -> int:
        body = {"model": "fake-llm", "messages": HELLO, "max_tokens": 2} | fields
        return (await http.post("/v1/chat/completions", json=body)).status_code

    assert await status(stop=["a", "b", "c", "d"]) == 200
    assert await status(stop=["a", "b", "c", "d", "e"]) == 422
    assert await status(stop=["x" * 100]) == 200
    assert await status(stop=["x" * 101]) == 422
    one = {"role": "user", "content": "hi"}
    # 1000 messages pass the schema (this fake model's window then refuses them); 1001 do not.
    assert await status(messages=[one] * 1000) == 400
    assert await status(messages=[one] * 1001) == 422


async def test_over_capacity_a_request_is_refused_503_at_once(env: Env) -> None:
    _, http, state = env
    pool = state.registry.llm_pool
    assert pool is not None
    pool.max_queued = 0  # no queue: a request that finds the one worker busy is refused
    # (httpx's ASGI transport runs a request to its end: the first one runs as a task meanwhile.)
    first = asyncio.create_task(
        http.post("/v1/chat/completions", json={"model": "fake-llm", "messages": HELLO, "max_tokens": 50})
    )
    await until_async(lambda: pool.busy == 1, timeout=10, message="the first answer is being generated")
    r = await http.post("/v1/chat/completions", json={"model": "fake-llm", "messages": HELLO})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "at_capacity"
    assert (await first).status_code == 200
