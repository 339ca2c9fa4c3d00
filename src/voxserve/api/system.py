"""Voices, models, liveness, readiness and metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from voxserve.api.state import get_state
from voxserve.engines.base import VoiceInfo
from voxserve.runtime.registry import unknown_model

__all__ = ["router"]

router = APIRouter()

_CREATED = int(time.time())


@router.get("/v1/audio/voices", tags=["speech"])
async def list_voices(request: Request, legacy: bool = False) -> JSONResponse:
    """Every voice (Kokoro-FastAPI's shape: ``{"voices": [{"id", "name", ...}]}``) and the alias table.

    ``aliases`` maps each alias (OpenAI's 13 voice names by default) to a voice id; ``alias_voices``
    says, for each, which voice it gives: its id, engine and language (null when that voice is not
    loaded). ``?legacy=true`` returns plain id strings, as Kokoro-FastAPI did before v0.4.
    """
    state = get_state(request)
    voices = await state.registry.voices()
    if legacy:
        return JSONResponse({"voices": [v.id for v in voices]})
    by_id = {v.id: v for v in voices}
    return JSONResponse(
        {
            "voices": [
                {
                    "id": v.id,
                    "name": v.name,
                    "engine": v.engine,
                    "language": v.language,
                    "sample_rate": v.sample_rate,
                }
                for v in voices
            ],
            "aliases": state.settings.voice_aliases,
            "alias_voices": [
                _alias_voice(alias, target, by_id) for alias, target in state.settings.voice_aliases.items()
            ],
            "default": state.settings.default_voice,
        }
    )


def _alias_voice(alias: str, target: str, by_id: Mapping[str, VoiceInfo]) -> dict[str, object]:
    """What ``alias`` gives; a blend (``kokoro/jf_alpha(2)+jm_kumo``) speaks its first voice's language."""
    engine, _, name = target.partition("/")
    # Kokoro names have no "-", so there it is the blend operator; Piper names do have one.
    first = re.split(r"[+(-]" if engine == "kokoro" else r"[+(]", name, maxsplit=1)[0].strip()
    info = by_id.get(target) or by_id.get(f"{engine}/{first}")
    return {
        "alias": alias,
        "voice": target,
        "engine": engine,
        "language": info.language if info is not None else None,
    }


def _model(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "voxserve"}


def _model_names(request: Request) -> list[str]:
    state = get_state(request)
    chat = state.registry.chat_model_names()
    return list(dict.fromkeys([*state.model_ids(), *state.stt_model_ids(), *chat]))


@router.get("/v1/models", tags=["models"])
async def list_models(request: Request) -> JSONResponse:
    """Every model name accepted: speech (OpenAI's names, ``voxserve``, the engines), transcription
    (OpenAI's names, the Whisper model ids), chat (the embedded language model) and the
    ``model_aliases``."""
    return JSONResponse({"object": "list", "data": [_model(m) for m in _model_names(request)]})


@router.get("/v1/models/{model_id}", tags=["models"])
async def get_model(model_id: str, request: Request) -> JSONResponse:
    names = _model_names(request)
    if model_id not in names:
        raise unknown_model(model_id, None, names)
    return JSONResponse(_model(model_id))


@router.get("/health", tags=["system"])
async def health() -> JSONResponse:
    """Liveness: the process and its event loop answer."""
    return JSONResponse({"status": "ok"})


@router.get("/ready", tags=["system"])
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 once the engines the server starts with (``preload_engines`` and the default STT
    model) have all their workers started and warm; 503 ``starting`` before. ``engines`` gives queue
    depth and worker state per engine; ``lazy`` lists the engines that start on first use, each with
    its state (``not_started``, ``starting``, ``ready``, ``failed``): they never hold readiness back.
    ``speech_jobs_store`` is ``ok`` or why the speech jobs are unavailable."""
    state = get_state(request)
    engines = state.registry.stats()
    for engine, pool in state.registry.pools.items():
        engines[engine]["ready"] = pool.ready
    is_ready, lazy = state.registry.readiness()
    # The Ray backend's engines say when their cluster is gone: not "starting", it will not come by waiting.
    cluster_gone = any(e.get("cluster") == "unavailable" for e in engines.values())
    body = {
        "status": "ready" if is_ready else ("unavailable" if cluster_gone else "starting"),
        "engines": engines,
        "lazy": lazy,
        "queue_depth": sum(s["queued"] for s in engines.values()),
        "speech_jobs": state.jobs.counts,
        # A job store that cannot be used takes only the job routes down (503 job_store_unavailable).
        "speech_jobs_store": state.jobs.store_error or "ok",
        "loop_lag_p99_ms": round(state.probe.percentile(0.99) * 1000, 3),
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)


@router.get("/metrics", tags=["system"])
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    state = get_state(request)
    data = state.metrics.render(state.registry.stats(), state.jobs.counts, state.jobs.stored_bytes)
    return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")
