"""Property tests for every parser of :mod:`voxserve.protocol`: any input gives a typed message or a
:class:`VoxserveError` with a documented code, never RecursionError, KeyError, TypeError or another
exception; and a parsed message serialises to text that parses back to the same text.

Inputs: well-formed messages of every type with plausible or arbitrary field values, arbitrary JSON,
arbitrary text and bytes, 200 KB of nesting (``[[[...`` and ``{"a":{"a":...``), oversized strings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings

from voxserve.errors import VoxserveError
from voxserve.protocol import chat, common, realtime, speak, speech, transcribe
from voxserve.protocol import json as wire

Parser = Callable[[Any], Any]

# (name, parser, the codes it may raise)
_MESSAGE_CODES = {"invalid_json", "unknown_message", "unexpected_config", "invalid_text", "invalid_base64"}
_CONFIG_CODES = {"invalid_config", "unsupported_format", "invalid_speed", "invalid_voice", "model_not_found"}
_EVENT_CODES = {"invalid_json", "unknown_message", "invalid_event", "invalid_base64"}
_REALTIME_CODES = {
    "invalid_json",
    "invalid_event",
    "unknown_event",
    "invalid_audio",
    "invalid_base64",
    "invalid_session",
    "invalid_value",
    "unsupported_format",
    "unsupported_turn_detection",
}
PARSERS: list[tuple[str, Parser, set[str]]] = [
    ("speak.config", speak.parse_config, _CONFIG_CODES),
    ("speak.client", speak.parse_client_message, _MESSAGE_CODES | {"unexpected_binary"}),
    ("speak.server", speak.parse_server_event, _EVENT_CODES),
    ("transcribe.config", transcribe.parse_config, {"invalid_config"}),
    ("transcribe.client", transcribe.parse_client_message, _MESSAGE_CODES),
    ("transcribe.server", transcribe.parse_server_event, _EVENT_CODES),
    ("chat.config", chat.parse_config, _CONFIG_CODES),
    ("chat.client", chat.parse_client_message, _MESSAGE_CODES),
    ("chat.server", chat.parse_server_event, _EVENT_CODES),
    ("realtime.client", realtime.parse_client_message, _REALTIME_CODES),
    ("realtime.server", realtime.parse_server_event, _REALTIME_CODES),
    (
        "speech.speech",
        speech.parse_speech_event,
        {"invalid_json", "invalid_event", "unknown_event", "invalid_base64"},
    ),
    (
        "speech.transcription",
        speech.parse_transcription_event,
        {"invalid_json", "invalid_event", "unknown_event"},
    ),
]
_IDS = [name for name, _, _ in PARSERS]

# What json.loads can produce, NaN and infinities included (Python's json accepts them).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

_TYPES = sorted(
    {
        "config",
        "audio",
        "text",
        "flush",
        "cancel",
        "end",
        "error",
        "ready",
        "sentence",
        "cancelled",
        "done",
        "result",
        "speech_event",
        "lag",
        "speech_started",
        "transcript",
        "response.started",
        "response.text.delta",
        "response.done",
        "speech.audio.delta",
        "speech.audio.done",
        "speech.audio.error",
        "transcript.text.delta",
        "transcript.text.done",
        *(m.type for m in realtime._CLIENT.values()),
        *(m.type for m in realtime._SERVER.values()),
    }
)

_B64 = st.sampled_from(["", "AAAA", "AAE=", "AA==", "AAE", "AA-_", " AAAA", "AAAA=", "<base64>", "ü==="])
_NUMBER = st.sampled_from([0, 1, -1, 0.5, 1.5, 300, 24000, 16000, 60_001, float("nan"), float("inf"), True])
_STR = st.sampled_from(["", "x", "en", "en-US", "alloy", "pcm", "pcm16", "audio/pcm", "server_vad", "x" * 17])


@st.composite
def _turn_detection(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 5)) == 0:
        return draw(JSON)
    td: dict[str, Any] = {}
    for key in ("type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response"):
        if draw(st.booleans()):
            td[key] = draw(
                st.sampled_from(["server_vad", "semantic_vad"]) if key == "type" else _NUMBER | JSON
            )
    return td


@st.composite
def _transcription(draw: st.DrawFn) -> Any:
    return {k: draw(_STR | st.none() | JSON) for k in ("model", "language", "prompt") if draw(st.booleans())}


@st.composite
def _session(draw: st.DrawFn) -> Any:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(JSON)
    session: dict[str, Any] = {}
    if choice == 1:  # beta
        for key, value in (
            ("input_audio_format", st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw", "mp3"]) | JSON),
            ("input_audio_transcription", _transcription() | JSON),
            ("turn_detection", _turn_detection() | st.none()),
            ("max_message_bytes", _NUMBER),
        ):
            if draw(st.booleans()):
                session[key] = draw(value)
        return session
    audio_in: dict[str, Any] = {}
    fmt = st.fixed_dictionaries(
        {"type": st.sampled_from(["audio/pcm", "audio/pcmu", "audio/pcma", "pcm16"]) | JSON},
        optional={"rate": _NUMBER},
    )
    for key, value in (
        ("format", fmt | JSON),
        ("transcription", _transcription() | JSON),
        ("turn_detection", _turn_detection() | st.none()),
    ):
        if draw(st.booleans()):
            audio_in[key] = draw(value)
    session["audio"] = {"input": audio_in} if draw(st.integers(0, 5)) else draw(JSON)
    if draw(st.booleans()):
        session["type"] = draw(st.sampled_from(["transcription", "realtime"]) | JSON)
    return session


def _words() -> st.SearchStrategy[Any]:
    word = st.fixed_dictionaries(
        {"word": _STR, "start_s": _NUMBER, "end_s": _NUMBER},
        optional={"source_start": st.integers() | st.none() | JSON, "source_end": st.integers() | st.none()},
    )
    return st.lists(word | JSON, max_size=3)


def _results() -> st.SearchStrategy[Any]:
    alternative = st.fixed_dictionaries({"transcript": _STR | JSON, "confidence": _NUMBER})
    result = st.fixed_dictionaries(
        {
            "alternatives": st.lists(alternative | JSON, max_size=2),
            "is_final": st.booleans() | JSON,
            "stability": _NUMBER,
            "result_end_time": _NUMBER,
        }
    )
    return st.lists(result | JSON, max_size=2)


_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "audio": _B64,
    "text": _STR | st.just("   "),
    "event_id": _STR,
    "session": _session(),
    "voice": _STR | st.fixed_dictionaries({"id": _STR | JSON}),
    "response_format": st.sampled_from(["pcm", "wav", "mp3", "opus", "aac"]),
    "speed": _NUMBER,
    "model": _STR | st.none(),
    "sample_rate_hz": _NUMBER,
    "encoding": st.sampled_from(["linear16", "float32", "mulaw"]),
    "language": _STR | st.none(),
    "interim_results": st.booleans() | JSON,
    "system_prompt": _STR | st.none(),
    "barge_in": st.booleans() | JSON,
    "code": _STR,
    "message": _STR,
    "results": _results(),
    "words": _words(),
    "start_s": _NUMBER,
    "item_id": _STR,
    "previous_item_id": _STR | st.none(),
    "item": st.fixed_dictionaries({"id": _STR | JSON}),
    "delta": _STR,
    "transcript": _STR,
    "usage": st.fixed_dictionaries({"type": st.sampled_from(["duration", "tokens"]), "seconds": _NUMBER}),
    "error": st.fixed_dictionaries({"type": _STR, "code": _STR | st.none(), "message": _STR, "param": _STR}),
    "audio_start_ms": _NUMBER,
    "audio_end_ms": _NUMBER,
    "content_index": _NUMBER,
    "sample_rate": _NUMBER,
    "dropped_fragments": _NUMBER,
    "audio_s": _NUMBER,
    "samples": _NUMBER,
    "event": _STR,
    "time": _NUMBER,
    "lag_ms": _NUMBER,
    "dropped_partials": _NUMBER,
    "max_message_bytes": _NUMBER,
    "idle_timeout_s": _NUMBER,
    "max_session_s": _NUMBER,
    "is_final": st.booleans() | JSON,
    "stability": _NUMBER,
    "response_id": _NUMBER,
    "user_text": _STR,
    "interrupted": st.booleans() | JSON,
    "input_sample_rate_hz": _NUMBER,
    "llm_model": _STR,
    "dialect": _STR,
}


@st.composite
def _message(draw: st.DrawFn) -> str:
    """Mostly a message of a known type with plausible or arbitrary fields; sometimes any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(JSON))
    obj: dict[str, Any] = {"type": draw(st.sampled_from(_TYPES) | st.text(max_size=6) | JSON)}
    for key in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=8, unique=True)):
        obj[key] = draw(_FIELDS[key] if draw(st.integers(0, 3)) else JSON)
    return json.dumps(obj)


