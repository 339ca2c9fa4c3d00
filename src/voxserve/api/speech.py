"""``POST /v1/audio/speech``: OpenAI's speech endpoint, streamed sentence by sentence.

Everything that can fail is checked before the status line: the model, the voice (by the engine, in
its worker), the text and its limits — and the first audio chunk is produced before the response
starts. A failure after that ends an SSE stream with a ``speech.audio.error`` event, and an audio
stream by aborting the chunked body (so the client sees an error, never silently short audio).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from voxserve.api.schemas import SpeechRequest, voice_value
from voxserve.api.state import AppState, get_state
from voxserve.api.streaming import AbortingStreamingResponse
from voxserve.audio.encode import MEDIA_TYPES
from voxserve.errors import VoxserveError
from voxserve.protocol.speech import SpeechAudioDelta, SpeechAudioDone, SpeechAudioError
from voxserve.tts.speech import StartedSpeech, iterate_audio, start_speech

__all__ = ["audio_headers", "router", "speech_response", "start_request"]

_log = logging.getLogger("voxserve.speech")

router = APIRouter()


def speech_response(
    started: StartedSpeech, content: AsyncIterator[bytes], **kwargs: Any
) -> AbortingStreamingResponse:
    """A streaming response that always releases its synthesis, even if the body never starts."""
    return AbortingStreamingResponse(content, started.stream.abort, **kwargs)


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


async def start_request(state: AppState, body: SpeechRequest) -> tuple[StartedSpeech, dict[str, str]]:
    """Start the synthesis a speech request body asks for (first chunk ready, time to it recorded)
    and its response headers."""
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
    return started, audio_headers(started, body.response_format, state.settings.output_sample_rate)


@router.post("/v1/audio/speech", tags=["speech"], response_class=Response)
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    """Speak ``input`` with ``voice``; audio streams out as it is synthesized."""
    state = get_state(request)
    started, headers = await start_request(state, body)
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


async def _sse(state: AppState, started: StartedSpeech, body: SpeechRequest) -> AsyncIterator[bytes]:
    # data: lines only (no `event:` field), as the openai SDK expects; never a [DONE] sentinel.
    chunks = 0
    try:
        async for chunk in iterate_audio(state, started):
            if chunk.data:
                chunks += 1
                yield SpeechAudioDelta(chunk.data).to_sse()
    except VoxserveError as exc:
        yield SpeechAudioError.from_error(exc).to_sse()
        return
    # "Tokens" here are input characters and output audio chunks: there is no tokenizer in a TTS engine.
    yield SpeechAudioDone.for_speech(len(body.input), chunks).to_sse()
