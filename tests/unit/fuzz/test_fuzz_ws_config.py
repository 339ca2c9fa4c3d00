"""Property tests for the WebSocket configs as the server reads them (the wire parser, then the server's
own checks): any JSON value gives a config or the documented error (a :class:`VoxserveError`), never
TypeError/KeyError/AttributeError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings

from voxserve.api.stream_ws import check_stt_model
from voxserve.config import Settings
from voxserve.errors import UnknownVoice, VoxserveError
from voxserve.protocol import realtime, speak, transcribe
from voxserve.runtime.registry import EngineRegistry
from voxserve.state import AppState
from voxserve.tts.speak import SpeakConfig, speak_config

# What json.loads can produce, NaN and infinities included (Python's json accepts them).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

_AUDIO_KEYS = ("sample_rate_hz", "encoding", "language", "interim_results", "model")
_SPEAK_KEYS = ("voice", "response_format", "speed", "model")
_GOOD = {
    "sample_rate_hz": st.sampled_from([8000, 16000, 44100, 48000, 7999, 48001, 16000.0, True]),
    "encoding": st.sampled_from(["linear16", "float32", "mulaw", "LINEAR16"]),
    "language": st.sampled_from(["en", "en-US", "", "x" * 17]),
    "model": st.sampled_from(["tiny.en", "whisper-1", "tts-1", "piper", "kokoro", "nope"]),
    "voice": st.sampled_from(
        ["alloy", "piper/en_US-joe-medium", "en_US-joe-medium", "piper/nobody", "nobody", "", "x/y/z"]
    ),
    "response_format": st.sampled_from(["pcm", "wav", "mp3", "opus", "aac"]),
    "interim_results": st.sampled_from([True, False, 0, "no"]),
    "speed": st.sampled_from([0.25, 1, 4.0, 0.1, 5, float("nan"), float("inf")]),
}


@st.composite
def _config(draw: st.DrawFn, keys: tuple[str, ...]) -> Any:
    """Mostly ``{"type": "config", ...}`` with plausible or arbitrary values; sometimes any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    cfg: dict[str, Any] = {"type": draw(st.sampled_from(["config", "config", "config", "audio", None]))}
    for key in keys:
        choice = draw(st.integers(0, 2))
        if choice == 1:
            cfg[key] = draw(_GOOD[key])
        elif choice == 2:
            cfg[key] = draw(JSON)
    cfg |= draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2))
    return cfg


class _Voice:
    def __init__(self, name: str) -> None:
        self.name = name


class _Pool:
    voices = [_Voice("en_US-joe-medium")]

    async def start(self) -> None:
        return None

    async def call(self, method: str, voice: str) -> None:
        assert method == "check_voice"
        if voice not in ("en_US-joe-medium",):
            raise UnknownVoice(f"unknown voice {voice!r}")


