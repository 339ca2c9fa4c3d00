"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``: OpenAI's multipart API.

The upload is bounded by ``max_upload_bytes`` before it is read (middleware), decoded with PyAV off the
event loop and stopped at ``max_audio_seconds``, then transcribed by a Whisper worker. The first result
(language detection) arrives before the response starts, so errors are JSON; ``stream=true`` answers
with SSE ``transcript.text.delta`` events per segment and a ``transcript.text.done`` with the full text.

``gpt-transcribe``'s hints are taken as OpenAI's client sends them (``keywords[]``, ``languages[]``;
plain ``keywords``/``languages`` too) and checked against the server's limits
(:mod:`voxserve.stt.hints`): keywords reach Whisper as hotwords, languages restrict its language
detection. ``include[]=logprobs`` adds ``logprobs`` (one entry per word, from the model's word
probabilities) to a ``json`` or ``verbose_json`` answer; a request with ``languages`` also gets
``languages: [{"code"}]``, the language the audio was transcribed in.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from voxserve.api.state import AppState, get_state
from voxserve.api.streaming import AbortingStreamingResponse
from voxserve.engines.base import Segment, TranscribeOptions, TranscriptInfo
from voxserve.errors import InvalidRequest, InvalidValue
from voxserve.protocol.speech import TranscriptionError, TranscriptTextDelta, TranscriptTextDone
from voxserve.runtime.pool import ItemStream
from voxserve.stt.hints import check_keywords, check_languages, token_logprobs

__all__ = ["router"]

router = APIRouter(tags=["transcription"])

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


class _Started:
    def __init__(self, stream: ItemStream, info: TranscriptInfo, task: str) -> None:
        self.stream = stream
        self.info = info
        self.task = task


