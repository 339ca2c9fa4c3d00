"""Golden tests for :mod:`voxserve.protocol.speak`: raw frames in, exact objects and exact text out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from voxserve.errors import InvalidRequest, InvalidValue, UnknownModel, VoxserveError
from voxserve.protocol import speak
from voxserve.protocol.common import CancelMessage, EndMessage, ErrorEvent, FlushMessage, TextMessage
from voxserve.protocol.speak import (
    CancelledEvent,
    DoneEvent,
    SentenceEvent,
    SpeakConfig,
    SpeakReady,
    Word,
    parse_client_message,
    parse_config,
    parse_server_event,
)


def _code(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(VoxserveError) as info:
        call()
    return info.value.code, info.value.message


def test_formats_match_the_speak_session() -> None:
    from voxserve.tts.stream import STREAM_FORMATS

    assert speak.SPEAK_FORMATS == STREAM_FORMATS


# --------------------------------------------------------------------------------- docs/api.md

DOC_CLIENT = [
    SpeakConfig(voice="alloy", response_format="pcm", speed=1.0),
    TextMessage("Hello"),
    TextMessage(" there, how"),
    FlushMessage(),
    CancelMessage(),
    EndMessage(),
]
DOC_SERVER = [
    SpeakReady("piper/en_US-joe-medium", "pcm", 24000, 1.0),
    SentenceEvent("Hello there, how are you?", 0.0, (Word("Hello", 0.0, 0.41, 0, 5),)),
    CancelledEvent(3),
    DoneEvent(4.96, 119040),
    ErrorEvent("backlog_full", "..."),
]


def test_every_docs_example(api_examples: Callable[[str], list[Any]]) -> None:
    examples = api_examples("WS /v1/stream/speak")
    assert len(examples) == len(DOC_CLIENT) + len(DOC_SERVER)
    client, server = examples[: len(DOC_CLIENT)], examples[len(DOC_CLIENT) :]
    assert parse_config(json.dumps(client[0])) == DOC_CLIENT[0]
    assert [parse_client_message(json.dumps(m)) for m in client[1:]] == DOC_CLIENT[1:]
    assert [parse_server_event(json.dumps(e)) for e in server] == DOC_SERVER
    # Serialising gives back exactly the documented objects.
    assert [m.to_json() for m in DOC_CLIENT] == client
    assert [e.to_json() for e in DOC_SERVER] == server


def test_docs_python_example_messages(api_text: str) -> None:
    # The snippet in docs/api.md sends these; they must parse as documented.
    assert '{"type": "config", "voice": "alloy", "response_format": "pcm"}' in api_text
    assert parse_config('{"type": "config", "voice": "alloy", "response_format": "pcm"}') == SpeakConfig(
        "alloy"
    )


# --------------------------------------------------------------------------------- config


def test_config_defaults_and_exact_text() -> None:
    config = parse_config('{"type":"config"}')
    assert config == SpeakConfig(None, "pcm", 1.0, None)
    assert config.to_text() == '{"type":"config","response_format":"pcm","speed":1.0}'
    full = SpeakConfig("kokoro/jf_alpha(2)+jm_kumo(1)", "opus", 1.5, "kokoro")
    assert full.to_text() == (
        '{"type":"config","voice":"kokoro/jf_alpha(2)+jm_kumo(1)","response_format":"opus","speed":1.5,'
        '"model":"kokoro"}'
    )
    assert parse_config(full.to_text()) == full


def test_config_voice_object_and_int_speed() -> None:
    config = parse_config('{"type":"config","voice":{"id":"alloy"},"speed":2,"extra":[1]}')
    assert config == SpeakConfig("alloy", "pcm", 2.0)
    assert isinstance(config.speed, float)


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b'{"type":"config"}', "invalid_config", 'the first message must be a JSON {"type": "config", ...}'),
        ("", "invalid_config", 'the first message must be a JSON {"type": "config", ...}'),
        ("{", "invalid_config", 'the first message must be a JSON {"type": "config", ...}'),
        ("[" * 100 + "]" * 100, "invalid_config", 'the first message must be a JSON {"type": "config", ...}'),
        ("[]", "invalid_config", 'the first message must be {"type": "config", ...}'),
        (
            '{"type":"text","text":"hi"}',
            "invalid_config",
            'the first message must be {"type": "config", ...}',
        ),
        (
            '{"type":"config","response_format":"aac"}',
            "unsupported_format",
            "response_format must be one of pcm, wav, mp3, opus",
        ),
        (
            '{"type":"config","response_format":["pcm"]}',
            "unsupported_format",
            "response_format must be one of pcm, wav, mp3, opus",
        ),
        ('{"type":"config","speed":5}', "invalid_speed", "speed must be a number from 0.25 to 4.0"),
        ('{"type":"config","speed":0.2}', "invalid_speed", "speed must be a number from 0.25 to 4.0"),
        ('{"type":"config","speed":true}', "invalid_speed", "speed must be a number from 0.25 to 4.0"),
        ('{"type":"config","speed":"1"}', "invalid_speed", "speed must be a number from 0.25 to 4.0"),
        ('{"type":"config","speed":NaN}', "invalid_speed", "speed must be a number from 0.25 to 4.0"),
        ('{"type":"config","voice":null}', "invalid_voice", "voice must be a voice id"),
        ('{"type":"config","voice":5}', "invalid_voice", "voice must be a voice id"),
        (
            '{"type":"config","model":5}',
            "model_not_found",
            "model 5 is not served here; GET /v1/models lists the models",
        ),
    ],
)
def test_config_errors(data: str | bytes, code: str, message: str) -> None:
    assert _code(lambda: parse_config(data)) == (code, message)


def test_config_error_classes() -> None:
    with pytest.raises(InvalidValue):
        parse_config("[]")
    with pytest.raises(UnknownModel) as info:
        parse_config('{"type":"config","model":null}')
    assert info.value.param == "model"


# --------------------------------------------------------------------------------- client messages


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"type":"text","text":"Hello"}', TextMessage("Hello")),
        ('{"type":"text","text":""}', TextMessage("")),
        ('{"type":"flush"}', FlushMessage()),
        ('{"type":"cancel","why":1}', CancelMessage()),
        ('{"type":"end"}', EndMessage()),
    ],
)
def test_client_messages(text: str, message: object) -> None:
    parsed = parse_client_message(text)
    assert parsed == message
    assert json.loads(parsed.to_text()) == {k: v for k, v in json.loads(text).items() if k != "why"}


def test_client_message_exact_text() -> None:
    assert TextMessage('Say "hi" ü').to_text() == '{"type":"text","text":"Say \\"hi\\" \\u00fc"}'
    assert EndMessage().to_text() == '{"type":"end"}'


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"\x00\x01", "unexpected_binary", "send text as JSON text messages"),
        ("", "invalid_json", "text messages must be JSON"),
        ("not json", "invalid_json", "text messages must be JSON"),
        ("[" * 65 + "]" * 65, "invalid_json", "text messages must be JSON"),
        ('{"a":' * 65 + "1" + "}" * 65, "invalid_json", "text messages must be JSON"),
        ("[]", "unknown_message", "unknown message type None"),
        ('{"type":"bogus"}', "unknown_message", "unknown message type 'bogus'"),
        ('{"type":["text"]}', "unknown_message", "unknown message type ['text']"),
        ('{"text":"x"}', "unknown_message", "unknown message type None"),
        ('{"type":"text"}', "invalid_text", '"text" must be a string'),
        ('{"type":"text","text":5}', "invalid_text", '"text" must be a string'),
        ('{"type":"config","voice":"alloy"}', "unexpected_config", "the session is already configured"),
    ],
)
def test_client_message_errors(data: str | bytes, code: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_client_message(data)
    assert (info.value.code, info.value.message) == (code, message)


def test_nesting_at_the_bound_is_accepted() -> None:
    inner = "[" * 63 + "]" * 63
    assert parse_client_message('{"type":"flush","x":' + inner + "}") == FlushMessage()


def test_long_unknown_type_is_quoted_short() -> None:
    code, message = _code(lambda: parse_client_message(json.dumps({"type": "x" * 10_000})))
    assert code == "unknown_message" and len(message) < 100


# --------------------------------------------------------------------------------- server events


def test_server_events_exact_text() -> None:
    sentence = SentenceEvent("Hi.", 1.25, (Word("Hi", 1.25, 1.5, None, None), Word("there", 1.5, 2, 3, 8)))
    assert sentence.to_text() == (
        '{"type":"sentence","text":"Hi.","start_s":1.25,"words":['
        '{"word":"Hi","start_s":1.25,"end_s":1.5,"source_start":null,"source_end":null},'
        '{"word":"there","start_s":1.5,"end_s":2,"source_start":3,"source_end":8}]}'
    )
    assert parse_server_event(sentence.to_text()) == sentence
    assert SpeakReady("espeak/en-us", "wav", 24000, 1.0).to_text() == (
        '{"type":"ready","voice":"espeak/en-us","response_format":"wav","sample_rate":24000,"speed":1.0}'
    )
    assert DoneEvent(0.5, 12000).to_text() == '{"type":"done","audio_s":0.5,"samples":12000}'
    assert CancelledEvent(0).to_text() == '{"type":"cancelled","dropped_fragments":0}'
    assert ErrorEvent("ended", "the session has ended").to_text() == (
        '{"type":"error","code":"ended","message":"the session has ended"}'
    )


def test_error_event_from_error() -> None:
    exc = InvalidValue("text over max_input_chars", code="text_too_long")
    assert ErrorEvent.from_error(exc) == ErrorEvent("text_too_long", "text over max_input_chars")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nope", "invalid_json"),
        (b"\xff", "invalid_json"),
        ('{"type":"speech"}', "unknown_message"),
        ('"ready"', "unknown_message"),
        (
            '{"type":"ready","voice":"v","response_format":"pcm","sample_rate":"24000","speed":1}',
            "invalid_event",
        ),
        (
            '{"type":"ready","voice":"v","response_format":"pcm","sample_rate":true,"speed":1}',
            "invalid_event",
        ),
        ('{"type":"sentence","text":"a","start_s":0,"words":[1]}', "invalid_event"),
        ('{"type":"sentence","text":"a","start_s":0,"words":{}}', "invalid_event"),
        (
            '{"type":"sentence","text":"a","start_s":0,"words":[{"word":"a","start_s":0,"end_s":0,"source_start":1.5}]}',
            "invalid_event",
        ),
        ('{"type":"cancelled"}', "invalid_event"),
        ('{"type":"done","audio_s":"1","samples":1}', "invalid_event"),
        ('{"type":"error","code":1,"message":"m"}', "invalid_event"),
    ],
)
def test_server_event_errors(text: str | bytes, code: str) -> None:
    assert _code(lambda: parse_server_event(text))[0] == code


def test_sentence_without_words() -> None:
    assert parse_server_event('{"type":"sentence","text":"a","start_s":0}') == SentenceEvent("a", 0)
