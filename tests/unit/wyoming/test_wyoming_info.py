"""``describe`` → ``info``; the language and address helpers."""

from __future__ import annotations

import pytest
from wyoming.info import Info

from voxserve import __version__
from voxserve.config import Settings, wyoming_address
from voxserve.engines.base import VoiceInfo
from voxserve.errors import InvalidValue
from voxserve.wyoming.handler import _whisper_language, error_event
from voxserve.wyoming.info import build_info


def test_info_lists_models_and_voices_and_round_trips() -> None:
    voices = [
        VoiceInfo("piper/en_US-joe-medium", "en_US-joe-medium", "piper", "en-US", 22050),
        VoiceInfo("kokoro/jf_alpha", "jf_alpha", "kokoro", "ja", 24000),
    ]
    info = Info.from_event(build_info(["tiny.en", "base"], voices).event())
    asr, tts = info.asr[0], info.tts[0]
    assert asr.supports_transcript_streaming and tts.supports_synthesize_streaming
    assert [m.name for m in asr.models] == ["tiny.en", "base"]
    assert asr.models[0].languages == ["en"] and "de" in asr.models[1].languages
    assert [(v.name, v.languages) for v in tts.voices] == [
        ("piper/en_US-joe-medium", ["en_US"]),
        ("kokoro/jf_alpha", ["ja"]),
    ]
    assert asr.version == tts.version == __version__ and asr.attribution.name == "voxserve"
    assert all(p.installed for p in [asr, tts, *asr.models, *tts.voices])


def test_whisper_language() -> None:
    assert _whisper_language(None) is None and _whisper_language("") is None
    assert _whisper_language("en-US") == _whisper_language("en_US") == _whisper_language("EN") == "en"
    with pytest.raises(InvalidValue) as info:
        _whisper_language("xx")
    assert info.value.code == "unsupported_language"


def test_error_event_carries_the_code() -> None:
    event = error_event(InvalidValue("nope", code="unknown_thing"))
    assert event.type == "error" and event.data == {"text": "nope", "code": "unknown_thing"}


def test_wyoming_address_and_the_loopback_rule() -> None:
    assert wyoming_address("tcp://127.0.0.1:10300") == ("127.0.0.1", 10300)
    assert wyoming_address("tcp://[::1]:10300") == ("::1", 10300)
    for bad in ["unix:///tmp/x", "tcp://host", "tcp://h:0", "tcp://h:70000", "stdio://"]:
        with pytest.raises(ValueError, match="tcp://host:port"):
            wyoming_address(bad)
    assert Settings(wyoming_uri="tcp://localhost:10300").wyoming_uri == "tcp://localhost:10300"
    with pytest.raises(ValueError, match="no authentication"):
        Settings(wyoming_uri="tcp://0.0.0.0:10300", api_keys=["k"])
    assert Settings(wyoming_uri="tcp://0.0.0.0:10300", allow_unauthenticated=True).wyoming_uri
