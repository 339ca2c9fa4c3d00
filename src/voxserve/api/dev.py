"""Kokoro-FastAPI's development endpoints, done right.

* ``POST /dev/phonemize`` — phonemes for the whole text and the model's real token ids.
* ``POST /dev/generate_from_phonemes`` — IPA phonemes → audio (Piper and Kokoro voices), streamed;
  bad phonemes and unknown voices are 422/404 before any header.
* ``POST /dev/captioned_speech`` — audio plus word timestamps, as newline-delimited JSON objects
  ``{"audio": <base64>, "audio_format", "timestamps": [{"word", "start_time", "end_time",
  "source_start", "source_end"}]}``; ``source_start:source_end`` is the range of ``input`` characters
  (Unicode code points) the word speaks, so "one hundred dollars" all point at ``$100``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from voxserve.api.schemas import CaptionedSpeechRequest, PhonemeSpeechRequest, PhonemizeRequest, voice_value
from voxserve.api.speech import audio_headers, speech_response, start_request
from voxserve.api.state import AppState, get_state
from voxserve.audio.encode import MEDIA_TYPES
from voxserve.errors import InvalidValue
from voxserve.runtime.messages import Chunk
from voxserve.text.normalize import NormalizationOptions, has_speakable_text, normalize_text
from voxserve.tts.plan import WordLocator
from voxserve.tts.speech import StartedSpeech, iterate_audio, start_speech

__all__ = ["router"]

router = APIRouter(prefix="/dev", tags=["development"])

_SAFE_ONLY = NormalizationOptions(normalize=False)


@router.post("/phonemize")
async def phonemize(body: PhonemizeRequest, request: Request) -> JSONResponse:
    """Text → ``{"phonemes", "tokens"}`` for the engine of ``voice`` (default: the default voice)."""
    state = get_state(request)
    if not has_speakable_text(body.text):
        raise InvalidValue("text has nothing to phonemize", code="no_speakable_text", param="text")
    resolved = await state.registry.resolve(body.voice or state.settings.default_voice)
    # Only made safe, not rewritten: control characters (a NUL byte fails espeak-ng's phonemizer),
    # bidi and private-use characters and lone surrogates are dropped.
    text = normalize_text(body.text, _SAFE_ONLY)
    result = await state.registry.pool(resolved.engine).call("phonemize", text, resolved.name)
    return JSONResponse({"phonemes": result.phonemes, "tokens": result.tokens, "voice": resolved.id})


@router.post("/generate_from_phonemes", response_class=Response)
async def generate_from_phonemes(body: PhonemeSpeechRequest, request: Request) -> Response:
    """Speak IPA phonemes with a Piper or Kokoro voice (WAV by default), streamed."""
    state = get_state(request)
    if not body.phonemes.strip():
        raise InvalidValue("phonemes must not be empty", code="invalid_phonemes", param="phonemes")
    started = await start_speech(
        state,
        model="voxserve",
        voice=voice_value(body.voice),
        text=None,
        phonemes=body.phonemes,
        fmt=body.response_format,
        speed=body.speed,
    )
    headers = audio_headers(started, body.response_format, state.settings.output_sample_rate)

    async def audio() -> AsyncIterator[bytes]:
        async for chunk in iterate_audio(state, started):
            if chunk.data:
                yield chunk.data

    return speech_response(started, audio(), media_type=MEDIA_TYPES[body.response_format], headers=headers)


def _caption_line(chunk_data: bytes, fmt: str, words: list[dict[str, object]]) -> bytes:
    obj = {"audio": base64.b64encode(chunk_data).decode(), "audio_format": fmt, "timestamps": words}
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


@router.post("/captioned_speech", response_class=Response)
async def captioned_speech(body: CaptionedSpeechRequest, request: Request) -> Response:
    """The speech request, answered with audio and word timestamps (NDJSON when streaming)."""
    state = get_state(request)
    started, headers = await start_request(state, body)
    fmt = body.response_format
    locator = started.plan.locator()
    if not body.stream:
        audio, words = await _collect(state, started, locator if body.return_timestamps else None)
        return JSONResponse(
            {"audio": base64.b64encode(audio).decode(), "audio_format": fmt, "timestamps": words},
            headers=headers,
        )

    async def lines() -> AsyncIterator[bytes]:
        async for chunk in iterate_audio(state, started):
            words = _words(chunk, locator) if body.return_timestamps else []
            if chunk.data or words:
                yield _caption_line(chunk.data, fmt, words)

    return speech_response(started, lines(), media_type="application/x-ndjson", headers=headers)


def _words(chunk: Chunk, locator: WordLocator) -> list[dict[str, object]]:
    """The chunk's word timings, each with the range of input characters it speaks."""
    spans = locator.locate(chunk.fragment, chunk.words)
    return [
        {
            "word": w.word,
            "start_time": w.start_s,
            "end_time": w.end_s,
            "source_start": span[0] if span else None,
            "source_end": span[1] if span else None,
        }
        for w, span in zip(chunk.words, spans, strict=True)
    ]


async def _collect(
    state: AppState, started: StartedSpeech, locator: WordLocator | None
) -> tuple[bytes, list[dict[str, object]]]:
    data: list[bytes] = []
    words: list[dict[str, object]] = []
    async for chunk in iterate_audio(state, started):
        data.append(chunk.data)
        if locator is not None:
            words.extend(_words(chunk, locator))
    return b"".join(data), words