_T = st.text(max_size=8)
_F = st.floats() | st.integers(-(10**6), 10**6)
_I = st.integers()
_OPT_T = st.none() | _T
_TD = st.builds(
    realtime.TurnDetection,
    st.none() | st.floats(0, 1),
    st.none() | st.integers(0, 60_000),
    st.none() | st.floats(0, 60_000),
    st.dictionaries(st.sampled_from(["create_response", "x"]), JSON, max_size=2),
)
_KEEP_T = st.just(realtime.KEEP) | _T
_RT_SESSION = st.builds(
    realtime.TranscriptionSession,
    st.sampled_from(sorted(realtime.AUDIO_FORMATS)),
    _T,
    _OPT_T,
    _T,
    st.none() | _TD,
    st.none() | _I,
)
_UPDATE_FIELDS = {
    "model": _KEEP_T,
    "language": _KEEP_T | st.none(),
    "prompt": _KEEP_T | st.none(),
    "turn_detection": st.just(realtime.KEEP) | st.none() | _TD,
    "event_id": _OPT_T,
}
_WORDS = st.lists(st.builds(speak.Word, _T, _F, _F, st.none() | _I, st.none() | _I), max_size=2).map(tuple)
_RESULTS = st.lists(
    st.builds(
        transcribe.RecognitionResult,
        st.lists(st.builds(transcribe.Alternative, _T, _F), max_size=2).map(tuple),
        st.booleans(),
        _F,
        _F,
    ),
    max_size=2,
).map(tuple)
_AUDIO = st.binary(max_size=12)

