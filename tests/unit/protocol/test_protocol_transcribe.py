"""Golden tests for :mod:`voxserve.protocol.transcribe`: raw frames in, exact objects and text out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from voxserve.errors import InvalidRequest, InvalidValue, VoxserveError
from voxserve.protocol.common import AudioMessage, EndMessage, ErrorEvent
from voxserve.protocol.transcribe import (
    SPEECH_ACTIVITY_BEGIN,
    SPEECH_ACTIVITY_END,
    Alternative,
    LagEvent,
    RecognitionResult,
    ResultEvent,
    SpeechEvent,
    TranscribeConfig,
    TranscribeReady,
    parse_client_message,
    parse_config,
    parse_server_event,
)


def _error(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(VoxserveError) as info:
        call()
    return info.value.code, info.value.message


# --------------------------------------------------------------------------------- docs/api.md

DOC_SERVER = [
    TranscribeReady(16000, "linear16", 262144, 60.0, 3600.0),
    ResultEvent.single("to be or not", is_final=False, stability=0.5, end_s=2.48, confidence=0.0),
    ResultEvent.single("To be or not to be.", is_final=True, end_s=3.2, confidence=0.87),
    SpeechEvent(SPEECH_ACTIVITY_BEGIN, 0.42),
    LagEvent(1300, 2),
    ErrorEvent("invalid_base64", "audio must be valid base64"),
]


def test_every_docs_example(api_examples: Callable[[str], list[Any]]) -> None:
    examples = api_examples("WS /v1/stream/transcribe")
    assert [parse_server_event(json.dumps(e)) for e in examples] == DOC_SERVER
    assert [e.to_json() for e in DOC_SERVER] == examples


def test_docs_inline_client_messages(api_text: str) -> None:
    config = (
        '{"type": "config", "sample_rate_hz": 16000, "encoding": "linear16", "language": "en", '
        '"interim_results": true}'
    )
    assert config in api_text
    assert parse_config(config) == TranscribeConfig(16000, "linear16", "en", True)
    assert TranscribeConfig().to_json() == json.loads(config)
    assert '{"type": "audio", "audio": "<base64>"}' in api_text
    # The placeholder itself is not base64: the documented error for it.
    assert _error(lambda: parse_client_message('{"type": "audio", "audio": "<base64>"}')) == (
        "invalid_base64",
        "audio must be valid base64",
    )
    assert '{"type": "end"}' in api_text
    assert parse_client_message('{"type": "end"}') == EndMessage()


# --------------------------------------------------------------------------------- config


def test_config_exact_text_and_fields() -> None:
    config = TranscribeConfig(8000, "float32", "en-US", False, "base")
    assert config.to_text() == (
        '{"type":"config","sample_rate_hz":8000,"encoding":"float32","language":"en-US",'
        '"interim_results":false,"model":"base"}'
    )
    assert parse_config(config.to_text()) == config
    assert config.base_language == "en"
    assert parse_config('{"type":"config"}') == TranscribeConfig()


@pytest.mark.parametrize(
    ("value", "expected"), [(0, False), ("", False), ("no", True), (None, False), ([], False)]
)
def test_interim_results_is_truthiness(value: object, expected: bool) -> None:
    text = json.dumps({"type": "config", "interim_results": value})
    assert parse_config(text).interim_results is expected


_FIRST = 'the first message must be {"type": "config", ...}'
_RATE = "sample_rate_hz must be an integer from 8000 to 48000"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"type":"config"}', 'the first message must be a text {"type": "config", ...} message'),
        ("", "the first message must be a JSON config"),
        ("{nope", "the first message must be a JSON config"),
        ('{"a":' * 100 + "1" + "}" * 100, "the first message must be a JSON config"),
        ("[]", _FIRST),
        ('{"type":"audio","audio":""}', _FIRST),
        ('{"type":"config","sample_rate_hz":7999}', _RATE),
        ('{"type":"config","sample_rate_hz":48001}', _RATE),
        ('{"type":"config","sample_rate_hz":16000.0}', _RATE),
        ('{"type":"config","sample_rate_hz":true}', _RATE),
        ('{"type":"config","encoding":"mulaw"}', "encoding must be linear16 or float32"),
        ('{"type":"config","encoding":["linear16"]}', "encoding must be linear16 or float32"),
        ('{"type":"config","language":null}', "language must be a language code such as en"),
        ('{"type":"config","language":"' + "x" * 17 + '"}', "language must be a language code such as en"),
        ('{"type":"config","model":null}', "unknown model None"),
        ('{"type":"config","model":7}', "unknown model 7"),
    ],
)
def test_config_errors(data: str | bytes, message: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_config(data)
    assert (info.value.code, info.value.message) == ("invalid_config", message)


def test_config_bounds_accepted() -> None:
    assert parse_config('{"type":"config","sample_rate_hz":8000}').sample_rate_hz == 8000
    assert (
        parse_config('{"type":"config","sample_rate_hz":48000,"language":"' + "x" * 16 + '"}').sample_rate_hz
        == 48000
    )


# --------------------------------------------------------------------------------- client messages


def test_client_messages() -> None:
    assert parse_client_message(b"\x01\x00\x02\x00") == AudioMessage(b"\x01\x00\x02\x00")
    assert parse_client_message(b"") == AudioMessage(b"")
    assert parse_client_message('{"type":"audio","audio":"AQACAA=="}') == AudioMessage(b"\x01\x00\x02\x00")
    assert parse_client_message('{"type":"audio"}') == AudioMessage(b"")
    assert parse_client_message('{"type":"end","x":1}') == EndMessage()
    assert AudioMessage(b"\x01\x00\x02\x00").to_text() == '{"type":"audio","audio":"AQACAA=="}'


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("", "invalid_json", "text messages must be JSON"),
        ("{", "invalid_json", "text messages must be JSON"),
        ("[" * 1000, "invalid_json", "text messages must be JSON"),
        ("5", "unknown_message", "unknown message type None"),
        ('{"type":"stop"}', "unknown_message", "unknown message type 'stop'"),
        ('{"type":"config"}', "unexpected_config", "the stream is already configured"),
        ('{"type":"audio","audio":"AAAA "}', "invalid_base64", "audio must be valid base64"),
        (
            '{"type":"audio","audio":"data:audio/pcm;base64,AAAA"}',
            "invalid_base64",
            "audio must be valid base64",
        ),
        ('{"type":"audio","audio":"AA-_"}', "invalid_base64", "audio must be valid base64"),
        ('{"type":"audio","audio":"AAAA="}', "invalid_base64", "audio must be valid base64"),
        ('{"type":"audio","audio":123}', "invalid_base64", "audio must be valid base64"),
    ],
)
def test_client_message_errors(text: str, code: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_client_message(text)
    assert (info.value.code, info.value.message) == (code, message)


# --------------------------------------------------------------------------------- server events


def test_result_exact_text_with_model_confidence() -> None:
    final = ResultEvent.single("Hello.", is_final=True, end_s=1.23456, confidence=0.8731)
    assert final.to_text() == (
        '{"type":"result","results":[{"alternatives":[{"transcript":"Hello.","confidence":0.8731}],'
        '"is_final":true,"stability":0.0,"result_end_time":1.235}]}'
    )
    assert parse_server_event(final.to_text()) == final
    assert final.transcript == "Hello." and final.is_final
    interim = ResultEvent.single("hel", is_final=False, end_s=0.5, stability=0.6666)
    assert interim.results[0] == RecognitionResult((Alternative("hel", 0.0),), False, 0.67, 0.5)
    assert not interim.is_final
    empty = ResultEvent(())
    assert empty.transcript == "" and not empty.is_final
    assert ResultEvent((RecognitionResult((), True, 0.0, 1.0),)).transcript == ""


def test_multi_result_event_parses() -> None:
    text = (
        '{"type":"result","results":[{"alternatives":[{"transcript":"a","confidence":0.5},'
        '{"transcript":"b","confidence":0.25}],"is_final":true,"stability":0,"result_end_time":1},'
        '{"alternatives":[],"is_final":false,"stability":0.1,"result_end_time":2}]}'
    )
    event = parse_server_event(text)
    assert isinstance(event, ResultEvent) and len(event.results) == 2
    assert json.loads(event.to_text()) == json.loads(text)


def test_other_events_exact_text() -> None:
    assert SpeechEvent(SPEECH_ACTIVITY_END, 2.5).to_text() == (
        '{"type":"speech_event","event":"SPEECH_ACTIVITY_END","time":2.5}'
    )
    assert LagEvent(1300, 2).to_text() == '{"type":"lag","lag_ms":1300,"dropped_partials":2}'
    ready = TranscribeReady(16000, "linear16", 262144, 60.0, 3600.0)
    assert ready.to_text() == (
        '{"type":"ready","sample_rate_hz":16000,"encoding":"linear16","max_message_bytes":262144,'
        '"idle_timeout_s":60.0,"max_session_s":3600.0}'
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "invalid_json"),
        ('{"type":"partial"}', "unknown_message"),
        ('{"type":"result"}', "invalid_event"),
        ('{"type":"result","results":[1]}', "invalid_event"),
        (
            '{"type":"result","results":[{"alternatives":{},"is_final":true,"stability":0,"result_end_time":1}]}',
            "invalid_event",
        ),
        (
            '{"type":"result","results":[{"alternatives":[],"is_final":1,"stability":0,"result_end_time":1}]}',
            "invalid_event",
        ),
        (
            '{"type":"result","results":[{"alternatives":[{"transcript":"a"}],"is_final":true,"stability":0,"result_end_time":1}]}',
            "invalid_event",
        ),
        ('{"type":"speech_event","event":1,"time":0}', "invalid_event"),
        ('{"type":"lag","lag_ms":1.5,"dropped_partials":0}', "invalid_event"),
        ('{"type":"ready","sample_rate_hz":16000}', "invalid_event"),
    ],
)
def test_server_event_errors(text: str, code: str) -> None:
    assert _error(lambda: parse_server_event(text))[0] == code
