"""All engine pools of one server, and model and voice resolution across them.

Model names: a transcription request may name a served Whisper model id (``tiny.en``), one of the
names OpenAI's clients send (:data:`OPENAI_STT_MODELS`, all served by ``stt_default_model``) or an
alias from ``model_aliases``; a speech request may name one of OpenAI's TTS names
(:data:`OPENAI_TTS_MODELS`) or ``voxserve`` (any engine), an engine family (``kokoro``: pins the
engine) or an alias. :meth:`EngineRegistry.stt_model_id` and :meth:`EngineRegistry.tts_engine` are the
one place those names are resolved; anything else is ``model_not_found`` with the accepted names.

Voice ids are namespaced (``piper/en_US-joe-medium``, ``kokoro/jf_alpha``, ``espeak/en-us``). A request
may also name an OpenAI voice (mapped through the alias table), a bare engine-local name, or a Kokoro
blend (``kokoro/jf_alpha(2)+jm_kumo(1)``). The engine checks the final name inside its worker, before
any audio is produced; an unknown voice is a 404, never a silent substitute.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from voxserve.config import (
    ANY_ENGINE_MODEL,
    OPENAI_STT_MODELS,
    OPENAI_TTS_MODELS,
    REALTIME_ONLY_STT_MODELS,
    Settings,
    check_model_aliases,
)
from voxserve.engines.base import VoiceInfo
from voxserve.engines.catalog import split_voice_id
from voxserve.errors import UnknownModel, UnknownVoice
from voxserve.runtime.messages import Done, EngineSpec
from voxserve.runtime.pool import BusyLedger, EnginePool

__all__ = [
    "ANY_ENGINE_MODEL",
    "OPENAI_STT_MODELS",
    "OPENAI_TTS_MODELS",
    "REALTIME_ONLY_STT_MODELS",
    "EngineRegistry",
    "ResolvedVoice",
    "TimedPool",
    "check_model_aliases",
    "is_realtime_only",
    "resolve_stt_model",
    "resolve_tts_model",
    "stt_model_names",
    "tts_model_names",
    "unknown_model",
]

_MAX_LISTED_CHARS = 400
"""How much of the accepted names a ``model_not_found`` message lists."""

_log = logging.getLogger("voxserve.registry")

_BLEND_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _stt_aliases(settings: Settings, served: Collection[str]) -> dict[str, str]:
    return {a: t for a, t in settings.model_aliases.items() if t in served or t in OPENAI_STT_MODELS}


def _tts_aliases(settings: Settings, engines: Collection[str]) -> dict[str, str]:
    tts = {*OPENAI_TTS_MODELS, ANY_ENGINE_MODEL, *engines}
    return {a: t for a, t in settings.model_aliases.items() if t in tts}


def stt_model_names(settings: Settings, served: Iterable[str]) -> list[str]:
    """Every name the transcription routes accept: OpenAI's names, the served model ids, the aliases
    of transcription models (in that order, without repeats)."""
    served = list(served)
    return list(dict.fromkeys([*OPENAI_STT_MODELS, *served, *_stt_aliases(settings, served)]))


def tts_model_names(settings: Settings, engines: Iterable[str]) -> list[str]:
    """Every name the speech routes accept: OpenAI's names, ``voxserve``, the engine families, the
    aliases of speech models."""
    engines = list(engines)
    names = [*OPENAI_TTS_MODELS, ANY_ENGINE_MODEL, *engines, *_tts_aliases(settings, engines)]
    return list(dict.fromkeys(names))


def unknown_model(name: object, kind: str | None, accepted: list[str]) -> UnknownModel:
    """``model_not_found`` for ``name``, listing the accepted names (up to about 400 characters)."""
    listed: list[str] = []
    size = 0
    for accepted_name in accepted:
        size += len(accepted_name) + 2
        if size > _MAX_LISTED_CHARS:
            listed.append(f"and {len(accepted) - len(listed)} more")
            break
        listed.append(accepted_name)
    shown = repr(name[:100] + "…" if isinstance(name, str) and len(name) > 100 else name)
    what = f"a {kind} model " if kind else ""
    return UnknownModel(
        f"model {shown} is not {what}served here; accepted: {', '.join(listed)} "
        "(GET /v1/models lists the models)",
        param="model",
    )


def resolve_stt_model(settings: Settings, served: Collection[str], name: str) -> str:
    """The served Whisper model id behind a transcription model name (``model_not_found`` if none)."""
    if isinstance(name, str):
        target = settings.model_aliases.get(name, name)
        if target in served:
            return target
        if target in OPENAI_STT_MODELS:
            return settings.stt_default_model
    raise unknown_model(name, "transcription", stt_model_names(settings, served))


def resolve_tts_model(settings: Settings, engines: Collection[str], name: str) -> str | None:
    """The engine a speech model name pins (``None``: the voice picks it); ``model_not_found`` for a
    name that is not a speech model served here."""
    if isinstance(name, str):
        target = settings.model_aliases.get(name, name)
        if target in engines:
            return target
        if target in OPENAI_TTS_MODELS or target == ANY_ENGINE_MODEL:
            return None
    raise unknown_model(name, "speech", tts_model_names(settings, engines))


def is_realtime_only(settings: Settings, name: str) -> bool:
    """Whether a transcription model name is (or is an alias of) one of OpenAI's realtime-only models."""
    return name in REALTIME_ONLY_STT_MODELS or settings.model_aliases.get(name) in REALTIME_ONLY_STT_MODELS


