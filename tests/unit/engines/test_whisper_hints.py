"""What :class:`WhisperEngine` hands faster-whisper for ``keywords`` and ``languages`` (a fake model:
no weights are loaded), and the hint checks and logprobs of :mod:`voxserve.stt.hints`."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from voxserve.config import Settings
from voxserve.engines import whisper
from voxserve.engines.base import Token, TranscribeOptions, Word
from voxserve.engines.whisper import WhisperEngine
from voxserve.errors import InvalidRequest, InvalidValue
from voxserve.stt.hints import WHISPER_LANGUAGES, check_keywords, check_languages, token_logprobs


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
    model.model = whisper._AlignRecorder(model)
    e._model = model
    e._lone = None
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


def test_logprobs_are_per_token_or_per_word_without_tokens() -> None:
    tokens = (Token(" h\ufffd", b" h\xc3", math.log(0.5)), Token("\ufffdllo", b"\xa9llo", -200.0))
    words = [Word(" héllo", 0, 1, 0.5, tokens), Word(" x", 1, 2, 0.0), Word(" y", 2, 3, 1.0)]
    entries = token_logprobs(words)
    assert entries[0] == {"token": " h\ufffd", "logprob": round(math.log(0.5), 6), "bytes": list(b" h\xc3")}
    assert bytes(entries[0]["bytes"] + entries[1]["bytes"]).decode() == " héllo"
    assert entries[1]["logprob"] == round(math.log(1e-30), 6)  # floored like a zero probability
    assert entries[2] == {"token": " x", "logprob": round(math.log(1e-30), 6), "bytes": list(b" x")}
    assert entries[3]["logprob"] == 0.0


def test_byte_level_tokens_spell_their_bytes() -> None:
    # GPT-2's alphabet: printable bytes as themselves, the space as "Ġ", 0xC3 as "Ã", 0xA9 as "©".
    assert whisper._token_bytes("Ġhello") == b" hello"
    assert whisper._token_bytes("ĠhÃ") == b" h\xc3"
    assert whisper._token_bytes("©llo") == b"\xa9llo"
    assert whisper._token_bytes("Ċ") == b"\n"
    assert len(set(whisper._byte_decoder().values())) == 256


def aligned(pairs: list[tuple[int, float]]) -> whisper._AlignRecorder:
    recorder = whisper._AlignRecorder(
        SimpleNamespace(align=lambda *a, **k: [SimpleNamespace(text_token_probs=[p for _, p in pairs])])
    )
    recorder.align(None, None, [[t for t, _ in pairs]], 1)
    return recorder


SPELLING = {1: b" h\xc3", 2: b"\xa9llo", 3: b",", 4: b" you", 5: b" there"}


def fw_word(text: str) -> SimpleNamespace:
    return SimpleNamespace(word=text, start=0.0, end=1.0, probability=0.5)


def test_each_word_gets_the_tokens_that_spell_it() -> None:
    recorder = aligned([(4, 0.9), (1, 0.5), (2, 0.25), (3, 0.8), (5, 1.0)])
    reader = whisper._TokenReader(recorder, SPELLING.__getitem__)
    # faster-whisper dropped the segment " you" (empty to it); the next one starts after it
    seg = SimpleNamespace(tokens=[50363, 1, 2, 3, 50400], words=[fw_word(" héllo,")])
    (word,) = reader.words(seg)
    assert [t.utf8 for t in word.tokens] == [b" h\xc3", b"\xa9llo", b","]
    assert [t.logprob for t in word.tokens] == pytest.approx([math.log(0.5), math.log(0.25), math.log(0.8)])
    assert word.tokens[0].text == " h\ufffd" and word.probability == 0.5
    (there,) = reader.words(SimpleNamespace(tokens=[5], words=[fw_word(" there")]))
    assert there.tokens == (Token(" there", b" there", 0.0),)
    assert not recorder.pending


def test_words_whose_tokens_were_not_aligned_have_none() -> None:
    recorder = aligned([(4, 0.9)])
    reader = whisper._TokenReader(recorder, SPELLING.__getitem__)
    (word,) = reader.words(SimpleNamespace(tokens=[5], words=[fw_word(" there")]))
    assert word.tokens == () and word.word == " there"
    assert len(recorder.pending) == 1  # kept: it may belong to a later segment
