"""The LLM a voice chat talks to, as the server's settings configure it."""

from __future__ import annotations

from voxserve.chat.llm import ChatLLM, OpenAIChatLLM
from voxserve.config import Settings

__all__ = ["NO_LLM", "make_llm"]

NO_LLM = (
    "no LLM is configured: start the server with --llm-base-url (an OpenAI-compatible endpoint such "
    "as Ollama's http://127.0.0.1:11434/v1) and --llm-model"
)
"""The message of the ``llm_not_configured`` error."""


def make_llm(settings: Settings) -> ChatLLM | None:
    """The configured LLM client, or ``None`` when no ``llm_base_url`` is set."""
    if settings.llm_base_url is None:
        return None
    return OpenAIChatLLM(
        settings.llm_base_url,
        settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
    )
