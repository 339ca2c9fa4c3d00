"""espeak-ng in-process, with the library that espeakng-loader ships."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest
from tests.tts_checks import assert_warm_up_leaves_engine_usable

from voxserve.engines.base import TTSEngine
from voxserve.engines.espeak import MAX_WPM, MIN_WPM, EspeakEngine
from voxserve.errors import InvalidValue, UnknownVoice

pytestmark = pytest.mark.engine

SENTENCE = "Hello world, this is a test."


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def _speak(
    engine: EspeakEngine, text: str = SENTENCE, voice: str = "en-us", speed: float = 1.0
) -> np.ndarray:
    pieces = list(engine.synthesize(text, voice, speed))
    assert len(pieces) >= 1
    return np.concatenate([p.audio for p in pieces])


def test_importing_has_no_side_effects() -> None:
    code = "import sys, voxserve.engines.espeak as m; assert m._library is None; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_satisfies_the_protocol(engine: EspeakEngine) -> None:
    assert isinstance(engine, TTSEngine)
    assert engine.name == "espeak"


def test_voices_are_curated_and_installed(engine: EspeakEngine) -> None:
    voices = {v.id: v for v in engine.voices()}
    for name in ("en-us", "en", "de", "fr", "es", "ja"):
        assert f"espeak/{name}" in voices
    us = voices["espeak/en-us"]
    assert (us.name, us.engine, us.language, us.sample_rate) == ("en-us", "espeak", "en-US", 22050)
    assert voices["espeak/en"].language == "en-GB"


def test_sentence_is_audible_and_plausibly_long(engine: EspeakEngine) -> None:
    (piece,) = engine.synthesize(SENTENCE, "en-us", 1.0)
    assert piece.sample_rate == 22050
    assert piece.audio.dtype == np.float32
    assert np.isfinite(piece.audio).all()
    assert float(np.abs(piece.audio).max()) <= 1.0
    assert float(np.sqrt(np.mean(piece.audio**2))) > 0.01
    assert 1.0 <= len(piece.audio) / piece.sample_rate <= 4.0
    assert piece.text == SENTENCE


def test_word_timings_come_from_espeak(engine: EspeakEngine) -> None:
    (piece,) = engine.synthesize(SENTENCE, "en-us", 1.0)
    duration = len(piece.audio) / piece.sample_rate
    assert [w.word for w in piece.words] == ["Hello", "world", "this", "is", "a", "test"]
    for a, b in zip(piece.words, piece.words[1:], strict=False):
        assert a.start_s < a.end_s <= b.start_s
    assert piece.words[-1].end_s <= duration + 1e-3


def test_non_ascii_words_keep_their_text(engine: EspeakEngine) -> None:
    (piece,) = engine.synthesize("Café naïve", "en-us", 1.0)
    assert [w.word for w in piece.words] == ["Café", "naïve"]


def test_faster_speed_is_shorter(engine: EspeakEngine) -> None:
    assert len(_speak(engine, speed=2.0)) < 0.7 * len(_speak(engine, speed=1.0))


def test_speed_is_clamped_to_espeaks_range(engine: EspeakEngine) -> None:
    slowest = 0.99 * MIN_WPM / 175
    fastest = 1.01 * MAX_WPM / 175
    # espeak's output length varies by a few samples from call to call, hence the tolerance.
    assert len(_speak(engine, speed=0.1)) == pytest.approx(len(_speak(engine, speed=slowest)), rel=0.01)
    assert len(_speak(engine, speed=10.0)) == pytest.approx(len(_speak(engine, speed=fastest)), rel=0.01)


def test_other_languages_speak(engine: EspeakEngine) -> None:
    assert len(_speak(engine, "Guten Tag, wie geht es Ihnen?", "de")) > 22050 // 2
    assert len(_speak(engine, "こんにちは", "ja")) > 0


def test_empty_text_still_yields_a_piece(engine: EspeakEngine) -> None:
    pieces = list(engine.synthesize("", "en-us", 1.0))
    assert len(pieces) == 1


def test_nul_characters_do_not_truncate(engine: EspeakEngine) -> None:
    assert len(_speak(engine, "Hello\x00 world, this is a test.")) > 0.8 * len(_speak(engine))


def test_unknown_voice(engine: EspeakEngine) -> None:
    with pytest.raises(UnknownVoice) as info:
        engine.check_voice("klingon")
    assert "en-us" in info.value.message
    with pytest.raises(UnknownVoice):
        next(engine.synthesize(SENTENCE, "en-gb-x-nope", 1.0))


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_speed(engine: EspeakEngine, speed: float) -> None:
    with pytest.raises(InvalidValue) as info:
        next(engine.synthesize(SENTENCE, "en-us", speed))
    assert info.value.code == "invalid_speed"


def test_phonemize_returns_ipa_and_code_points(engine: EspeakEngine) -> None:
    result = engine.phonemize(SENTENCE, "en-us")
    assert result.phonemes.startswith("həlˈoʊ wˈɜːld")
    assert "ˈ" in result.phonemes
    assert result.tokens == [ord(c) for c in result.phonemes]


def test_phonemize_drops_language_switch_flags(engine: EspeakEngine) -> None:
    result = engine.phonemize("Hello the water", "fr")
    assert result.phonemes
    assert "(" not in result.phonemes


def test_ipa_phonemes_are_not_supported(engine: EspeakEngine) -> None:
    with pytest.raises(InvalidValue) as info:
        next(iter(engine.synthesize_phonemes("həlˈoʊ", "en-us", 1.0)))
    assert info.value.code == "phonemes_not_supported"
    assert info.value.status == 422


def test_concurrent_calls_are_serialised(engine: EspeakEngine) -> None:
    expected = len(_speak(engine))
    lengths: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                lengths.append(len(_speak(engine)))
                engine.phonemize("The quick brown fox.", "de")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(lengths) == 20
    assert lengths == [pytest.approx(expected, rel=0.01)] * 20


def test_warm_up_runs_and_leaves_the_engine_usable(engine: Any) -> None:
    assert_warm_up_leaves_engine_usable(engine)
