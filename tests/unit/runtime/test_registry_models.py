"""Model names: OpenAI's current names, the served ids and ``model_aliases`` resolve in one place
(``EngineRegistry.stt_model_id`` / ``tts_engine``); anything else is ``model_not_found`` with the list."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from voxserve.config import Settings
from voxserve.errors import UnknownModel
from voxserve.runtime.registry import (
    OPENAI_STT_MODELS,
    OPENAI_TTS_MODELS,
    REALTIME_ONLY_STT_MODELS,
    EngineRegistry,
    unknown_model,
)
from voxserve.state import AppState

TODAYS_STT_NAMES = (
    "gpt-transcribe",
    "gpt-realtime-whisper",
    "gpt-live-transcribe",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "whisper-1",
)
TODAYS_TTS_NAMES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")


def registry(**overrides: Any) -> EngineRegistry:
    # Building a registry builds its pools; no worker starts until one is used.
    return EngineRegistry(Settings(ui_enabled=False, **overrides))


def test_every_openai_name_is_served_by_the_default_model() -> None:
    assert set(TODAYS_STT_NAMES) <= set(OPENAI_STT_MODELS)
    assert {"gpt-realtime-whisper", "gpt-live-transcribe"} == REALTIME_ONLY_STT_MODELS
    reg = registry(stt_models=["tiny.en", "base"], stt_default_model="base")
    for name in TODAYS_STT_NAMES:
        assert reg.stt_model_id(name) == "base"
        assert reg.stt_pool(name) is reg.stt_pools["base"]
    assert reg.stt_model_id("tiny.en") == "tiny.en"


def test_every_openai_speech_name_lets_the_voice_pick_and_an_engine_name_pins_it() -> None:
    reg = registry()
    assert set(TODAYS_TTS_NAMES) <= set(OPENAI_TTS_MODELS)
    for name in (*TODAYS_TTS_NAMES, "voxserve"):
        assert reg.tts_engine(name) is None
    assert reg.tts_engine("kokoro") == "kokoro"


def test_aliases_map_more_names_to_either_kind() -> None:
    aliases = {
        "large": "base",
        "fast-tts": "espeak",
        "my-tts": "tts-1",
        "rt": "gpt-realtime-whisper",
        "gpt-4o-transcribe": "base",  # an OpenAI name re-pointed to a bigger model
    }
    reg = registry(stt_models=["tiny.en", "base"], model_aliases=aliases)
    assert reg.stt_model_id("large") == "base"
    assert reg.stt_model_id("gpt-4o-transcribe") == "base"
    assert reg.stt_model_id("gpt-transcribe") == "tiny.en"
    assert reg.stt_model_id("rt") == "tiny.en"
    assert reg.tts_engine("fast-tts") == "espeak"
    assert reg.tts_engine("my-tts") is None
    assert reg.realtime_only("rt") and reg.realtime_only("gpt-live-transcribe")
    assert not reg.realtime_only("whisper-1") and not reg.realtime_only("large")
    stt, tts = reg.stt_model_names(), reg.tts_model_names()
    assert {"large", "rt", "gpt-4o-transcribe"} <= set(stt) and "fast-tts" not in stt
    assert {"fast-tts", "my-tts"} <= set(tts) and "large" not in tts
    assert len(stt) == len(set(stt))
    # A speech alias is not a transcription model, and the other way round.
    with pytest.raises(UnknownModel):
        reg.stt_model_id("fast-tts")
    with pytest.raises(UnknownModel):
        reg.tts_engine("large")


def test_an_unknown_name_is_model_not_found_listing_the_accepted_names() -> None:
    reg = registry()
    with pytest.raises(UnknownModel) as info:
        reg.stt_model_id("whisper-9")
    exc = info.value
    assert (exc.status, exc.code, exc.param) == (404, "model_not_found", "model")
    assert "'whisper-9'" in exc.message and "gpt-transcribe" in exc.message and "tiny.en" in exc.message
    with pytest.raises(UnknownModel) as info:
        reg.tts_engine("tts-9")
    assert "tts-1-hd" in info.value.message and "whisper-1" not in info.value.message
    with pytest.raises(UnknownModel):
        reg.stt_pool("")


def test_the_list_in_the_message_is_bounded() -> None:
    names = [f"model-{i:04d}-{'x' * 40}" for i in range(200)]
    exc = unknown_model("y" * 10_000, None, names)
    assert len(exc.message) < 700
    assert exc.message.endswith("(GET /v1/models lists the models)") and "more" in exc.message


def test_app_state_lists_every_name_once() -> None:
    settings = Settings(ui_enabled=False, model_aliases={"large": "base", "fast-tts": "espeak"})
    reg = EngineRegistry(settings)
    state = AppState(settings=settings, registry=reg, metrics=None, probe=None, jobs=None)  # type: ignore[arg-type]
    assert state.stt_model_ids() == [*OPENAI_STT_MODELS, "tiny.en", "base", "large"]
    assert state.model_ids() == [*OPENAI_TTS_MODELS, "voxserve", "piper", "espeak", "kokoro", "fast-tts"]


@pytest.mark.parametrize(
    ("aliases", "words"),
    [
        ({"x": "nope"}, "'nope' is not a served model"),
        ({"x": "kokoro"}, None),  # fine with kokoro enabled ...
        ({"tiny.en": "base"}, "already a served model id"),
        ({"a": "fast", "fast": "base"}, "itself an alias"),
        ({"whisper-1": "kokoro"}, "transcription model name"),
        ({"tts-1": "base"}, "speech model name"),
        ({" ": "base"}, "non-empty"),
    ],
)
def test_aliases_are_checked_at_start_up(aliases: dict[str, str], words: str | None) -> None:
    if words is None:
        assert Settings(model_aliases=aliases).model_aliases == aliases
        return
    with pytest.raises(ValidationError) as info:
        Settings(model_aliases=aliases)
    assert "model_aliases (VOXSERVE_MODEL_ALIASES)" in str(info.value) and words in str(info.value)


def test_an_alias_to_a_disabled_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXSERVE_ENGINES", '["espeak"]')
    monkeypatch.setenv("VOXSERVE_DEFAULT_VOICE", "espeak/en-us")
    monkeypatch.setenv("VOXSERVE_MODEL_ALIASES", '{"hd": "kokoro"}')
    with pytest.raises(ValidationError, match="VOXSERVE_MODEL_ALIASES"):
        Settings()
    monkeypatch.setenv("VOXSERVE_MODEL_ALIASES", '{"hd": "espeak", "big": "tiny.en"}')
    assert Settings().model_aliases == {"hd": "espeak", "big": "tiny.en"}
