"""``POST /v1/audio/speech``: OpenAI's speech endpoint, streamed sentence by sentence.

Everything that can fail is checked before the status line: the model, the voice (by the engine, in
its worker), the text and its limits — and the first audio chunk is produced before the response
starts. A failure after that ends an SSE stream with a ``speech.audio.error`` event, and an audio
stream by aborting the chunked body (so the client sees an error, never silently short audio).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from voxserve.api.schemas import SpeechRequest, voice_value
from voxserve.api.state import AppState, get_state
from voxserve.api.streaming import AbortingStreamingResponse
from voxserve.audio.encode import MEDIA_TYPES
from voxserve.errors import UnknownModel, VoxserveError
from voxserve.runtime.messages import Chunk
from voxserve.runtime.pool import SynthStream
from voxserve.runtime.registry import ResolvedVoice
from voxserve.text.markup import MarkupMode
from voxserve.text.normalize import NormalizationOptions
from voxserve.tts.plan import SpeechPlan, plan_speech

__all__ = [
    "speech_response",
    "StartedSpeech",
    "audio_headers",
    "iterate_audio",
    "router",
    "start_speech",
]

_log = logging.getLogger("voxserve.speech")

router = APIRouter()


def speech_response(
    started: StartedSpeech, content: AsyncIterator[bytes], **kwargs: Any
) -> AbortingStreamingResponse:
    """A streaming response that always releases its synthesis, even if the body never starts."""
    return AbortingStreamingResponse(content, started.stream.abort, **kwargs)


@dataclass
class StartedSpeech:
    """A synthesis whose first chunk is ready: nothing can fail before the headers any more."""

    voice: ResolvedVoice
    plan: SpeechPlan
    stream: SynthStream
    first: Chunk | None
    request_id: str


def check_model(state: AppState, model: str) -> str | None:
    """404 for a model this server does not serve; return the engine it pins, if any."""
    if model not in state.model_ids():
        raise UnknownModel(
            f"model {model!r} is not served here; GET /v1/models lists the models", param="model"
        )
    return model if model in state.registry.pools else None


async def start_speech(
    state: AppState,
    *,
    model: str,
    voice: str | dict[str, str],
    text: str | None,
    phonemes: str | None = None,
    fmt: str,
    speed: float,
    streaming: bool = True,
    volume: float = 1.0,
    options: NormalizationOptions | None = None,
    markup: MarkupMode = "lenient",
) -> StartedSpeech:
    """Resolve, validate and start a synthesis; return once its first chunk exists."""
    settings = state.settings
    engine_hint = check_model(state, model)
    resolved = await state.registry.resolve(voice, engine_hint=engine_hint)
    pool = state.registry.pool(resolved.engine)
    pool.check_admission()  # over capacity: refuse before planning the text
    plan = SpeechPlan(text="", fragments=())
    if text is not None:
        plan = await asyncio.to_thread(
            plan_speech,
            text,
            max_input_chars=settings.max_input_chars,
            first_fragment_max_chars=settings.first_fragment_max_chars,
            max_fragment_chars=settings.max_fragment_chars,
            options=options,
            markup=markup,
        )
    stream = await pool.synth(
        {
            "voice": resolved.name,
            "speed": speed,
            "fmt": fmt,
            "sample_rate": settings.output_sample_rate,
            "fragments": plan.fragments,
            "phonemes": phonemes,
            "streaming": streaming,
            "volume": volume,
            "trailing_silence_s": settings.trailing_silence_ms / 1000,
        }
    )
    try:
        first: Chunk | None = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        stream.abort()
        raise
    return StartedSpeech(resolved, plan, stream, first, uuid.uuid4().hex)


def audio_headers(started: StartedSpeech, fmt: str, sample_rate: int) -> dict[str, str]:
    headers = {
        "X-Request-ID": started.request_id,
        "X-Voxserve-Voice": started.voice.id,
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    if started.plan.warnings:
        headers["X-Voxserve-Warning"] = markup_warning(started.plan.warnings)
    if fmt == "pcm":
        # Raw PCM is not self-describing.
        headers |= {
            "X-Audio-Encoding": "pcm_s16le",
            "X-Audio-Sample-Rate": str(sample_rate),
            "X-Audio-Channels": "1",
            "X-Audio-Bits-Per-Sample": "16",
        }
    return headers


def markup_warning(tags: tuple[str, ...]) -> str:
    """The ``X-Voxserve-Warning`` value for look-alike tags that were removed (ASCII, bounded)."""
    shown = ", ".join(json.dumps(t[:48]) for t in tags[:5]) + (", ..." if len(tags) > 5 else "")
    return (
        f"invalid_tag: removed {len(tags)} tag(s) that are not voxserve markup ({shown}); "
        "a pause is written [pause:1.5s] or [pause:300ms]"
    )


async def iterate_audio(state: AppState, started: StartedSpeech) -> AsyncIterator[Chunk]:
    """The started stream's chunks, first included; aborts the job if the consumer stops early."""
    state.metrics.active_streams.inc()
    try:
        if started.first is not None:
            yield started.first
        async for chunk in started.stream:
            yield chunk
    except VoxserveError as exc:
        state.metrics.stream_errors.labels(exc.code).inc()
        _log.error("stream %s failed after the first byte: %s", started.request_id, exc.message)
        raise
    finally:
        started.stream.abort()
        state.metrics.active_streams.dec()