async def _start(
    state: AppState, *, file: UploadFile, model: str, options: TranscribeOptions, fmt: str
) -> _Started:
    if fmt not in _FORMATS:
        raise InvalidValue(
            f"response_format must be one of {', '.join(_FORMATS)}",
            code="unsupported_format",
            param="response_format",
        )
    if not 0.0 <= options.temperature <= 1.0:
        raise InvalidValue(
            "temperature must be between 0 and 1", code="invalid_temperature", param="temperature"
        )
    pool = state.registry.stt_pool(model)
    pool.check_admission()  # over capacity: refuse before reading and decoding the upload
    data = await file.read()
    # Decoded in the STT worker, not here: a costly upload (issue 12) cannot load the server process.
    stream = await pool.stream_call("transcribe_upload", data, state.settings.max_audio_seconds, options)
    del data
    try:
        info: TranscriptInfo = await anext(stream)
    except BaseException:
        stream.abort()
        raise
    return _Started(stream, info, options.task)


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render(
    fmt: str,
    info: TranscriptInfo,
    segments: list[Segment],
    task: str,
    words: bool,
    *,
    logprobs: bool = False,
    languages: bool = False,
) -> Response:
    """Render a finished transcription in one of OpenAI's response formats (``logprobs`` and
    ``languages`` add those fields to ``json`` and ``verbose_json``)."""
    text = "".join(s.text for s in segments).strip()
    extra: dict[str, Any] = {}
    if logprobs:
        extra["logprobs"] = token_logprobs([w for s in segments for w in s.words])
    if languages:
        extra["languages"] = [{"code": info.language}] if text else []
    if fmt == "json":
        return JSONResponse(
            {"text": text, "usage": {"type": "duration", "seconds": round(info.duration_s, 3)}} | extra
        )
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    if fmt in ("srt", "vtt"):
        sep = "," if fmt == "srt" else "."
        blocks = []
        for i, s in enumerate(segments, 1):
            times = f"{_timestamp(s.start_s, sep)} --> {_timestamp(s.end_s, sep)}"
            blocks.append(
                f"{i}\n{times}\n{s.text.strip()}\n" if fmt == "srt" else f"{times}\n{s.text.strip()}\n"
            )
        body = "\n".join(blocks)
        if fmt == "vtt":
            body = "WEBVTT\n\n" + body
        return PlainTextResponse(body, media_type="text/vtt" if fmt == "vtt" else "application/x-subrip")
    verbose: dict[str, Any] = {
        "task": task,
        "language": info.language,
        "duration": round(info.duration_s, 3),
        "text": text,
        "segments": [
            {
                "id": s.id,
                "seek": 0,
                "start": round(s.start_s, 3),
                "end": round(s.end_s, 3),
                "text": s.text,
                "tokens": [],
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": 0.0,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in segments
        ],
    }
    if words:
        verbose["words"] = [
            {"word": w.word.strip(), "start": round(w.start_s, 3), "end": round(w.end_s, 3)}
            for s in segments
            for w in s.words
        ]
    return JSONResponse(verbose | extra)


async def _respond(
    request: Request,
    *,
    file: UploadFile,
    model: str,
    options: TranscribeOptions,
    fmt: str,
    stream: bool,
    words: bool,
    logprobs: bool = False,
) -> Response:
    state = get_state(request)
    t0 = time.perf_counter()
    started = await _start(state, file=file, model=model, options=options, fmt=fmt)
    if stream:
        return AbortingStreamingResponse(
            _events(started),
            started.stream.abort,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    try:
        segments: list[Segment] = [s async for s in started.stream]
    finally:
        started.stream.abort()
    response = render(
        fmt, started.info, segments, options.task, words, logprobs=logprobs, languages=bool(options.languages)
    )
    response.headers["X-Processing-Time-Ms"] = str(int((time.perf_counter() - t0) * 1000))
    return response


async def _events(started: _Started) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        async for segment in started.stream:
            parts.append(segment.text)
            yield TranscriptTextDelta(segment.text).to_sse()
    except InvalidRequest as exc:  # pragma: no cover - errors after the first byte are engine failures
        yield TranscriptionError(exc.code, exc.message, error_type=None).to_sse()
        return
    except Exception as exc:
        code = getattr(exc, "code", "transcription_failed")
        yield TranscriptionError(code, "transcription failed").to_sse()
        return
    yield TranscriptTextDone("".join(parts).strip()).to_sse()


def _granularities(values: list[str] | None) -> set[str]:
    chosen = set(values or [])
    bad = chosen - {"word", "segment"}
    if bad:
        raise InvalidValue(
            "timestamp_granularities[] must be word and/or segment",
            code="invalid_timestamp_granularities",
            param="timestamp_granularities[]",
        )
    return chosen


_INCLUDE = ("logprobs",)


def _include(values: list[str] | None) -> set[str]:
    chosen = set(values or [])
    if chosen - set(_INCLUDE):
        raise InvalidValue(
            f"include[] may only hold {', '.join(_INCLUDE)}", code="invalid_include", param="include[]"
        )
    return chosen


def _both(bracketed: list[str] | None, plain: list[str] | None) -> list[str]:
    """A list form field as OpenAI's clients send it (``name[]``) or plain (``name``), or both."""
    return [*(bracketed or []), *(plain or [])]


@router.post("/v1/audio/transcriptions")
async def create_transcription(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio: wav, mp3, ogg, opus, flac, m4a, webm, ...")],
    model: Annotated[str, Form()] = "whisper-1",
    language: Annotated[str | None, Form(max_length=16)] = None,
    prompt: Annotated[str | None, Form(max_length=4096)] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float, Form()] = 0.0,
    timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    stream: Annotated[bool, Form()] = False,
    keywords: Annotated[list[str] | None, Form(alias="keywords[]")] = None,
    keywords_plain: Annotated[list[str] | None, Form(alias="keywords")] = None,
    languages: Annotated[list[str] | None, Form(alias="languages[]")] = None,
    languages_plain: Annotated[list[str] | None, Form(alias="languages")] = None,
    include: Annotated[list[str] | None, Form(alias="include[]")] = None,
) -> Response:
    """Transcribe an audio file (OpenAI's fields; ``stream=true`` for SSE deltas)."""
    granularities = _granularities(timestamp_granularities)
    logprobs = "logprobs" in _include(include)
    state = get_state(request)
    settings = state.settings
    model_id = state.registry.stt_model_id(model)  # model_not_found before the hints are judged
    options = TranscribeOptions(
        language=language or None,
        prompt=prompt or None,
        temperature=temperature,
        word_timestamps="word" in granularities or logprobs,
        beam_size=settings.stt_beam_size,
        keywords=check_keywords(settings, _both(keywords, keywords_plain)),
        languages=check_languages(settings, _both(languages, languages_plain), model_id),
    )
    return await _respond(
        request,
        file=file,
        model=model,
        options=options,
        fmt=response_format,
        stream=stream,
        words="word" in granularities,
        logprobs=logprobs,
    )


@router.post("/v1/audio/translations")
async def create_translation(
    request: Request,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = "whisper-1",
    prompt: Annotated[str | None, Form(max_length=4096)] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float, Form()] = 0.0,
) -> Response:
    """Translate speech into English text (Whisper's ``translate`` task)."""
    state = get_state(request)
    options = TranscribeOptions(
        task="translate",
        prompt=prompt or None,
        temperature=temperature,
        beam_size=state.settings.stt_beam_size,
    )
    return await _respond(
        request, file=file, model=model, options=options, fmt=response_format, stream=False, words=False
    )
