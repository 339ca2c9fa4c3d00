"""All engine pools of one server, and voice resolution across them.

Voice ids are namespaced (``piper/en_US-joe-medium``, ``kokoro/jf_alpha``, ``espeak/en-us``). A request
may also name an OpenAI voice (mapped through the alias table), a bare engine-local name, or a Kokoro
blend (``kokoro/jf_alpha(2)+jm_kumo(1)``). The engine checks the final name inside its worker, before
any audio is produced; an unknown voice is a 404, never a silent substitute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxserve.config import Settings
from voxserve.engines.base import VoiceInfo
from voxserve.engines.catalog import split_voice_id
from voxserve.errors import UnknownModel, UnknownVoice
from voxserve.runtime.messages import Done, EngineSpec
from voxserve.runtime.pool import EnginePool

__all__ = ["OPENAI_STT_MODELS", "EngineRegistry", "ResolvedVoice"]

OPENAI_STT_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")

_log = logging.getLogger("voxserve.registry")

_BLEND_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class ResolvedVoice:
    """A voice request mapped to an engine pool and the engine-local voice name."""

    def __init__(self, engine: str, name: str, requested: str) -> None:
        self.engine = engine
        self.name = name
        self.requested = requested

    @property
    def id(self) -> str:
        return f"{self.engine}/{self.name}"


class EngineRegistry:
    """The pools of every enabled engine."""

    def __init__(
        self,
        settings: Settings,
        on_restart: Callable[[str], None] | None = None,
        on_done: Callable[[str, Done], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_restart = on_restart
        self._on_done = on_done
        self.pools: dict[str, EnginePool] = {}
        for engine in settings.engines:
            options: dict[str, Any] = {}
            if engine == "piper":
                options["extra_voices"] = [str(p) for p in settings.piper_voices]
            elif engine == "kokoro":
                options = {
                    "model_path": settings.kokoro_model_path,
                    "voices_path": settings.kokoro_voices_path,
                    "cache_dir": settings.cache_dir,
                }
            spec = EngineSpec(engine=engine, options=options, threads=settings.threads_per_worker)
            self.pools[engine] = self._pool(spec, settings.workers_per_engine, engine)
        self.stt_pools: dict[str, EnginePool] = {}
        for model_id in settings.stt_model_ids():
            source: str | Path = settings.stt_model_paths.get(model_id, model_id)
            spec = EngineSpec(
                engine="whisper",
                options={"model": str(source), "cache_dir": settings.cache_dir},
                threads=settings.stt_threads_per_worker,
            )
            self.stt_pools[model_id] = self._pool(spec, settings.stt_workers, f"whisper-{model_id}")
        self._background: set[asyncio.Task[None]] = set()

    def _pool(self, spec: EngineSpec, size: int, name: str) -> EnginePool:
        s = self.settings
        return EnginePool(
            spec,
            size,
            start_timeout_s=s.worker_start_timeout_s,
            cancel_grace_s=s.worker_cancel_grace_s,
            queue_timeout_s=s.queue_timeout_s,
            max_queued=s.max_queued_requests,
            heartbeat_s=s.worker_heartbeat_s,
            hang_timeout_s=s.worker_hang_timeout_s,
            on_restart=self._on_restart,
            on_done=self._on_done,
            name=name,
        )

    async def start(self) -> None:
        """Start the preloaded engines (awaited) and the others in the background."""
        preload = [e for e in self.settings.preload_engines if e in self.pools]
        # The default STT model starts with the server; other models start on first use.
        await asyncio.gather(
            *(self.pools[e].start() for e in preload), self.stt_pools[self.settings.stt_default_model].start()
        )
        for engine, pool in self.pools.items():
            if engine not in preload:
                task = asyncio.create_task(self._start_quietly(pool), name=f"start-{engine}")
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    @staticmethod
    async def _start_quietly(pool: EnginePool) -> None:
        try:
            await pool.start()
        except Exception as exc:  # reported again to the first request that needs it
            _log.error("engine %s did not start: %s", pool.spec.engine, exc)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        pools = [*self.pools.values(), *self.stt_pools.values()]
        await asyncio.gather(*(p.stop() for p in pools), return_exceptions=True)

    async def voices(self) -> list[VoiceInfo]:
        """Every voice of every engine that could start."""
        out: list[VoiceInfo] = []
        for pool in self.pools.values():
            with contextlib.suppress(Exception):
                await pool.start()
            out.extend(pool.voices)
        return out

    def pool(self, engine: str) -> EnginePool:
        try:
            return self.pools[engine]
        except KeyError:
            raise UnknownVoice(f"the {engine} engine is not enabled on this server", param="voice") from None

    async def resolve(self, voice: str | dict[str, Any], *, engine_hint: str | None = None) -> ResolvedVoice:
        """Map a request's ``voice`` to an engine and engine-local name (404 if unknown)."""
        requested = voice.get("id") if isinstance(voice, dict) else voice
        if not isinstance(requested, str) or not requested.strip() or len(requested) > 256:
            raise UnknownVoice("voice must be a non-empty voice id", param="voice")
        name = self.settings.voice_aliases.get(requested.strip().lower(), requested.strip())
        split = split_voice_id(name)
        if split is not None:
            engine, local = split
            self.pool(engine)
            return ResolvedVoice(engine, local, requested)
        # A bare name: find the engine that has it (first component, for a blend).
        first = _BLEND_NAME.match(name)
        key = first.group(0) if first else name
        candidates = [engine_hint] if engine_hint in self.pools else list(self.pools)
        for engine in candidates:
            assert engine is not None
            pool = self.pools[engine]
            with contextlib.suppress(Exception):
                await pool.start()
            if any(v.name == key for v in pool.voices):
                return ResolvedVoice(engine, name, requested)
        raise UnknownVoice(
            f"unknown voice {requested!r}; GET /v1/audio/voices lists the voices", param="voice"
        )

    def stt_pool(self, model: str) -> EnginePool:
        """The pool of an STT model id; OpenAI's names map to the default model (404 otherwise)."""
        model_id = self.settings.stt_default_model if model in OPENAI_STT_MODELS else model
        try:
            return self.stt_pools[model_id]
        except KeyError:
            raise UnknownModel(
                f"model {model!r} is not served here; GET /v1/models lists the models", param="model"
            ) from None

    def stats(self) -> dict[str, Any]:
        out = {engine: pool.stats() for engine, pool in self.pools.items()}
        out |= {f"whisper/{m}": pool.stats() for m, pool in self.stt_pools.items() if pool.workers}
        return out
