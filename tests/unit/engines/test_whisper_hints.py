"""What :class:`WhisperEngine` hands faster-whisper for ``keywords`` and ``languages`` (a fake model:
no weights are loaded), and the hint checks and logprobs of :mod:`voxserve.stt.hints`."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from voxserve.config import Settings
from voxserve.engines.base import TranscribeOptions, Word
from voxserve.engines.whisper import WhisperEngine
from voxserve.errors import InvalidRequest, InvalidValue
from voxserve.stt.hints import WHISPER_LANGUAGES, check_keywords, check_languages, word_logprobs


class FakeModel:
    def __init__(self, probabilities: dict[str, float]) -> None:
        self.calls: list[dict[str, Any]] = []
        self.detected = 0
        self.probabilities = probabilities

    # The engine counts prompt and hotword tokens to size max_new_tokens: one token per word will do.
    hf_tokenizer = SimpleNamespace(
        encode=lambda text, add_special_tokens=False: SimpleNamespace(ids=text.split())
    )

    def transcribe(self, samples: np.ndarray, **kw: Any) -> tuple[Any, Any]:
        self.calls.append(kw)
        info = SimpleNamespace(language=kw["language"] or "en", language_probability=1.0, duration=1.0)
        return iter(()), info

    def detect_language(self, samples: np.ndarray) -> tuple[str, float, list[tuple[str, float]]]:
        self.detected += 1
        ranked = sorted(self.probabilities.items(), key=lambda kv: -kv[1])
        return ranked[0][0], ranked[0][1], ranked


def engine(
    multilingual: bool, probabilities: dict[str, float] | None = None
) -> tuple[WhisperEngine, FakeModel]:
    e = object.__new__(WhisperEngine)
    model = FakeModel(probabilities or {"de": 0.6, "fr": 0.3, "en": 0.1})
    e._model = model
    e.model = "base" if multilingual else "tiny.en"
    e.multilingual = multilingual
    e.languages = tuple(sorted(WHISPER_LANGUAGES)) if multilingual else ("en",)
    return e, model


AUDIO = np.zeros(16000, np.float32)


def test_keywords_are_whisper_hotwords() -> None:
    e, model = engine(False)
    e.transcribe(AUDIO, TranscribeOptions(keywords=("Linnell", " Birket ", ""), prompt="Names."))
    assert model.calls[-1]["hotwords"] == "Linnell, Birket"
    assert model.calls[-1]["initial_prompt"] == e._tokens("Names.")  # the prompt goes as token ids
    e.transcribe(AUDIO, TranscribeOptions())
    assert model.calls[-1]["hotwords"] is None


def test_languages_restrict_detection_to_the_set() -> None:
    e, model = engine(True)
    info, _ = e.transcribe(AUDIO, TranscribeOptions(languages=("en", "fr")))
    assert model.calls[-1]["language"] == "fr" and info.language == "fr"  # de is likelier, not allowed
    e.transcribe(AUDIO, TranscribeOptions(languages=("EN",)))
    assert model.calls[-1]["language"] == "en" and model.detected == 1  # one language: no detection
    e.transcribe(AUDIO, TranscribeOptions(language="de", languages=("en", "fr")))
    assert model.calls[-1]["language"] == "de"  # an explicit language wins


def test_an_english_only_model_picks_en_or_refuses_the_set() -> None:
    e, model = engine(False)
    e.transcribe(AUDIO, TranscribeOptions(languages=("fr", "en")))
    assert model.calls[-1]["language"] == "en" and model.detected == 0
    with pytest.raises(InvalidValue) as info:
        e.transcribe(AUDIO, TranscribeOptions(languages=("fr", "de")))
    assert (info.value.code, info.value.param) == ("unsupported_language", "languages")
    assert "English-only" in info.value.message


def test_the_language_list_is_faster_whispers() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert frozenset(_LANGUAGE_CODES) == WHISPER_LANGUAGES


def test_hint_limits() -> None:
    s = Settings(max_keywords=2, max_keyword_chars=5, max_keywords_total_chars=9, max_languages=2)
    assert check_keywords(s, [" ab ", "", "cd"]) == ("ab", "cd")
    for keywords, code in (
        (["a", "b", "c"], "too_many_keywords"),
        (["abcdef"], "keyword_too_long"),
        (["abcde", "abcd"], "keywords_too_long"),
        ([1], "invalid_value"),
    ):
        with pytest.raises(InvalidRequest) as info:
            check_keywords(s, keywords)
        assert (info.value.code, info.value.status) == (code, 400)
    assert check_languages(s, ["EN", "en", "fr"], "base") == ("en", "fr")
    for languages, code in (
        (["en", "fr", "de"], "too_many_languages"),
        (["english"], "unsupported_language"),
        (["fr"], "unsupported_language"),
    ):
        with pytest.raises(InvalidRequest) as info:
            check_languages(s, languages, "tiny.en")
        assert info.value.code == code
    assert check_languages(s, ["fr"], "base") == ("fr",)


def test_word_logprobs_are_the_log_of_the_models_word_probabilities() -> None:
    words = [Word(" héllo", 0, 1, 0.5), Word(" x", 1, 2, 0.0), Word(" y", 2, 3, 1.0)]
    entries = word_logprobs(words)
    assert entries[0] == {
        "token": " héllo",
        "logprob": round(math.log(0.5), 6),
        "bytes": list(" héllo".encode()),
    }
    assert entries[1]["logprob"] == round(math.log(1e-30), 6) and math.isfinite(entries[1]["logprob"])
    assert entries[2]["logprob"] == 0.0
