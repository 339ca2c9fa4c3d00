"""Speak text in-process (no server): the engine still runs in a worker process.

Used by ``voxserve say``; a building block for the Python library.
"""

from __future__ import annotations

import asyncio

from voxserve.config import Settings
from voxserve.engines.base import VoiceInfo
from voxserve.errors import InvalidValue
from voxserve.runtime.messages import SynthRequest
from voxserve.runtime.pool import collect
from voxserve.runtime.registry import EngineRegistry
from voxserve.tts.plan import plan_speech

__all__ = ["list_voices", "speak"]


async def speak(
    text: str,
    *,
    voice: str | None = None,
    fmt: str = "mp3",
    speed: float = 1.0,
    settings: Settings | None = None,
) -> bytes:
    """Synthesize ``text`` and return the encoded audio file."""
    if not 0.25 <= speed <= 4.0:
        raise InvalidValue("speed must be between 0.25 and 4.0", code="invalid_speed", param="speed")
    settings = settings or Settings(workers_per_engine=1, preload_engines=[])
    registry = EngineRegistry(settings)
    try:
        resolved = await registry.resolve(voice or settings.default_voice)
        plan = await asyncio.to_thread(
            plan_speech,
            text,
            max_input_chars=settings.max_input_chars,
            first_fragment_max_chars=settings.first_fragment_max_chars,
            max_fragment_chars=settings.max_fragment_chars,
            max_speech_s=settings.max_speech_s,
            speed=speed,
        )
        stream = await registry.pool(resolved.engine).synth(
            SynthRequest(
                voice=resolved.name,
                speed=speed,
                fmt=fmt,
                sample_rate=settings.output_sample_rate,
                fragments=plan.fragments,
                streaming=False,
            )
        )
        try:
            return await collect(stream)
        finally:
            stream.abort()
    finally:
        await registry.stop()


async def list_voices(settings: Settings | None = None) -> list[VoiceInfo]:
    """Every voice of every enabled engine (starts each engine once)."""
    settings = settings or Settings(workers_per_engine=1, preload_engines=[])
    registry = EngineRegistry(settings)
    try:
        return await registry.voices()
    finally:
        await registry.stop()
