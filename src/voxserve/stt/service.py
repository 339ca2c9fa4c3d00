"""Open a streaming transcription on the server's Whisper workers: the one setup behind the transcribe,
Realtime and chat WebSockets, the web UI's microphone (and, next, Wyoming)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from voxserve.engines.base import TranscribeOptions
from voxserve.state import AppState
from voxserve.stt.session import SessionConfig
from voxserve.stt.transcriber import Transcriber, session_config

__all__ = ["open_transcriber"]


async def open_transcriber(
    state: AppState,
    model: str,
    emit: Callable[[Any], Awaitable[None]],
    *,
    language: str | None,
    interim: bool = True,
    prompt: str | None = None,
    config: SessionConfig | None = None,
    keywords: Sequence[str] = (),
    languages: Sequence[str] = (),
    word_timestamps: bool = False,
) -> Transcriber:
    """A :class:`Transcriber` for one client on ``model``'s pool (started if needed), with a fresh VAD
    stream; ``config`` overrides the server's session settings (Realtime's ``turn_detection``).

    ``prompt`` goes before the context of the previous finals in every decode; ``keywords`` and
    ``languages`` are the checked hints (:mod:`voxserve.stt.hints`); ``word_timestamps`` gives finals
    their words (and the words' probabilities, for logprobs)."""
    pool = state.registry.stt_pool(model)
    await pool.start()
    settings = state.settings
    config = replace(config or session_config(settings, interim=interim), prompt=prompt or "")
    return Transcriber(
        pool,
        config,
        await state.vad.stream() if config.uses_vad else None,
        emit,
        options=TranscribeOptions(
            language=language,
            prompt=prompt,
            beam_size=settings.stt_beam_size,
            keywords=tuple(keywords),
            languages=tuple(languages),
            word_timestamps=word_timestamps,
        ),
        count_early_finals=lambda outcome, n: state.metrics.early_finals.labels(outcome).inc(n),
    )
