"""The LLM a voice chat talks to, as the server's settings configure it."""

from __future__ import annotations

from voxserve.chat.embedded import EmbeddedChatLLM
from voxserve.chat.llm import ChatLLM, OpenAIChatLLM
from voxserve.state import AppState

__all__ = ["NO_LLM", "make_llm", "no_llm_message"]

NO_LLM = (
    "no LLM is configured: start the server with --llm-base-url (an OpenAI-compatible endpoint such "
    "as Ollama's http://127.0.0.1:11434/v1) and --llm-model"
)
"""The message of the ``llm_not_configured`` error."""


def no_llm_message(state: AppState) -> str:
    """Why this server has no LLM: none configured, and the embedded one off or missing."""
    missing = state.registry.llm_missing
    if missing is None:
        return NO_LLM + " (the embedded LLM is off: llm_embedded)"
    return f"{NO_LLM}, or install the embedded one: {missing}"


def make_llm(state: AppState) -> ChatLLM | None:
    """The LLM of the voice chat: the configured endpoint (``llm_base_url``), else the embedded
    model, else ``None``."""
    settings = state.settings
    if settings.llm_base_url is not None:
        return OpenAIChatLLM(
            settings.llm_base_url,
            settings.llm_model,
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
        )
    pool, model = state.registry.llm_pool, state.registry.llm_model
    if pool is None or model is None:
        return None
    return EmbeddedChatLLM(
        pool, model, max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature
    )