TYPED: st.SearchStrategy[wire.WireMessage] = st.one_of(
    # voxserve's streaming protocols
    st.builds(common.AudioMessage, _AUDIO),
    st.builds(common.TextMessage, _T),
    st.sampled_from([common.FlushMessage(), common.CancelMessage(), common.EndMessage()]),
    st.builds(common.ErrorEvent, _T, _T),
    st.builds(speak.SpeakConfig, _OPT_T, st.sampled_from(speak.SPEAK_FORMATS), st.floats(0.25, 4), _OPT_T),
    st.builds(speak.SpeakReady, _T, _T, _I, _F),
    st.builds(speak.SentenceEvent, _T, _F, _WORDS),
    st.builds(speak.CancelledEvent, _I),
    st.builds(speak.DoneEvent, _F, _I),
    st.builds(
        transcribe.TranscribeConfig,
        st.integers(8000, 48000),
        st.sampled_from(transcribe.ENCODINGS),
        st.text(max_size=16),
        st.booleans(),
        _OPT_T,
    ),
    st.builds(transcribe.TranscribeReady, _I, _T, _I, _F, _F),
    st.builds(transcribe.ResultEvent, _RESULTS),
    st.builds(transcribe.SpeechEvent, _T, _F),
    st.builds(transcribe.LagEvent, _I, _I),
    st.builds(
        chat.ChatConfig,
        st.integers(8000, 48000),
        st.sampled_from(transcribe.ENCODINGS),
        st.text(max_size=16),
        st.booleans(),
        _OPT_T,
        _OPT_T,
        st.sampled_from(speak.SPEAK_FORMATS),
        st.floats(0.25, 4),
        _OPT_T,
        st.booleans(),
    ),
    st.builds(chat.ChatReady, _T, _T, _I, _I, _T, _T),
    st.builds(chat.SpeechStartedEvent, _F),
    st.builds(chat.TranscriptEvent, _T, st.booleans(), _F),
    st.builds(chat.ResponseStarted, _I, _T),
    st.builds(chat.ResponseTextDelta, _I, _T),
    st.builds(chat.ResponseDone, _I, _T, st.booleans()),
    # realtime
    st.builds(
        realtime.TranscriptionSessionUpdate,
        input_audio_format=st.just(realtime.KEEP) | st.sampled_from(sorted(realtime.AUDIO_FORMATS)),
        **_UPDATE_FIELDS,
    ),
    st.builds(
        realtime.SessionUpdate,
        input_audio_format=st.sampled_from(sorted(realtime.AUDIO_FORMATS)),
        session_type=_OPT_T,
        **_UPDATE_FIELDS,
    ),
    st.builds(realtime.InputAudioBufferAppend, _AUDIO, event_id=_OPT_T),
    st.builds(realtime.InputAudioBufferCommit, event_id=_OPT_T),
    st.builds(realtime.InputAudioBufferClear, event_id=_OPT_T),
    st.builds(realtime.session_created, st.sampled_from(["beta", "ga"]), _RT_SESSION),
    st.builds(realtime.session_updated, st.sampled_from(["beta", "ga"]), _RT_SESSION),
    st.builds(realtime.SpeechStarted, _I, _T),
    st.builds(realtime.SpeechStopped, _I, _T),
    st.builds(realtime.Committed, _T, _OPT_T),
    st.builds(realtime.item_created, st.sampled_from(["beta", "ga"]), _T, _OPT_T),
    st.builds(realtime.TranscriptionDelta, _T, _T, _I),
    st.builds(realtime.TranscriptionCompleted, _T, _T, st.none() | _F, _I),
    st.builds(realtime.TranscriptionFailed, _T, _T, _T, _T, _I),
    st.builds(realtime.Cleared),
    st.builds(realtime.RealtimeErrorEvent, _T, _T, _OPT_T, _OPT_T, _T),
    # SSE events
    st.builds(speech.SpeechAudioDelta, _AUDIO),
    st.builds(speech.SpeechAudioDone, _I, _I, _I),
    st.builds(speech.SpeechAudioError, _T, _T, _T),
    st.builds(speech.TranscriptTextDelta, _T),
    st.builds(speech.TranscriptTextDone, _T),
    st.builds(speech.TranscriptionError, _T, _T, _OPT_T),
)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A typed message's JSON with one field, maybe nested, replaced by any JSON value or removed."""
    obj = json.loads(draw(TYPED).to_text())
    target = obj
    while isinstance(target, dict) and target and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(target)))
        if not isinstance(target[key], dict) or not target[key]:
            break
        target = target[key]
    if isinstance(target, dict) and target:
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(JSON)
    return json.dumps(obj)


