"""Start a synthesis for a request: resolve the voice, plan the text off the loop, await the first chunk.

The one path behind ``POST /v1/audio/speech``, the dev routes and the web UI's Speak tab: everything
that can fail is checked, and the first audio exists, before an adapter commits to a response.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from voxserve.errors import VoxserveError
from voxserve.runtime.messages import Chunk, SynthRequest
from voxserve.runtime.pool import SynthStream
from voxserve.runtime.registry import ResolvedVoice
from voxserve.state import AppState
from voxserve.text.markup import MarkupMode
from voxserve.text.normalize import NormalizationOptions
from voxserve.tts.plan import SpeechPlan, plan_speech

__all__ = ["StartedSpeech", "check_model", "iterate_audio", "start_speech"]

_log = logging.getLogger("voxserve.speech")


@dataclass
class StartedSpeech:
    """A synthesis whose first chunk is ready: nothing can fail before the headers any more."""

    voice: ResolvedVoice
    plan: SpeechPlan
    stream: SynthStream
    first: Chunk | None
    request_id: str


def check_model(state: AppState, model: str) -> str | None:
    """404 for a model this server does not serve; return the engine it pins, if any (an engine's
    name, or an alias of one)."""
    return state.registry.tts_engine(model)


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
            first_fragment_max_words=settings.first_fragment_max_words,
            max_speech_s=settings.max_speech_s,
            speed=speed,
        )
    stream = await pool.synth(
        SynthRequest(
            voice=resolved.name,
            speed=speed,
            fmt=fmt,
            sample_rate=settings.output_sample_rate,
            fragments=plan.fragments,
            phonemes=phonemes,
            streaming=streaming,
            volume=volume,
            trailing_silence_s=settings.trailing_silence_ms / 1000,
            parallel=settings.tts_parallel_fragments,
        )
    )
    try:
        first: Chunk | None = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        stream.abort()
        raise
    return StartedSpeech(resolved, plan, stream, first, uuid.uuid4().hex)


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