@router.post("/v1/audio/speech", tags=["speech"], response_class=Response)
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    """Speak ``input`` with ``voice``; audio streams out as it is synthesized."""
    state = get_state(request)
    t0 = time.perf_counter()
    started = await start_speech(
        state,
        model=body.model,
        voice=voice_value(body.voice),
        text=body.input,
        fmt=body.response_format,
        speed=body.speed,
        streaming=body.stream,
        volume=body.volume_multiplier,
        options=body.normalization_options.to_options() if body.normalization_options else None,
        markup=body.markup,
    )
    state.metrics.ttfb.labels(body.response_format).observe(time.perf_counter() - t0)
    headers = audio_headers(started, body.response_format, state.settings.output_sample_rate)
    if body.instructions:
        # The offline engines cannot follow free-text instructions; say so instead of dropping them.
        headers["X-Voxserve-Ignored"] = "instructions"
    media_type = MEDIA_TYPES[body.response_format]

    if body.stream_format == "sse":
        return speech_response(
            started, _sse(state, started, body), media_type="text/event-stream", headers=headers
        )
    if not body.stream:
        data = b"".join([c.data async for c in iterate_audio(state, started)])
        headers["Content-Disposition"] = f'attachment; filename="speech.{body.response_format}"'
        return Response(data, media_type=media_type, headers=headers)
    return speech_response(started, _audio_bytes(state, started), media_type=media_type, headers=headers)


async def _audio_bytes(state: AppState, started: StartedSpeech) -> AsyncIterator[bytes]:
    async for chunk in iterate_audio(state, started):
        if chunk.data:
            yield chunk.data


def _sse_event(payload: dict[str, object]) -> bytes:
    # data: lines only (no `event:` field), as the openai SDK expects; never a [DONE] sentinel.
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _sse(state: AppState, started: StartedSpeech, body: SpeechRequest) -> AsyncIterator[bytes]:
    chunks = 0
    try:
        async for chunk in iterate_audio(state, started):
            if chunk.data:
                chunks += 1
                yield _sse_event(
                    {"type": "speech.audio.delta", "audio": base64.b64encode(chunk.data).decode()}
                )
    except VoxserveError as exc:
        yield _sse_event(
            {
                "type": "speech.audio.error",
                "error": {"type": exc.error_type, "code": exc.code, "message": exc.message},
            }
        )
        return
    # "Tokens" here are input characters and output audio chunks: there is no tokenizer in a TTS engine.
    usage = {
        "input_tokens": len(body.input),
        "output_tokens": chunks,
        "total_tokens": len(body.input) + chunks,
    }
    yield _sse_event({"type": "speech.audio.done", "usage": usage})