def _accepts_or_refuses(parse: Parser, codes: set[str], data: Any) -> None:
    """``data`` parses to a message whose text parses back to the same text, or is refused with one
    of ``codes``."""
    try:
        message = parse(data)
    except VoxserveError as exc:
        assert exc.code in codes, (exc.code, exc.message)
        assert 400 <= exc.status < 500
        return
    assert isinstance(message, wire.WireMessage)
    text = message.to_text()
    assert parse(text).to_text() == text
    if isinstance(message, speech._SseEvent):
        assert message.to_sse().startswith(b"data: {")


@pytest.mark.parametrize(("name", "parse", "codes"), PARSERS, ids=_IDS)
@fuzz_settings(100)
@given(text=_message())
def test_messages_of_every_type(name: str, parse: Parser, codes: set[str], text: str) -> None:
    _accepts_or_refuses(parse, codes, text)


def _parsers_of(message: wire.WireMessage) -> list[Parser]:
    """The parsers that take ``message``'s type (several protocols share ``ready``, ``error``, ...)."""
    found = []
    for _, parse, _ in PARSERS:
        try:
            parsed = parse(message.to_text())
        except VoxserveError:
            continue
        if type(parsed) is type(message):
            found.append(parse)
    return found


@fuzz_settings(300)
@given(message=TYPED)
def test_every_typed_message_round_trips(message: wire.WireMessage) -> None:
    """Serialising a message and parsing it back gives the same text; at least one parser takes it."""
    parsers = _parsers_of(message)
    assert parsers, message
    for parse in parsers:
        assert parse(message.to_text()).to_text() == message.to_text()


@pytest.mark.parametrize(("name", "parse", "codes"), PARSERS, ids=_IDS)
@fuzz_settings(100)
@given(text=_mutated())
def test_mutated_messages(name: str, parse: Parser, codes: set[str], text: str) -> None:
    _accepts_or_refuses(parse, codes, text)


@pytest.mark.parametrize(("name", "parse", "codes"), PARSERS, ids=_IDS)
@fuzz_settings(60)
@given(data=st.text(max_size=60) | st.binary(max_size=60))
def test_any_text_or_bytes(name: str, parse: Parser, codes: set[str], data: str | bytes) -> None:
    _accepts_or_refuses(parse, codes | {"unexpected_binary"}, data)


