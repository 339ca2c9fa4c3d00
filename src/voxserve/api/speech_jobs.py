"""``/v1/audio/speech/jobs``: long texts spoken in the background into a file (see :mod:`voxserve.tts.jobs`).

``POST`` validates everything the speech route does — model, voice (checked by its engine), format,
speed, the text's length (``max_job_chars``) and that it has something to speak — before it answers
202 with the job; ``GET`` reports progress; ``GET …/audio`` downloads the finished file; ``DELETE``
cancels and deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from voxserve.api.schemas import NormalizationOptionsModel, SpeechJobRequest, voice_value
from voxserve.api.security import request_principal
from voxserve.api.speech import markup_warning
from voxserve.api.state import get_state
from voxserve.audio.encode import MEDIA_TYPES
from voxserve.errors import InvalidRequest, TextTooLong, UnknownJob, UnknownVoice
from voxserve.state import AppState
from voxserve.text.markup import PhonemeOverride
from voxserve.tts.jobs import (
    EngineBuilder,
    JobEngine,
    JobSpec,
    SectionSynth,
    SpeechJob,
    SpeechJobs,
    pool_synthesizer,
)
from voxserve.tts.longform import plan_long_text, plan_section
from voxserve.tts.speech import check_model

__all__ = ["JOBS_PATH", "job_engine_builder", "router"]

JOBS_PATH = "/v1/audio/speech/jobs"

router = APIRouter()

_READ_BYTES = 256 * 1024
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


def _jobs(request: Request) -> SpeechJobs:
    return get_state(request).jobs


def _job_json(jobs: SpeechJobs, job: SpeechJob, **extra: object) -> dict[str, object]:
    return {**job.to_dict(jobs.ttl_s), **extra}


@router.post(JOBS_PATH, tags=["speech"], status_code=202)
async def create_speech_job(body: SpeechJobRequest, request: Request) -> JSONResponse:
    """Queue ``input`` (up to ``max_job_chars`` characters) to be spoken into a file; 202 with the job.

    With an ``Idempotency-Key`` header, the same key and body within 24 h answer with the job the
    first request made (``Idempotent-Replayed: true``) instead of starting a second one; the same key
    with another body is a 409 ``idempotency_conflict``. Keys are scoped per API key.
    """
    state = get_state(request)
    settings = state.settings
    jobs = state.jobs
    owner = request_principal(request.state)
    key = _idempotency_key(request)
    body_hash = _body_hash(body) if key is not None else ""
    if key is not None and (existing := await jobs.find_idempotent(owner, key, body_hash)) is not None:
        return _created(jobs, existing, replayed=True)
    if len(body.input) > settings.max_job_chars:
        raise TextTooLong(
            f"input is {len(body.input)} characters; the limit for a job is {settings.max_job_chars}",
            param="input",
        )
    jobs.check_capacity(owner)  # full: refuse before any work
    engine_hint = check_model(state, body.model)
    resolved = await state.registry.resolve(voice_value(body.voice), engine_hint=engine_hint)
    pool = state.registry.pool(resolved.engine)
    # The speech route learns of an unknown voice from its first chunk, before its 200; a job must
    # know before its 202, so ask the engine now.
    await pool.call("check_voice", resolved.name)
    options = body.normalization_options.to_options() if body.normalization_options else None
    plan = await asyncio.to_thread(
        plan_long_text,
        body.input,
        max_chars=settings.max_job_chars,
        section_chars=settings.job_batch_chars,
        max_fragment_chars=settings.max_fragment_chars,
        options=options,
        markup=body.markup,
    )
    stored = {
        **body.model_dump(mode="json", exclude={"input"}),
        "engine": resolved.engine,
        "voice_name": resolved.name,
        "sample_rate": settings.output_sample_rate,
        "max_fragment_chars": settings.max_fragment_chars,
    }
    engine = _job_engine(state, stored)
    if plan.overrides:
        await _check_overrides(engine.synthesize, plan.overrides)
    spec = JobSpec(
        sections=plan.sections,
        response_format=body.response_format,
        engine=engine,
        model=body.model,
        voice=resolved.id,
        trailing_silence_s=settings.trailing_silence_ms / 1000,
        warnings=plan.warnings,
        request=stored,
        sample_rate=settings.output_sample_rate,
    )
    job = await jobs.submit(spec, owner, idempotency_key=key, body_hash=body_hash)
    return _created(jobs, job, replayed=False, warnings=plan.warnings)


def _created(
    jobs: SpeechJobs, job: SpeechJob, *, replayed: bool, warnings: tuple[str, ...] = ()
) -> JSONResponse:
    headers = {"Location": f"{JOBS_PATH}/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if warnings:
        headers["X-Voxserve-Warning"] = markup_warning(warnings)
    return JSONResponse(_job_json(jobs, job), status_code=202, headers=headers)


def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: 1 to 255 visible ASCII characters (400 otherwise)."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not _KEY_RE.fullmatch(value):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good key)",
            code="invalid_idempotency_key",
            param="Idempotency-Key",
        )
    return value


def _body_hash(body: SpeechJobRequest) -> str:
    """The request as the server understood it (not its bytes: spacing and key order do not count)."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _job_engine(state: AppState, stored: Mapping[str, Any]) -> JobEngine:
    """How a job's sections are planned and spoken, from its stored request."""
    options_json = stored.get("normalization_options")
    options = NormalizationOptionsModel(**options_json).to_options() if options_json else None
    max_fragment_chars = int(stored["max_fragment_chars"])
    return JobEngine(
        plan=partial(
            plan_section, max_fragment_chars=max_fragment_chars, options=options, markup=stored["markup"]
        ),
        synthesize=pool_synthesizer(
            state.registry.pool(str(stored["engine"])),
            str(stored["voice_name"]),
            speed=float(stored["speed"]),
            volume=float(stored["volume_multiplier"]),
            sample_rate=int(stored["sample_rate"]),
        ),
    )