class ResolvedVoice:
    """A voice request mapped to an engine pool and the engine-local voice name."""

    def __init__(self, engine: str, name: str, requested: str) -> None:
        self.engine = engine
        self.name = name
        self.requested = requested

    @property
    def id(self) -> str:
        return f"{self.engine}/{self.name}"


class TimedPool(EnginePool):
    """An :class:`EnginePool` that knows whether it is lazy, what state its start is in, and how long
    the start took; the first request of a lazy pool starts it and waits for the start."""

    def __init__(
        self,
        *args: Any,
        lazy: bool,
        on_started: Callable[[TimedPool, float], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        self.trigger = "first_use"
        """What started the pool: ``startup``, ``background`` or ``first_use`` (a request)."""
        self.start_s: float | None = None
        """How long the start took (all workers spawned, engines loaded, ready handshakes)."""
        self.start_error: str | None = None
        self._on_started = on_started
        self._timed: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """``not_started``, ``starting``, ``ready`` or ``failed`` (a later request tries again)."""
        if self._timed is not None and not self._timed.done():
            return "starting"
        if self.ready:
            return "ready"
        if self.start_error is not None:
            return "failed"
        return "not_started"

    async def start(self) -> None:
        if self._timed is None:
            self._timed = asyncio.create_task(self._timed_start(), name=f"timed-start-{self.name}")
        await asyncio.shield(self._timed)

    async def _timed_start(self) -> None:
        t0 = time.monotonic()
        try:
            await super().start()
        except BaseException as exc:
            self.start_error = str(exc) or type(exc).__name__
            self._timed = None  # let a later request try again
            raise
        self.start_error = None
        self.start_s = time.monotonic() - t0
        if self._on_started is not None:
            self._on_started(self, self.start_s)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "state": self.state, "lazy": self.lazy, "start_s": self.start_s}


def _is_lazy(pool: EnginePool) -> bool:
    return isinstance(pool, TimedPool) and pool.lazy


def _state(pool: EnginePool) -> str:
    if isinstance(pool, TimedPool):
        return pool.state
    return "ready" if pool.ready else "not_started"


class EngineRegistry:
    """The pools of every enabled engine."""

    def __init__(
        self,
        settings: Settings,
        on_restart: Callable[[str], None] | None = None,
        on_done: Callable[[str, Done], None] | None = None,
        on_engine_started: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """``on_engine_started(pool name, trigger, seconds)`` is called when a pool's workers are all
        up; the trigger is ``startup``, ``first_use`` or ``background``."""
        self.settings = settings
        self._on_restart = on_restart
        self._on_done = on_done
        self._on_engine_started = on_engine_started
        self._cluster: Any = None
        self.ledger = BusyLedger()
        """Busy workers over all this server's pools (a lone transcription may use every core)."""
        if settings.backend == "ray":  # the engines run as Ray Serve deployments (runtime/ray/)
            from voxserve.runtime.ray.cluster import RayCluster

            self._cluster = RayCluster(settings)
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
                    "dequantize": settings.kokoro_float_model,
                }
            # Piper is the engine of the first audio (alloy and the default voice): it alone keeps a
            # lone-request session; Ray replicas have their own CPU budget, so no lone copy there.
            lone = settings.tts_lone_thread_count() if engine == "piper" and self._cluster is None else 0
            spec = EngineSpec(
                engine=engine, options=options, threads=settings.threads_per_worker, lone_threads=lone
            )
            lazy = engine not in settings.preload_engines
            self.pools[engine] = self._pool(spec, settings.workers_per_engine, engine, lazy=lazy)
        self.stt_pools: dict[str, EnginePool] = {}
        for model_id in settings.stt_model_ids():
            source: str | Path = settings.stt_model_paths.get(model_id, model_id)
            spec = EngineSpec(
                engine="whisper",
                options={"model": str(source), "cache_dir": settings.cache_dir},
                threads=settings.stt_threads_per_worker,
                # Ray replicas have their own CPU budget per replica: no lone copy there.
                lone_threads=0 if self._cluster is not None else settings.stt_lone_thread_count(),
            )
            lazy = model_id != settings.stt_default_model
            self.stt_pools[model_id] = self._pool(
                spec, settings.stt_workers, f"whisper-{model_id}", lazy=lazy
            )
        self.llm_pool: EnginePool | None = None
        """The embedded language model's pool (one worker, lazy), None when it is off or missing."""
        self.llm_model: str | None = None
        """The id the embedded model is served under (``/v1/models``, ``/v1/chat/completions``)."""
        self.llm_missing: str | None = None
        """Why there is no embedded model although ``llm_embedded`` is on (shown to clients)."""
        if settings.llm_embedded:
            from voxserve.engines.llama import find_model

            path, self.llm_missing = find_model(settings.llm_model_path)
            if path is not None:
                self.llm_model = settings.llm_model_id()
                options = {
                    "model_path": str(path),
                    "model_id": self.llm_model,
                    "context_tokens": settings.llm_context_tokens,
                }
                spec = EngineSpec(
                    engine="llama",
                    options=options,
                    threads=settings.llm_thread_count(),
                )
                self.llm_pool = self._pool(spec, 1, "llm", lazy=True)
        self._background: set[asyncio.Task[None]] = set()

    def _pool(self, spec: EngineSpec, size: int, name: str, *, lazy: bool) -> TimedPool:
        s = self.settings
        make: Callable[..., TimedPool] = TimedPool
        if self._cluster is not None:
            from voxserve.runtime.ray.pool import RayPool

            make = functools.partial(RayPool, self._cluster)
        return make(
            spec,
            size,
            lazy=lazy,
            on_started=self._on_started,
            start_timeout_s=s.worker_start_timeout_s,
            cancel_grace_s=s.worker_cancel_grace_s,
            queue_timeout_s=s.queue_timeout_s,
            max_queued=s.max_queued_requests,
            heartbeat_s=s.worker_heartbeat_s,
            hang_timeout_s=s.worker_hang_timeout_s,
            on_restart=self._on_restart,
            on_done=self._on_done,
            name=name,
            ledger=self.ledger,
            initial=1 if s.lean_start else None,
            lend_margin_s=s.tts_lend_margin_s,
        )

    def _all_pools(self) -> dict[str, EnginePool]:
        """Every pool by its name in ``/ready`` (``piper``, ``whisper/tiny.en``)."""
        pools = {**self.pools, **{f"whisper/{m}": pool for m, pool in self.stt_pools.items()}}
        if self.llm_pool is not None:
            pools["llm"] = self.llm_pool
        return pools

    def needed(self) -> list[EnginePool]:
        """The pools the server starts with and that ``/ready`` waits for: ``preload_engines`` and the
        default STT model. The others are lazy: they start on first use (or in the background, with
        ``engine_start="background"``) and never hold ``/ready`` back."""
        return [p for p in self._all_pools().values() if not _is_lazy(p)]

    async def start(self) -> None:
        """Start the needed engines (awaited; their workers are warm when this returns); with
        ``engine_start="background"`` also the lazy ones, in the background."""
        needed = self.needed()
        for pool in needed:
            if isinstance(pool, TimedPool):
                pool.trigger = "startup"
        await asyncio.gather(*(pool.start() for pool in needed))
        if self.settings.engine_start != "background":
            return  # lazy: each starts when a request first needs it
        lazy = {**self.pools, **({"llm": self.llm_pool} if self.llm_pool is not None else {})}
        for engine, pool in lazy.items():
            if isinstance(pool, TimedPool) and pool.lazy and pool.state == "not_started":
                pool.trigger = "background"
                task = asyncio.create_task(self._start_quietly(pool), name=f"start-{engine}")
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    @staticmethod
    async def _start_quietly(pool: EnginePool) -> None:
        try:
            await pool.start()
        except Exception as exc:  # reported again to the first request that needs it
            _log.error("engine %s did not start: %s", pool.spec.engine, exc)

    def _on_started(self, pool: TimedPool, seconds: float) -> None:
        if pool.trigger == "first_use":
            _log.info(
                "%s: started on first use in %.2f s (the request that needed it waited for the start)",
                pool.name,
                seconds,
            )
        else:
            _log.info("%s: started (%s) in %.2f s", pool.name, pool.trigger, seconds)
        if self._on_engine_started is not None:
            self._on_engine_started(pool.name, pool.trigger, seconds)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether every needed pool has started (its workers answered the ready handshake, warm), and
        the state of every lazy pool by its ``/ready`` name (``not_started``, ``starting``, ``ready``,
        ``failed``)."""
        ready = all(pool.ready for pool in self.needed())
        lazy = {name: _state(pool) for name, pool in self._all_pools().items() if _is_lazy(pool)}
        return ready, lazy

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        pools = list(self._all_pools().values())
        await asyncio.gather(*(p.stop() for p in pools), return_exceptions=True)
        if self._cluster is not None:
            await self._cluster.stop()

    async def voices(self, *, start_lazy: bool = True) -> list[VoiceInfo]:
        """Every voice of every engine that could start. ``start_lazy=False``: only the voices of the
        engines running now (a lazy engine nobody has used yet is not started for a listing)."""
        out: list[VoiceInfo] = []
        for pool in self.pools.values():
            if start_lazy:
                with contextlib.suppress(Exception):
                    await pool.start()
            # None for a pool never started; kept while a started one replaces a crashed worker.
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
        # Engines already running are asked first: a bare name starts a lazy engine only if no
        # running one has the voice.
        running = [e for e, p in self.pools.items() if getattr(p, "ready", True)]  # (test doubles)
        others = [e for e in self.pools if e not in running]
        candidates = [engine_hint] if engine_hint in self.pools else running + others
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

    def stt_model_id(self, name: str) -> str:
        """The served Whisper model id behind a transcription model name: a served id, one of
        OpenAI's names (the default model) or an alias; ``model_not_found`` (404) otherwise."""
        return resolve_stt_model(self.settings, self.stt_pools, name)

    def stt_pool(self, model: str) -> EnginePool:
        """The pool behind a transcription model name (see :meth:`stt_model_id`)."""
        return self.stt_pools[self.stt_model_id(model)]

    def realtime_only(self, name: str) -> bool:
        """Whether a transcription model name is one of OpenAI's realtime-only models (or an alias of
        one): no server turn detection by default, the client commits."""
        return is_realtime_only(self.settings, name)

    def tts_engine(self, name: str) -> str | None:
        """The engine a speech model name pins (``kokoro``, or an alias of it), ``None`` for a name
        that lets the voice pick (OpenAI's names, ``voxserve``); ``model_not_found`` (404) otherwise."""
        return resolve_tts_model(self.settings, self.pools, name)

    def chat_model_names(self) -> list[str]:
        """Every chat model name accepted: the embedded model's id and its aliases (none without it)."""
        if self.llm_model is None:
            return []
        aliases = [a for a, t in self.settings.model_aliases.items() if t == self.llm_model]
        return [self.llm_model, *aliases]

    def stt_model_names(self) -> list[str]:
        """Every transcription model name accepted (``GET /v1/models`` lists them)."""
        return stt_model_names(self.settings, self.stt_pools)

    def tts_model_names(self) -> list[str]:
        """Every speech model name accepted."""
        return tts_model_names(self.settings, self.pools)

    def stats(self) -> dict[str, Any]:
        out = {engine: pool.stats() for engine, pool in self.pools.items()}
        out |= {f"whisper/{m}": pool.stats() for m, pool in self.stt_pools.items() if pool.workers}
        if self.llm_pool is not None and self.llm_pool.workers:
            out["llm"] = self.llm_pool.stats()
        return out
