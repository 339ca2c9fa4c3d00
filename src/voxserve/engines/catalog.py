"""Which engines exist and how a worker builds one from an :class:`EngineSpec`.

Engine modules are imported only here, inside the worker process, so the server process never loads
a model or onnxruntime session.
"""

from __future__ import annotations

from pathlib import Path

from voxserve.config import EMBEDDED_LLM_MODEL
from voxserve.engines.base import EngineSpec, LLMEngine, STTEngine, TTSEngine

__all__ = ["ENGINE_NAMES", "build_engine", "split_voice_id"]

ENGINE_NAMES = ("piper", "espeak", "kokoro")


def build_engine(spec: EngineSpec) -> TTSEngine | STTEngine | LLMEngine:
    """Construct the engine ``spec`` names (in the calling process)."""
    opts = spec.options
    if spec.factory is not None:
        import importlib

        module, _, attr = spec.factory.partition(":")
        engine: TTSEngine | STTEngine | LLMEngine = getattr(importlib.import_module(module), attr)(**opts)
        return engine
    if spec.engine == "piper":
        from voxserve.engines.piper import PiperEngine, default_voice_paths

        paths = default_voice_paths() + [Path(p) for p in opts.get("extra_voices", [])]
        return PiperEngine(paths, threads=spec.threads, lone_threads=spec.lone_threads)
    if spec.engine == "espeak":
        from voxserve.engines.espeak import EspeakEngine

        return EspeakEngine()
    if spec.engine == "kokoro":
        from voxserve.engines.kokoro import KokoroEngine

        return KokoroEngine(
            opts.get("model_path"),
            opts.get("voices_path"),
            threads=spec.threads,
            cache_dir=opts.get("cache_dir"),
            dequantize=bool(opts.get("dequantize", False)),
        )
    if spec.engine == "whisper":
        from voxserve.engines.whisper import WhisperEngine

        return WhisperEngine(
            opts.get("model", "tiny.en"),
            threads=spec.threads,
            cache_dir=opts.get("cache_dir"),
            lone_threads=spec.lone_threads,
        )
    if spec.engine == "llama":
        from voxserve.engines.llama import LlamaEngine

        return LlamaEngine(
            opts.get("model_path"),
            model_id=str(opts.get("model_id") or EMBEDDED_LLM_MODEL),
            threads=spec.threads,
            context_tokens=int(opts.get("context_tokens", 2048)),
        )
    raise ValueError(f"unknown engine {spec.engine!r}")


def split_voice_id(voice_id: str) -> tuple[str, str] | None:
    """``"kokoro/jf_alpha(2)+jm_kumo"`` → ``("kokoro", "jf_alpha(2)+jm_kumo")``; None if not namespaced."""
    engine, sep, name = voice_id.partition("/")
    if not sep or engine not in ENGINE_NAMES or not name:
        return None
    return engine, name
