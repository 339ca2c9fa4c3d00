"""``POST /v1/chat/completions``: OpenAI's chat API on the embedded language model.

The model runs in its own worker (:mod:`voxserve.engines.llama`); this route only moves text. The
request is validated, and the prompt tokenised and checked against the context window in the worker,
before the status line, so every refusal is an OpenAI-shaped JSON error: ``invalid_messages`` (empty,
an unknown role, a wrong type), ``context_length_exceeded``, ``model_not_found``. With
``stream: true`` the answer comes as ``chat.completion.chunk`` SSE events (:mod:`voxserve.protocol.
completions`); an error after the first event ends the stream with ``data: {"error": ...}``. A client
that hangs up stops the generation in the worker at the next token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from voxserve.api.schemas import ChatCompletionRequest
from voxserve.api.state import AppState, get_state
from voxserve.api.streaming import AbortingStreamingResponse
from voxserve.chat.setup import no_llm_message
from voxserve.engines.base import ChatTurn, GenerateEnd, GenerateInfo, GenerateOptions, TextDelta
from voxserve.errors import InvalidValue, Unavailable, VoxserveError
from voxserve.protocol.completions import Completion, Usage
from voxserve.protocol.sse import format_event
from voxserve.runtime.pool import EnginePool, ItemStream
from voxserve.runtime.registry import unknown_model

__all__ = ["router"]

_log = logging.getLogger("voxserve.chat_completions")

router = APIRouter(tags=["chat"])

_MAX_STOPS = 4
_MAX_STOP_CHARS = 100
_DEFAULT_TEMPERATURE = 1.0
"""OpenAI's default when a request names none."""


def _pool(state: AppState, model: str) -> tuple[EnginePool, str]:
    registry = state.registry
    if registry.llm_pool is None or registry.llm_model is None:
        raise Unavailable(no_llm_message(state), code="llm_not_available")
    if state.settings.model_aliases.get(model, model) != registry.llm_model:
        raise unknown_model(model, "chat", registry.chat_model_names())
    return registry.llm_pool, registry.llm_model


def _options(body: ChatCompletionRequest) -> GenerateOptions:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > _MAX_STOPS or any(not s or len(s) > _MAX_STOP_CHARS for s in stop):
        raise InvalidValue(
            f"stop takes up to {_MAX_STOPS} non-empty strings of at most {_MAX_STOP_CHARS} characters",
            code="invalid_stop",
            param="stop",
        )
    return GenerateOptions(
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=_DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        stop=tuple(stop),
        seed=body.seed,
    )


def _turns(body: ChatCompletionRequest) -> list[ChatTurn]:
    return [ChatTurn("system" if m.role == "developer" else m.role, m.text()) for m in body.messages]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer a conversation with the embedded model (OpenAI's request and response shapes).

    Example: ``openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="...").chat.completions.
    create(model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}],
    stream=True)``.
    """
    state = get_state(request)
    pool, model = _pool(state, body.model)
    options = _options(body)
    pool.check_admission()
    stream = await pool.stream_call("generate", _turns(body), options)
    try:
        info: GenerateInfo = await anext(stream)  # the prompt fits: refusals are JSON, before this
    except BaseException:
        stream.abort()
        raise
    completion = Completion(model=model, created=int(time.time()))
    if not body.stream:
        try:
            return await _buffered(stream, completion, info)
        finally:
            stream.abort()
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    return AbortingStreamingResponse(
        _events(stream, completion, info, include_usage),
        stream.abort,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _buffered(stream: ItemStream, completion: Completion, info: GenerateInfo) -> JSONResponse:
    parts: list[str] = []
    end = GenerateEnd("stop", info.prompt_tokens, 0)
    async for item in stream:
        if isinstance(item, TextDelta):
            parts.append(item.text)
        elif isinstance(item, GenerateEnd):
            end = item
    usage = Usage(end.prompt_tokens, end.completion_tokens)
    return JSONResponse(completion.message("".join(parts), end.finish_reason, usage))


async def _events(
    stream: ItemStream, completion: Completion, info: GenerateInfo, include_usage: bool
) -> AsyncIterator[bytes]:
    yield format_event(completion.chunk(role=True, content=""))
    end = GenerateEnd("stop", info.prompt_tokens, 0)
    try:
        async for item in stream:
            if isinstance(item, TextDelta):
                yield format_event(completion.chunk(content=item.text))
            elif isinstance(item, GenerateEnd):
                end = item
    except VoxserveError as exc:
        _log.warning("chat completion %s failed mid-stream: %s (%s)", completion.id, exc.message, exc.code)
        yield format_event(exc.to_dict())
        return
    yield format_event(completion.chunk(finish_reason=end.finish_reason))
    if include_usage:
        yield format_event(completion.usage_chunk(Usage(end.prompt_tokens, end.completion_tokens)))
    yield format_event("[DONE]")
