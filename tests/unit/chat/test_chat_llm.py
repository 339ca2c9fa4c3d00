"""OpenAIChatLLM reads a chat-completions event stream with voxserve's one SSE parser."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from voxserve.chat.llm import ChatMessage, LLMError, OpenAIChatLLM, parse_chunk


def chunk(text: str) -> str:
    return json.dumps(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    )


def serve(monkeypatch: pytest.MonkeyPatch, body: bytes, size: int) -> list[dict[str, object]]:
    """Answer every request with ``body``, in pieces of ``size`` bytes; return the request bodies."""
    requests: list[dict[str, object]] = []
    real = httpx.AsyncClient

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), size):
            yield body[i : i + size]

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        return httpx.Response(200, content=pieces(), headers={"content-type": "text/event-stream"})

    def client(**kwargs: object) -> httpx.AsyncClient:
        return real(transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "AsyncClient", client)
    return requests


async def answer(llm: OpenAIChatLLM) -> list[str]:
    return [d async for d in llm.stream([ChatMessage("user", "Hi")])]


@pytest.mark.parametrize("size", [1, 5, 4096])
async def test_deltas_in_order_until_done(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    body = (
        f": keep-alive\r\n\r\ndata: {chunk('Hel')}\r\n\r\n"
        f'data: {{"choices": [{{"delta": {{"role": "assistant"}}}}]}}\n\n'
        f"data: {chunk('lo.')}\n\ndata: [DONE]\n\ndata: {chunk('after the end')}\n\n"
    ).encode()
    requests = serve(monkeypatch, body, size)
    assert await answer(OpenAIChatLLM("http://llm/v1", "m", max_tokens=5)) == ["Hel", "lo."]
    assert requests == [
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    ]


async def test_a_stream_cut_after_its_last_data_line(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, f"data: {chunk('a')}\n\ndata: {chunk('b')}".encode(), 7)
    assert await answer(OpenAIChatLLM("http://llm/v1", "m")) == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"data: <html>bad gateway</html>\n\n", "llm_bad_response"),
        (b'data: {"error": {"message": "quota"}}\n\n', "llm_error"),
    ],
)
async def test_bad_streams_are_llm_errors(monkeypatch: pytest.MonkeyPatch, body: bytes, code: str) -> None:
    serve(monkeypatch, body, 3)
    with pytest.raises(LLMError) as info:
        await answer(OpenAIChatLLM("http://llm/v1", "m"))
    assert info.value.code == code


def test_parse_chunk() -> None:
    assert parse_chunk(chunk("x")) == "x"
    assert parse_chunk(" [DONE] ") is None
    with pytest.raises(LLMError):
        parse_chunk("[1]")