def job_engine_builder(state: AppState) -> EngineBuilder:
    """What :class:`~voxserve.tts.jobs.SpeechJobs` uses to resume a stored job on this server."""

    async def build(stored: Mapping[str, Any]) -> JobEngine:
        engine = str(stored.get("engine", ""))
        if engine not in state.registry.pools:
            raise UnknownVoice(
                f"the job's engine {engine!r} is not served any more; it cannot be resumed", param="voice"
            )
        return _job_engine(state, stored)

    return build


async def _check_overrides(synthesize: SectionSynth, overrides: tuple[PhonemeOverride, ...]) -> None:
    """Have the worker accept every IPA override of the text now (it checks them all before it makes
    any audio), so one the voice cannot speak is a 422 before the 202, not a job failing hours in."""
    async with contextlib.aclosing(synthesize(overrides)) as pieces:
        async for _ in pieces:
            break  # the first audio means every override passed; closing aborts the rest


@router.get(JOBS_PATH, tags=["speech"])
async def list_speech_jobs(request: Request) -> JSONResponse:
    """Every job that has not expired, oldest first."""
    jobs = _jobs(request)
    return JSONResponse(
        {
            "object": "list",
            "data": [_job_json(jobs, job) for job in jobs.list_jobs(request_principal(request.state))],
        }
    )


@router.get(JOBS_PATH + "/{job_id}", tags=["speech"])
async def get_speech_job(job_id: str, request: Request) -> JSONResponse:
    """A job's status and progress (``chars_done`` of ``input_chars``, ``audio_seconds``)."""
    jobs = _jobs(request)
    return JSONResponse(_job_json(jobs, jobs.get(job_id, request_principal(request.state))))


@router.get(JOBS_PATH + "/{job_id}/audio", tags=["speech"], response_class=Response)
async def get_speech_job_audio(job_id: str, request: Request) -> Response:
    """The finished file (409 ``job_not_finished`` until the job has succeeded)."""
    state = get_state(request)
    job = state.jobs.get(job_id, request_principal(request.state))
    path = job.check_audio()
    try:
        # Opened before the response starts: a job that expires during the download keeps its data.
        handle = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise UnknownJob.for_id(job_id) from None
    try:
        size = await asyncio.to_thread(_size, handle)
    except BaseException:
        handle.close()
        raise
    fmt = job.spec.response_format
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{job.id}.{fmt}"',
        "Cache-Control": "no-store",
        "X-Voxserve-Voice": job.spec.voice,
    }
    if fmt == "pcm":  # raw PCM is not self-describing
        headers |= {
            "X-Audio-Encoding": "pcm_s16le",
            "X-Audio-Sample-Rate": str(state.settings.output_sample_rate),
            "X-Audio-Channels": "1",
            "X-Audio-Bits-Per-Sample": "16",
        }
    return StreamingResponse(_read(handle), media_type=MEDIA_TYPES[fmt], headers=headers)


@router.delete(JOBS_PATH + "/{job_id}", tags=["speech"])
async def delete_speech_job(job_id: str, request: Request) -> JSONResponse:
    """Cancel a queued or running job, delete its file and forget it; the job as it ended, with
    ``"deleted": true``."""
    jobs = _jobs(request)
    job = await jobs.delete(job_id, request_principal(request.state))
    return JSONResponse(_job_json(jobs, job, deleted=True))


def _size(handle: IO[bytes]) -> int:
    return os.fstat(handle.fileno()).st_size


async def _read(handle: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while data := await asyncio.to_thread(handle.read, _READ_BYTES):
            yield data
    finally:
        handle.close()  # a local file's close does not block
