"""The voice chat's LLM when none is configured: the embedded model, in its worker (see
:mod:`voxserve.engines.llama`).

Tokens reach the event loop as the worker produces them; leaving the stream early (a barge-in, a
client that hung up) aborts the job, and the worker stops at the next token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from voxserve.chat.llm import ChatMessage
from voxserve.engines.base import ChatTurn, GenerateOptions, TextDelta
from voxserve.runtime.pool import EnginePool

__all__ = ["EmbeddedChatLLM"]


class EmbeddedChatLLM:
    """A :class:`~voxserve.chat.llm.ChatLLM` on the embedded model's pool."""

    def __init__(self, pool: EnginePool, model: str, *, max_tokens: int, temperature: float = 0.0) -> None:
        self._pool = pool
        self.model = model
        """The model id (the chat's ``ready`` event names it)."""
        self._options = GenerateOptions(max_tokens=max_tokens, temperature=temperature)

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        turns = [ChatTurn(m.role, m.content) for m in messages]
        stream = await self._pool.stream_call("generate", turns, self._options)
        try:
            async for item in stream:
                if isinstance(item, TextDelta):
                    yield item.text
        finally:
            stream.abort()  # no-op once the job is done