def _deep(kind: str, size: int) -> str:
    if kind == "lists":
        return "[" * size + "]" * size
    if kind == "open":
        return "[" * size
    if kind == "objects":
        n = size // 5
        return '{"a":' * n + "1" + "}" * n
    if kind == "mixed":
        n = size // 6
        return '[{"a":' * n + "0" + "}]" * n
    if kind == "quotes":  # strings that never end, then brackets: the depth scan must stay linear
        return '{"type":"text","text":"' + '\\"' * (size // 2) + "[" * 100
    # Deep JSON inside a message of every type: a valid envelope around the nesting.
    n = size // 2
    return '{"type":"' + kind + '","text":' + "[" * n + "]" * n + "}"


_DEEP_KINDS = [
    "lists",
    "open",
    "objects",
    "mixed",
    "quotes",
    "text",
    "audio",
    "config",
    "session.update",
    "error",
]


@pytest.mark.parametrize("kind", _DEEP_KINDS)
@pytest.mark.parametrize(("name", "parse", "codes"), PARSERS, ids=_IDS)
def test_200_kb_of_nesting_is_refused_quickly(name: str, parse: Parser, codes: set[str], kind: str) -> None:
    data = _deep(kind, 200_000)
    started = time.perf_counter()
    with pytest.raises(VoxserveError) as info:
        parse(data)
    assert info.value.code in codes
    assert info.value.code in {"invalid_json", "invalid_config", "invalid_event"}
    # The same as a binary frame: refused, or (transcribe, chat) taken as audio bytes.
    try:
        message = parse(data.encode())
    except VoxserveError as exc:
        assert exc.code in {"invalid_json", "invalid_config", "invalid_event", "unexpected_binary"}
    else:
        assert message == common.AudioMessage(data.encode())
    # One linear scan each: far under a second even on a loaded 2-core machine.
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(("name", "parse", "codes"), PARSERS, ids=_IDS)
def test_oversized_strings(name: str, parse: Parser, codes: set[str]) -> None:
    big = "x" * 1_000_000
    for obj in (
        {"type": big},
        {"type": "text", "text": big},
        {"type": "config", "voice": big, "language": big},
    ):
        _accepts_or_refuses(parse, codes, json.dumps(obj))
    _accepts_or_refuses(parse, codes, json.dumps({"type": "audio", "audio": "AAAA" * 100_000}))
    _accepts_or_refuses(parse, codes, "1" * 10_000)  # past Python's int-digit limit


@fuzz_settings(60)
@given(data=st.text(max_size=40) | st.binary(max_size=40) | _message())
def test_audio_from_frame(data: str | bytes) -> None:
    try:
        audio = common.audio_from_frame(data)
    except VoxserveError as exc:
        assert exc.code in {"invalid_json", "unknown_message", "invalid_base64"}
        return
    assert isinstance(audio, bytes)


@fuzz_settings(100)
@given(text=st.text(alphabet='[]{}"\\a,:1 ', max_size=200))
def test_depth_scan_agrees_with_json(text: str) -> None:
    """Where json.loads accepts bracket soup, the scan's depth is the real depth."""
    try:
        value = json.loads(text)
    except ValueError:
        return

    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    assert wire.nesting_depth(text) == depth(value)


@fuzz_settings(60)
@given(update=_session(), dialect=st.sampled_from(["beta", "ga"]))
def test_a_valid_update_applies(update: Any, dialect: realtime.Dialect) -> None:
    kind = "transcription_session.update" if dialect == "beta" else "session.update"
    try:
        parsed = realtime.parse_client_message(json.dumps({"type": kind, "session": update}))
    except VoxserveError as exc:
        assert exc.code in _REALTIME_CODES
        return
    assert isinstance(parsed, realtime.TranscriptionSessionUpdate | realtime.SessionUpdate)
    session = realtime.TranscriptionSession().apply(parsed)
    assert session.input_audio_format in realtime.AUDIO_FORMATS
    dialects: tuple[realtime.Dialect, ...] = ("beta", "ga")
    for d in dialects:
        event = realtime.session_updated(d, session)
        assert realtime.parse_server_event(event.to_text()).to_text() == event.to_text()
