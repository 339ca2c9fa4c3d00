"""OpenAI's chat-completions wire objects, as ``POST /v1/chat/completions`` sends them (pure: no I/O).

A buffered answer is one ``chat.completion``; a streamed one is ``chat.completion.chunk`` s: the first
carries ``delta.role``, the next ones ``delta.content``, the last an empty delta with the
``finish_reason``, then (with ``stream_options.include_usage``) one chunk with no choices and the
``usage``, then ``data: [DONE]``. The official ``openai`` client reads exactly this.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Completion", "Usage"]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass
class Completion:
    """One answer's identity (id, creation time, model), shared by all its objects."""

    model: str
    created: int
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def message(self, content: str, finish_reason: str, usage: Usage) -> dict[str, Any]:
        """The whole answer (``stream: false``)."""
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        return self._head("chat.completion") | {"choices": [choice], "usage": usage.to_dict()}

    def chunk(
        self, *, content: str | None = None, role: bool = False, finish_reason: str | None = None
    ) -> dict[str, Any]:
        """One streamed piece: the role (first), a text delta, or the end (``finish_reason``)."""
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if content is not None:
            delta["content"] = content
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._head("chat.completion.chunk") | {"choices": [choice]}

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        """The chunk ``stream_options.include_usage`` asks for, after the last choice."""
        return self._head("chat.completion.chunk") | {"choices": [], "usage": usage.to_dict()}
