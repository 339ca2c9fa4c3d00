"""Golden tests for :mod:`voxserve.protocol.chat`: raw frames in, exact objects and text out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from voxserve.errors import InvalidRequest, UnknownModel, VoxserveError
from voxserve.protocol.chat import (
    AudioMessage,
    CancelledEvent,
    CancelMessage,
    ChatConfig,
    ChatReady,
    DoneEvent,
    EndMessage,
    ErrorEvent,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    SentenceEvent,
    SpeechStartedEvent,
    TextMessage,
    TranscriptEvent,
    parse_client_message,
    parse_config,
    parse_server_event,
)


def _error(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(VoxserveError) as info:
        call()
    return info.value.code, info.value.message


# --------------------------------------------------------------------------------- docs/api.md

DOC_CONFIG = ChatConfig(
    16000, "linear16", "en", True, None, "alloy", "pcm", 1.0, "You are a helpful voice assistant.", True
)
DOC_CLIENT = [TextMessage("What is the capital of France?"), CancelMessage(), EndMessage()]
DOC_SERVER = [
    SpeechStartedEvent(3.1),
    TranscriptEvent("what is the", False, 0.5),
    TranscriptEvent("What is the capital of France?", True, 0.0),
    ResponseStarted(1, "What is the capital of France?"),
    ResponseTextDelta(1, "Paris"),
    SentenceEvent("Paris is the capital of France.", 0.0, ()),
    ResponseDone(1, "Paris is the capital of France.", False),
    CancelledEvent(2),
    ErrorEvent("llm_unavailable", "cannot reach the LLM at ..."),
]


def test_every_docs_example(api_examples: Callable[[str], list[Any]]) -> None:
    examples = api_examples("WS /v1/stream/chat")
    assert len(examples) == 1 + len(DOC_CLIENT) + len(DOC_SERVER)
    config, client, server = examples[0], examples[1:4], examples[4:]
    assert parse_config(json.dumps(config)) == DOC_CONFIG
    assert DOC_CONFIG.to_json() == {**config, "interim_results": True}
    assert [parse_client_message(json.dumps(m)) for m in client] == DOC_CLIENT
    assert [m.to_json() for m in DOC_CLIENT] == client
    assert [parse_server_event(json.dumps(e)) for e in server] == DOC_SERVER
    assert [e.to_json() for e in DOC_SERVER] == server


def test_docs_inline_examples(api_text: str) -> None:
    not_configured = (
        '{"type": "error", "code": "llm_not_configured", "message": "no LLM is configured: start the server '
        'with --llm-base-url ..."}'
    )
    assert not_configured in api_text
    event = parse_server_event(not_configured)
    assert event == ErrorEvent(
        "llm_not_configured", "no LLM is configured: start the server with --llm-base-url ..."
    )
    assert '{"type": "audio", "audio": "<base64>"}' in api_text
    assert (
        _error(lambda: parse_client_message('{"type": "audio", "audio": "<base64>"}'))[0] == "invalid_base64"
    )


# --------------------------------------------------------------------------------- config


def test_config_defaults_and_exact_text() -> None:
    config = parse_config('{"type":"config"}')
    assert config == ChatConfig()
    assert config.to_text() == (
        '{"type":"config","sample_rate_hz":16000,"encoding":"linear16","language":"en","interim_results":true,'
        '"response_format":"pcm","speed":1.0,"barge_in":true}'
    )
    full = ChatConfig(
        48000, "float32", "fr-CA", False, "tiny.en", "espeak/fr", "opus", 1.25, "Sois bref.", False
    )
    assert parse_config(full.to_text()) == full
    assert full.base_language == "fr"


def test_config_truthiness_fields() -> None:
    config = parse_config('{"type":"config","barge_in":0,"interim_results":"yes","voice":{"id":"alloy"}}')
    assert (config.barge_in, config.interim_results, config.voice) == (False, True, "alloy")


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"{}", "invalid_config", 'the first message must be a JSON {"type": "config", ...}'),
        ("", "invalid_config", 'the first message must be a JSON {"type": "config", ...}'),
        (
            '{"type":"text","text":"hi"}',
            "invalid_config",
            'the first message must be {"type": "config", ...}',
        ),
        (
            '{"type":"config","response_format":"flac"}',
            "unsupported_format",
            "response_format must be one of pcm, wav, mp3, opus",
        ),
        ('{"type":"config","speed":0}', "invalid_speed", "speed must be a number from 0.25 to 4.0"),
        ('{"type":"config","voice":[]}', "invalid_voice", "voice must be a voice id"),
        (
            '{"type":"config","model":{}}',
            "model_not_found",
            "model {} is not served here; GET /v1/models lists the models",
        ),
        (
            '{"type":"config","sample_rate_hz":96000}',
            "invalid_config",
            "sample_rate_hz must be an integer from 8000 to 48000",
        ),
        ('{"type":"config","encoding":"alaw"}', "invalid_config", "encoding must be linear16 or float32"),
        ('{"type":"config","language":5}', "invalid_config", "language must be a language code such as en"),
        (
            '{"type":"config","system_prompt":null}',
            "invalid_config",
            "system_prompt must be a string of at most max_input_chars",
        ),
        # speech fields are checked before audio fields, as the server always did
        (
            '{"type":"config","speed":9,"sample_rate_hz":1}',
            "invalid_speed",
            "speed must be a number from 0.25 to 4.0",
        ),
    ],
)
def test_config_errors(data: str | bytes, code: str, message: str) -> None:
    assert _error(lambda: parse_config(data)) == (code, message)


def test_config_model_error_class_and_prompt_limit() -> None:
    with pytest.raises(UnknownModel):
        parse_config('{"type":"config","model":1}')
    text = json.dumps({"type": "config", "system_prompt": "x" * 11})
    assert parse_config(text, max_system_prompt_chars=11).system_prompt == "x" * 11
    assert _error(lambda: parse_config(text, max_system_prompt_chars=10)) == (
        "invalid_config",
        "system_prompt must be a string of at most max_input_chars",
    )


# --------------------------------------------------------------------------------- client messages


def test_client_messages() -> None:
    assert parse_client_message(b"\x00\x00") == AudioMessage(b"\x00\x00")
    assert parse_client_message('{"type":"audio","audio":"AAA="}') == AudioMessage(b"\x00\x00")
    assert parse_client_message('{"type":"text","text":"  Hi  "}') == TextMessage("  Hi  ")
    assert parse_client_message('{"type":"cancel"}') == CancelMessage()
    assert parse_client_message('{"type":"end"}') == EndMessage()


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("x", "invalid_json", "text messages must be JSON"),
        ('{"type":"text","text":"   "}', "invalid_text", '"text" must be a non-empty string'),
        ('{"type":"text","text":""}', "invalid_text", '"text" must be a non-empty string'),
        ('{"type":"text","text":null}', "invalid_text", '"text" must be a non-empty string'),
        ('{"type":"config"}', "unexpected_config", "the chat is already configured"),
        ('{"type":"flush"}', "unknown_message", "unknown message type 'flush'"),
        ("null", "unknown_message", "unknown message type None"),
        ('{"type":"audio","audio":"A"}', "invalid_base64", "audio must be valid base64"),
    ],
)
def test_client_message_errors(text: str, code: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_client_message(text)
    assert (info.value.code, info.value.message) == (code, message)


# --------------------------------------------------------------------------------- server events


def test_server_events_exact_text() -> None:
    ready = ChatReady("piper/en_US-joe-medium", "pcm", 24000, 16000, "linear16", "llama3.2")
    assert ready.to_text() == (
        '{"type":"ready","voice":"piper/en_US-joe-medium","response_format":"pcm","sample_rate":24000,'
        '"input_sample_rate_hz":16000,"encoding":"linear16","llm_model":"llama3.2"}'
    )
    assert ResponseDone(2, "Par…", True).to_text() == (
        '{"type":"response.done","response_id":2,"text":"Par\\u2026","interrupted":true}'
    )
    assert TranscriptEvent("hi", False, 0.33).to_text() == (
        '{"type":"transcript","text":"hi","is_final":false,"stability":0.33}'
    )
    for event in (ready, DoneEvent(1.5, 36000), SpeechStartedEvent(0.25), ResponseStarted(3, "q")):
        assert parse_server_event(event.to_text()) == event


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type":"flush"}', "unknown_message"),
        ('{"type":"ready","voice":"v"}', "invalid_event"),
        ('{"type":"response.started","response_id":"1","user_text":"q"}', "invalid_event"),
        ('{"type":"response.done","response_id":1,"text":"t","interrupted":"no"}', "invalid_event"),
        ('{"type":"transcript","text":"t","is_final":null}', "invalid_event"),
        ('{"type":"speech_started"}', "invalid_event"),
        ('{"type":"response.text.delta","response_id":1}', "invalid_event"),
    ],
)
def test_server_event_errors(text: str, code: str) -> None:
    assert _error(lambda: parse_server_event(text))[0] == code
