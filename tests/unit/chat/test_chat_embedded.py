"""The voice chat's LLM when none is configured: the embedded model's pool (a fake model in a real
worker process here), and how :func:`make_llm` chooses."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.timing import until_async

from voxserve.api.app import create_app
from voxserve.api.state import AppState
from voxserve.chat.embedded import EmbeddedChatLLM
from voxserve.chat.llm import ChatMessage, OpenAIChatLLM
from voxserve.chat.setup import make_llm, no_llm_message
from voxserve.config import Settings
from voxserve.runtime.messages import Done, EngineSpec
from voxserve.runtime.registry import TimedPool

FAKE_LLM = EngineSpec(engine="llama", factory="tests.fakes:FakeLLM", options={"step_s": 0.01})


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[AppState]:
    model = tmp_path / "fake-llm.gguf"
    model.write_bytes(b"GGUF")
    app = create_app(Settings(ui_enabled=False, llm_model_path=model, llm_max_tokens=4))
    vox: AppState = app.state.vox
    vox.registry.llm_pool = vox.registry._pool(FAKE_LLM, 1, "llm", lazy=True)
    vox.registry.llm_model = "fake-llm"
    try:
        yield vox
    finally:
        await vox.registry.stop()


async def test_without_an_llm_url_the_chat_uses_the_embedded_model(state: AppState) -> None:
    llm = make_llm(state)
    assert isinstance(llm, EmbeddedChatLLM)
    messages = [ChatMessage("system", "be brief"), ChatMessage("user", "hello")]
    deltas = [d async for d in llm.stream(messages)]
    assert "".join(deltas) == "You said hello word1"  # llm_max_tokens=4


async def test_leaving_the_answer_early_stops_the_worker(state: AppState) -> None:
    pool = state.registry.llm_pool
    assert isinstance(pool, TimedPool)
    pool.spec = dataclasses.replace(FAKE_LLM, options={"step_s": 0.01, "context_tokens": 100_000})
    done: list[Done] = []
    pool.on_done = lambda name, d: done.append(d)
    llm = EmbeddedChatLLM(pool, "fake-llm", max_tokens=50_000)  # 500 s of tokens
    stream = llm.stream([ChatMessage("user", "hello")])
    assert await anext(stream) == "You"
    await stream.aclose()  # a barge-in: the pipeline cancels the answer's task
    # The worker confirms the cancel (a Done marked cancelled), long before the answer's end.
    await until_async(lambda: [d.cancelled for d in done] == [True], timeout=10, message="cancel confirmed")
    await until_async(lambda: pool.busy == 0 and pool.idle_workers == 1, timeout=10, message="worker freed")


def test_a_configured_url_wins_over_the_embedded_model(tmp_path: Path) -> None:
    app = create_app(Settings(ui_enabled=False, llm_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(make_llm(app.state.vox), OpenAIChatLLM)


def test_with_the_embedded_model_off_there_is_no_llm_and_the_message_says_so() -> None:
    app = create_app(Settings(ui_enabled=False, llm_embedded=False))
    assert make_llm(app.state.vox) is None
    assert "llm_embedded" in no_llm_message(app.state.vox)


def test_a_missing_model_file_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="llm_model_path"):
        Settings(llm_model_path=tmp_path / "nope.gguf")


def test_with_no_llm_at_all_the_chat_socket_says_why_and_closes_1008() -> None:
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    app = create_app(Settings(ui_enabled=False, llm_embedded=False))
    with TestClient(app).websocket_connect("/v1/stream/chat") as ws:
        event = ws.receive_json()
        assert event["type"] == "error" and event["code"] == "llm_not_configured"
        assert "--llm-base-url" in event["message"] and "llm_embedded" in event["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