class _Registry:
    """Just enough of :class:`EngineRegistry` to run its real ``resolve`` without workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pools = {"piper": _Pool()}
        self.stt_pools = {"tiny.en": object(), "base": object()}

    def pool(self, engine: str) -> Any:
        return EngineRegistry.pool(self, engine)  # type: ignore[arg-type]

    async def resolve(self, voice: Any, *, engine_hint: str | None = None) -> Any:
        return await EngineRegistry.resolve(self, voice, engine_hint=engine_hint)  # type: ignore[arg-type]

    def stt_model_id(self, name: str) -> str:
        return EngineRegistry.stt_model_id(self, name)  # type: ignore[arg-type]

    def tts_engine(self, name: str) -> str | None:
        return EngineRegistry.tts_engine(self, name)  # type: ignore[arg-type]


class _State:
    def __init__(self) -> None:
        self.settings = Settings(ui_enabled=False)
        self.registry = _Registry(self.settings)

    def model_ids(self) -> list[str]:
        return AppState.model_ids(self)  # type: ignore[arg-type]


STATE = _State()


def _audio_config(cfg: Any) -> tuple[transcribe.TranscribeConfig, str]:
    """What the transcribe endpoint does with a first message: parse it, then check its model."""
    config = transcribe.parse_config(json.dumps(cfg))
    return config, check_stt_model(STATE, config.model)  # type: ignore[arg-type]


@fuzz_settings(150)
@given(cfg=_config(_AUDIO_KEYS))
def test_an_audio_config_is_a_config_or_invalid_config(cfg: Any) -> None:
    if not isinstance(cfg, dict):
        cfg = {"type": "config", "value": cfg}
    try:
        parsed, model = _audio_config(cfg)
    except VoxserveError as exc:
        # A bad field is invalid_config; a model this server does not serve, model_not_found.
        assert exc.code in ("invalid_config", "model_not_found")
        return
    assert 8000 <= parsed.sample_rate_hz <= 48000
    assert parsed.encoding in ("linear16", "float32")
    assert isinstance(parsed.base_language, str)
    assert model in STATE.registry.stt_pools


@fuzz_settings(150)
@given(cfg=_config(_SPEAK_KEYS))
async def test_a_speak_config_is_a_config_or_a_voxserve_error(cfg: Any) -> None:
    try:
        wire = speak.parse_config(json.dumps(cfg))
        parsed = await speak_config(
            STATE,  # type: ignore[arg-type]
            voice=wire.voice,
            response_format=wire.response_format,
            speed=wire.speed,
            model=wire.model,
        )
    except VoxserveError as exc:
        assert 400 <= exc.status < 500
        return
    assert isinstance(parsed, SpeakConfig)
    assert 0.25 <= parsed.speed <= 4.0
    assert parsed.voice.engine == "piper"


@fuzz_settings(150)
@given(
    text=st.one_of(
        _config(_AUDIO_KEYS).map(lambda c: json.dumps(c)),
        st.text(max_size=40),
        st.sampled_from(["", "{", "NaN", '{"type": "config"', "[]", "null"]),
    )
)
def test_a_first_message_of_any_text_is_a_config_or_invalid_config(text: str) -> None:
    try:
        parsed = transcribe.parse_config(text)
    except VoxserveError as exc:
        assert exc.code == "invalid_config" and exc.close_code == 1008
        return
    assert parsed.encoding in ("linear16", "float32")


def test_a_non_string_model_is_invalid_config() -> None:
    # A list as the model was a TypeError (unhashable) while looking it up: the socket closed 1011.
    for model in ([], {}, ["tiny.en"], 1.5):
        with pytest.raises(VoxserveError) as info:
            _audio_config({"type": "config", "model": model})
        assert info.value.code == "invalid_config"
    with pytest.raises(VoxserveError) as info:
        _audio_config({"type": "config", "model": "whisper-large-v9"})
    assert info.value.code == "model_not_found"


_SESSION_VALUES = st.one_of(
    JSON,
    st.sampled_from(["pcm16", "g711_ulaw", "audio/pcmu", "audio/pcm", None, 24000, 16000, 0.5, float("nan")]),
)
_SESSION = st.recursive(
    st.dictionaries(
        st.sampled_from(
            [
                "audio",
                "input",
                "format",
                "type",
                "rate",
                "transcription",
                "input_audio_format",
                "input_audio_transcription",
                "turn_detection",
                "model",
                "language",
                "prompt",
                "threshold",
                "silence_duration_ms",
                "prefix_padding_ms",
                "create_response",
            ]
        ),  # fmt: skip
        _SESSION_VALUES,
        max_size=4,
    ),
    lambda children: st.dictionaries(
        st.sampled_from(["audio", "input", "format", "transcription", "turn_detection", "session"]),
        children | _SESSION_VALUES,
        max_size=3,
    ),
    max_leaves=10,
)


@fuzz_settings(150)
@given(session=st.one_of(_SESSION, JSON), beta=st.booleans())
def test_a_realtime_session_update_is_an_update_or_an_error(session: Any, beta: bool) -> None:
    # A session update of any shape is an update the session applies, or an error event's error,
    # never an exception that would end the socket with 1011.
    kind = "transcription_session.update" if beta else "session.update"
    try:
        event = realtime.parse_client_message(json.dumps({"type": kind, "session": session}))
    except VoxserveError as exc:
        assert 400 <= exc.status < 500
        return
    assert isinstance(event, realtime.TranscriptionSessionUpdate | realtime.SessionUpdate)
    updated = realtime.TranscriptionSession().apply(event)
    assert updated.input_audio_format in realtime.AUDIO_FORMATS
    assert json.dumps(updated.to_json("beta" if beta else "ga"))
