"""Open a text-streamed speech session on a worker pool: the service behind ``WS /v1/stream/speak``,
the voice chat, the web UI's chat tab and the in-process :class:`voxserve.SpeechStream`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxserve.config import Settings
from voxserve.errors import InvalidValue
from voxserve.runtime.messages import SynthRequest
from voxserve.runtime.pool import SynthStream
from voxserve.runtime.registry import EngineRegistry, ResolvedVoice
from voxserve.state import AppState
from voxserve.text.markup import Fragment
from voxserve.tts.speech import check_model
from voxserve.tts.stream import STREAM_FORMATS, SpeakSession

__all__ = [
    "SpeakConfig",
    "open_speak_session",
    "resolve_speak_voice",
    "speak_config",
    "start_speak_session",
]


@dataclass(frozen=True)
class SpeakConfig:
    """A validated speak session configuration."""

    voice: ResolvedVoice
    fmt: str
    speed: float


async def speak_config(
    state: AppState, *, voice: str | None, response_format: str, speed: float, model: str | None = None
) -> SpeakConfig:
    """Resolve a speak session's voice (the server's default when ``None``) on this server; the wire
    values are already checked (:mod:`voxserve.protocol.speak`). Raises ``unknown_voice``,
    ``model_not_found`` or the engine's word on a voice it cannot speak."""
    if response_format not in STREAM_FORMATS:
        raise InvalidValue(
            f"response_format must be one of {', '.join(STREAM_FORMATS)}", code="unsupported_format"
        )
    engine_hint = check_model(state, model) if model is not None else None
    resolved = await resolve_speak_voice(
        state.registry, voice or state.settings.default_voice, engine_hint=engine_hint
    )
    return SpeakConfig(resolved, response_format, float(speed))


async def resolve_speak_voice(
    registry: EngineRegistry, voice: str, *, engine_hint: str | None = None
) -> ResolvedVoice:
    """Resolve a voice and have its engine check it (starting the engine if needed), so a bad voice
    fails the configuration, not the first sentence."""
    resolved = await registry.resolve(voice, engine_hint=engine_hint)
    pool = registry.pool(resolved.engine)
    await pool.start()
    # An installed voice is known from the workers' handshake; only other names (Kokoro blends) need
    # the engine's word, which waits for a free worker: a busy server must not fail a plain config.
    if resolved.name not in {v.name for v in pool.voices}:
        await pool.call("check_voice", resolved.name)
    return resolved


def start_speak_session(
    state: AppState, config: SpeakConfig, emit: Any, *, first_fragment_max_chars: int | None = None
) -> SpeakSession:
    """A running :class:`SpeakSession` on this server's worker pool."""
    return open_speak_session(
        state.registry, state.settings, config, emit, first_fragment_max_chars=first_fragment_max_chars
    )


def open_speak_session(
    registry: EngineRegistry,
    settings: Settings,
    config: SpeakConfig,
    emit: Any,
    *,
    first_fragment_max_chars: int | None = None,
) -> SpeakSession:
    """A running :class:`SpeakSession` on ``registry``'s worker pool (the server's, or the one of an
    in-process :class:`voxserve.SpeechStream`)."""
    pool = registry.pool(config.voice.engine)

    async def synthesize(fragments: tuple[Fragment, ...]) -> SynthStream:
        return await pool.synth(
            SynthRequest(
                voice=config.voice.name,
                speed=config.speed,
                fmt="pcm",
                sample_rate=settings.output_sample_rate,
                fragments=fragments,
            )
        )

    session = SpeakSession(
        synthesize,
        emit,
        fmt=config.fmt,
        sample_rate=settings.output_sample_rate,
        first_fragment_max_chars=first_fragment_max_chars or settings.first_fragment_max_chars,
        max_fragment_chars=settings.max_fragment_chars,
        max_text_chars=settings.max_input_chars,
        max_pending_chars=settings.max_pending_chars,
    )
    session.start()
    return session
