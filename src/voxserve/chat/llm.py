"""A streaming client for any OpenAI-compatible chat-completions endpoint (Ollama, vLLM, llama.cpp's
server, OpenAI): messages in, the answer's text deltas out as they arrive.

Built on httpx rather than the ``openai`` package so the server needs no SDK; the wire format is the
documented one: ``POST {base_url}/chat/completions`` with ``stream: true``, answered by Server-Sent
Events whose ``data:`` lines hold ``chat.completion.chunk`` objects, ended by ``data: [DONE]``. The
events are read by :mod:`voxserve.protocol.sse`, the project's one SSE parser.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

from voxserve.errors import Unavailable
from voxserve.protocol.sse import Event, SSEDecoder, SSEError

__all__ = ["ChatLLM", "ChatMessage", "LLMError", "OpenAIChatLLM", "parse_chunk", "parse_sse_line"]

_log = logging.getLogger("voxserve.llm")


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


class LLMError(Unavailable):
    """The LLM could not be reached or answered badly (503: the speech side is fine)."""

    default_code = "llm_unavailable"


class ChatLLM(Protocol):
    """What the voice chat needs from a language model."""

    model: str
    """The model's name, as the chat's ``ready`` event reports it."""

    def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        """Yield the answer's text as it is generated."""
        ...


def parse_chunk(data: str) -> str | None:
    """The text delta in one event's ``data`` of a chat-completions stream ('' for none, None at
    ``[DONE]``).

    Data that is not a chunk object is an :class:`LLMError`: a proxy's HTML error page must not be
    spoken.
    """
    payload = data.strip()
    if payload == "[DONE]":
        return None
    try:
        chunk = json.loads(payload)
    except (ValueError, RecursionError):
        raise LLMError("the LLM sent a stream line that is not JSON", code="llm_bad_response") from None
    if not isinstance(chunk, dict):
        raise LLMError("the LLM sent an unexpected stream line", code="llm_bad_response")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise LLMError(f"the LLM reported an error: {message}", code="llm_error")
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


def parse_sse_line(line: str) -> str | None:
    """The text delta in one SSE line that is a whole event (see :func:`parse_chunk`): lines other
    than ``data:`` (comments, ``event:``, blanks) carry no text."""
    decoder = SSEDecoder()
    decoder.feed_line(line)
    event = decoder.flush()
    return parse_chunk(event.data) if event is not None else ""


def _deltas(events: list[Event]) -> Iterator[str | None]:
    for event in events:
        yield parse_chunk(event.data)


class OpenAIChatLLM:
    """Streams chat completions from ``base_url`` (which ends in ``/v1`` for most servers)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        self._max_tokens = max_tokens
        self._temperature = temperature

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        body: dict[str, object] = {
            "model": self.model,
            "stream": True,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if self._max_tokens is not None:
            body["max_tokens"] = self._max_tokens
        if self._temperature is not None:
            body["temperature"] = self._temperature
        url = f"{self.base_url}/chat/completions"
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client,
                client.stream("POST", url, json=body) as response,
            ):
                if response.status_code != 200:
                    detail = (await response.aread())[:300].decode(errors="replace")
                    raise LLMError(
                        f"the LLM at {self.base_url} answered {response.status_code}: {detail}",
                        code="llm_error",
                    )
                events = SSEDecoder()  # voxserve's one SSE parser
                async for chunk in response.aiter_bytes():
                    for delta in _deltas(events.feed(chunk)):
                        if delta is None:
                            return
                        if delta:
                            yield delta
                last = events.flush()  # a stream cut after its last data line
                delta = parse_chunk(last.data) if last is not None else None
                if delta:
                    yield delta
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the LLM at {self.base_url}: {exc}") from exc
        except SSEError as exc:
            raise LLMError(f"the LLM sent a bad stream: {exc}", code="llm_bad_response") from None
