"""Golden tests for :mod:`voxserve.protocol.realtime` and :mod:`.realtime_session`: both dialects,
raw events in, exact objects, exact errors (code, param, event_id) and exact text out."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from voxserve.errors import InvalidRequest, UnknownModel
from voxserve.protocol import realtime as rt
from voxserve.protocol.realtime import (
    KEEP,
    Cleared,
    Committed,
    ConversationItemAdded,
    ConversationItemCreated,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    InvalidClientEvent,
    RealtimeErrorEvent,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    TranscriptionSession,
    TranscriptionSessionCreated,
    TranscriptionSessionUpdate,
    TranscriptionSessionUpdated,
    TurnDetection,
    dialect_from_headers,
    parse_client_message,
    parse_server_event,
)


def _update(text: str) -> TranscriptionSessionUpdate | SessionUpdate:
    update = parse_client_message(text)
    assert isinstance(update, TranscriptionSessionUpdate | SessionUpdate)
    return update


TD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
SESSION = TranscriptionSession(max_message_bytes=262144)


# ----------------------------------------------------------------------------------- dialect


@pytest.mark.parametrize(
    ("headers", "dialect"),
    [
        ({"OpenAI-Beta": "realtime=v1"}, "beta"),
        ({"openai-beta": "assistants=v2, Realtime=V1"}, "beta"),
        ([(b"openai-beta", b"realtime=v1")], "beta"),
        ([("Host", "x"), ("OpenAI-Beta", "assistants=v2"), ("OpenAI-Beta", "realtime=v1")], "beta"),
        ({}, "ga"),
        ({"OpenAI-Beta": "realtime=v2"}, "ga"),
        ({"OpenAI-Beta": "realtime=v10"}, "ga"),
        ({"X-OpenAI-Beta": "realtime=v1"}, "ga"),
        ({"Authorization": "Bearer realtime=v1"}, "ga"),
    ],
)
def test_dialect_from_headers(headers: Any, dialect: str) -> None:
    assert dialect_from_headers(headers) == dialect


# ----------------------------------------------------------------------------------- session


def test_session_objects_exact() -> None:
    transcription = {"model": "whisper-1", "language": "en", "prompt": ""}
    assert SESSION.to_json("beta") == {
        "object": "realtime.transcription_session",
        "input_audio_format": "pcm16",
        "input_audio_transcription": transcription,
        "turn_detection": TD,
        "max_message_bytes": 262144,
    }
    assert SESSION.to_json("ga") == {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": transcription,
                "turn_detection": TD,
            }
        },
        "max_message_bytes": 262144,
    }
    ulaw = TranscriptionSession("g711_ulaw", turn_detection=None)
    assert ulaw.to_json("ga")["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert ulaw.to_json("ga")["audio"]["input"]["turn_detection"] is None
    assert "max_message_bytes" not in ulaw.to_json("beta")


@pytest.mark.parametrize("dialect", ["beta", "ga"])
def test_session_events_round_trip(dialect: rt.Dialect) -> None:
    for session in (SESSION, TranscriptionSession("g711_alaw", "base", None, "names", None)):
        for event in (rt.session_created(dialect, session), rt.session_updated(dialect, session)):
            assert parse_server_event(event.to_text()) == event
    assert type(rt.session_created("beta", SESSION)) is TranscriptionSessionCreated
    assert type(rt.session_updated("beta", SESSION)) is TranscriptionSessionUpdated
    assert type(rt.session_created("ga", SESSION)) is SessionCreated
    assert type(rt.session_updated("ga", SESSION)) is SessionUpdated


def test_session_event_exact_text() -> None:
    event = SessionCreated(TranscriptionSession("g711_alaw", turn_detection=None), event_id="event_1")
    assert event.to_text() == (
        '{"type":"session.created","session":{"type":"transcription","object":"realtime.transcription_session",'
        '"audio":{"input":{"format":{"type":"audio/pcma"},"transcription":{"model":"whisper-1","language":"en",'
        '"prompt":""},"turn_detection":null}}},"event_id":"event_1"}'
    )


def test_event_ids_are_fresh() -> None:
    a, b = Cleared(), Cleared()
    assert re.fullmatch(r"event_[0-9a-f]{16}", a.event_id) and a.event_id != b.event_id


# ----------------------------------------------------------------------------------- updates


def test_beta_update_parse_and_apply() -> None:
    text = json.dumps(
        {
            "type": "transcription_session.update",
            "event_id": "evt_1",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "base", "language": "de", "prompt": "Namen"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 800, "create_response": True},
            },
        }
    )
    update = parse_client_message(text)
    assert update == TranscriptionSessionUpdate(
        "g711_ulaw",
        "base",
        "de",
        "Namen",
        TurnDetection(None, None, 800, {"create_response": True}),
        event_id="evt_1",
    )
    assert json.loads(update.to_text()) == {
        **json.loads(text),
        "session": {
            **json.loads(text)["session"],
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800, "create_response": True},
        },
    }
    session = SESSION.apply(update)
    assert session == TranscriptionSession(
        "g711_ulaw", "base", "de", "Namen", TurnDetection(0.5, 300, 800, {"create_response": True}), 262144
    )
    assert session.to_json("beta")["turn_detection"] == {
        **TD,
        "silence_duration_ms": 800,
        "create_response": True,
    }


def test_beta_update_keeps_what_it_does_not_name() -> None:
    update = parse_client_message('{"type":"transcription_session.update","session":{}}')
    assert update == TranscriptionSessionUpdate()
    assert update.to_text() == '{"type":"transcription_session.update","session":{}}'
    assert SESSION.apply(update) == SESSION
    # input_audio_transcription null or [] reads as {} (as the server always took it)
    for value in ("null", "[]", "0", '""'):
        parsed = _update(
            '{"type":"transcription_session.update","session":{"input_audio_transcription":' + value + "}}"
        )
        assert SESSION.apply(parsed) == SESSION


def test_turn_detection_null_then_back() -> None:
    manual = SESSION.apply(TranscriptionSessionUpdate(turn_detection=None))
    assert manual.turn_detection is None
    assert manual.to_json("beta")["turn_detection"] is None
    back = manual.apply(
        _update(
            '{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"type":"server_vad"}}}}}'
        )
    )
    # As before: merged into nothing, so only the type is reported (the server's defaults apply).
    assert back.turn_detection == TurnDetection(None, None, None)
    assert back.to_json("ga")["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
    partial = manual.apply(
        TranscriptionSessionUpdate(
            turn_detection=TurnDetection(threshold=0.7, prefix_padding_ms=None, silence_duration_ms=None)
        )
    )
    assert partial.to_json("beta")["turn_detection"] == {"type": "server_vad", "threshold": 0.7}


def test_language_and_prompt_normalised_by_apply() -> None:
    update = parse_client_message(
        '{"type":"transcription_session.update","session":{"input_audio_transcription":{"language":"","prompt":null}}}'
    )
    assert update == TranscriptionSessionUpdate(language="", prompt=None)
    session = TranscriptionSession(prompt="old").apply(update)
    assert (session.language, session.prompt, session.model) == (None, "", "whisper-1")
    assert TranscriptionSession().apply(TranscriptionSessionUpdate(language=None)).language is None


def test_ga_update_parse_and_apply() -> None:
    text = json.dumps(
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "whisper-1", "language": None},
                        "turn_detection": None,
                    }
                },
            },
        }
    )
    update = parse_client_message(text)
    assert update == SessionUpdate("g711_ulaw", "whisper-1", None, KEEP, None)
    assert json.loads(update.to_text()) == json.loads(text)
    session = SESSION.apply(update)
    assert (session.input_audio_format, session.language, session.turn_detection) == ("g711_ulaw", None, None)


def test_ga_update_without_format_means_pcm16() -> None:
    ulaw = TranscriptionSession("g711_ulaw")
    for session in (
        '{"type":"transcription"}',
        '{"audio":{"input":{"format":null}}}',
        '{"audio":{"input":{"format":{}}}}',
    ):
        update = _update('{"type":"session.update","session":' + session + "}")
        assert ulaw.apply(update).input_audio_format == "pcm16"
    assert SessionUpdate(KEEP).to_json() == {
        "type": "session.update",
        "session": {"type": "transcription", "audio": {"input": {}}},
    }
    assert SessionUpdate(session_type=None).to_json()["session"] == {
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}
    }


def test_current_client_update_parses() -> None:
    # What voxserve's client sent before the protocol package: must keep meaning the same.
    sent = {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1", "language": "en", "prompt": "Voxserve"},
                    "turn_detection": {"type": "server_vad"},
                }
            },
        },
    }
    update = parse_client_message(json.dumps(sent))
    assert update == SessionUpdate("pcm16", "whisper-1", "en", "Voxserve", TurnDetection(None, None, None))
    assert update.to_json() == sent


_BETA = "transcription_session.update"


@pytest.mark.parametrize(
    ("kind", "session", "code", "message", "param"),
    [
        (_BETA, "null", "invalid_session", "session must be an object", "session"),
        ("session.update", "[]", "invalid_session", "session must be an object", "session"),
        (
            _BETA,
            '{"input_audio_format":"mp3"}',
            "unsupported_format",
            "unsupported input audio format 'mp3'",
            None,
        ),
        (
            _BETA,
            '{"input_audio_format":null}',
            "unsupported_format",
            "unsupported input audio format None",
            None,
        ),
        (
            _BETA,
            '{"input_audio_format":["pcm16"]}',
            "unsupported_format",
            "unsupported input audio format ['pcm16']",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":{"type":"semantic_vad"}}',
            "unsupported_turn_detection",
            "turn_detection must be server_vad or null",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":"server_vad"}',
            "unsupported_turn_detection",
            "turn_detection must be server_vad or null",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":{"threshold":1.5}}',
            "invalid_value",
            "turn_detection.threshold must be a number from 0.0 to 1.0",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":{"threshold":NaN}}',
            "invalid_value",
            "turn_detection.threshold must be a number from 0.0 to 1.0",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":{"silence_duration_ms":true}}',
            "invalid_value",
            "turn_detection.silence_duration_ms must be a number from 0 to 60000",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":{"prefix_padding_ms":-1}}',
            "invalid_value",
            "turn_detection.prefix_padding_ms must be a number from 0 to 60000",
            None,
        ),
        (
            _BETA,
            '{"turn_detection":{"prefix_padding_ms":null}}',
            "invalid_value",
            "turn_detection.prefix_padding_ms must be a number from 0 to 60000",
            None,
        ),
        (
            _BETA,
            '{"input_audio_transcription":"whisper-1"}',
            "invalid_value",
            "transcription must be an object",
            None,
        ),
        (
            _BETA,
            '{"input_audio_transcription":{"model":null}}',
            "invalid_value",
            "transcription.model must be a string",
            None,
        ),
        (
            _BETA,
            '{"input_audio_transcription":{"model":1}}',
            "invalid_value",
            "transcription.model must be a string",
            None,
        ),
        (
            _BETA,
            '{"input_audio_transcription":{"language":["en"]}}',
            "invalid_value",
            "transcription.language must be a string",
            None,
        ),
        (
            _BETA,
            '{"input_audio_transcription":{"prompt":5}}',
            "invalid_value",
            "transcription.prompt must be a string",
            None,
        ),
        ("session.update", '{"audio":5}', "invalid_value", "session.audio must be an object", None),
        ("session.update", '{"audio":{"input":[]}}', "invalid_value", "audio.input must be an object", None),
        (
            "session.update",
            '{"audio":{"input":{"format":"audio/pcm"}}}',
            "invalid_value",
            "audio.input.format must be an object",
            None,
        ),
        (
            "session.update",
            '{"audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}',
            "unsupported_format",
            "audio/pcm must be 24000 Hz",
            None,
        ),
        (
            "session.update",
            '{"audio":{"input":{"format":{"type":"audio/pcm","rate":true}}}}',
            "unsupported_format",
            "audio/pcm must be 24000 Hz",
            None,
        ),
        (
            "session.update",
            '{"audio":{"input":{"format":{"type":"pcm16"}}}}',
            "unsupported_format",
            "unsupported input audio format '?'",
            None,
        ),
        (
            "session.update",
            '{"audio":{"input":{"format":{"type":["audio/pcm"]}}}}',
            "unsupported_format",
            "unsupported input audio format '?'",
            None,
        ),
        (
            "session.update",
            '{"audio":{"input":{"turn_detection":{"type":"semantic_vad"}}}}',
            "unsupported_turn_detection",
            "turn_detection must be server_vad or null",
            None,
        ),
        (
            "session.update",
            '{"audio":{"input":{"transcription":{"prompt":{}}}}}',
            "invalid_value",
            "transcription.prompt must be a string",
            None,
        ),
    ],
)
def test_update_errors(kind: str, session: str, code: str, message: str, param: str | None) -> None:
    text = '{"type":"' + kind + '","event_id":"evt_9","session":' + session + "}"
    with pytest.raises(InvalidClientEvent) as info:
        parse_client_message(text)
    exc = info.value
    assert (exc.code, exc.message, exc.param, exc.event_id) == (code, message, param, "evt_9")
    assert RealtimeErrorEvent.from_error(exc, None).to_json()["error"] == {
        "type": "invalid_request_error",
        "code": code,
        "message": message,
        "param": param,
        "event_id": "evt_9",
    }


def test_ga_format_rate_24000_float_is_accepted() -> None:
    fmt = '{"type":"audio/pcm","rate":24000.0}'
    text = '{"type":"session.update","session":{"audio":{"input":{"format":' + fmt + "}}}}"
    assert parse_client_message(text) == SessionUpdate(session_type=None)


# ----------------------------------------------------------------------------------- client events


def test_client_events_exact_text() -> None:
    assert (
        InputAudioBufferAppend(b"\x00\x01").to_text() == '{"type":"input_audio_buffer.append","audio":"AAE="}'
    )
    assert InputAudioBufferCommit(event_id="voxserve_client_commit").to_text() == (
        '{"type":"input_audio_buffer.commit","event_id":"voxserve_client_commit"}'
    )
    assert InputAudioBufferClear().to_text() == '{"type":"input_audio_buffer.clear"}'
    assert (
        TranscriptionSessionUpdate(event_id="e").to_text()
        == '{"type":"transcription_session.update","event_id":"e","session":{}}'
    )


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ('{"type":"input_audio_buffer.append","audio":"AAE="}', InputAudioBufferAppend(b"\x00\x01")),
        (
            '{"type":"input_audio_buffer.append","audio":"","event_id":"a"}',
            InputAudioBufferAppend(b"", event_id="a"),
        ),
        ('{"type":"input_audio_buffer.commit","event_id":"c"}', InputAudioBufferCommit(event_id="c")),
        ('{"type":"input_audio_buffer.commit","event_id":5}', InputAudioBufferCommit()),
        ('{"type":"input_audio_buffer.clear"}', InputAudioBufferClear()),
    ],
)
def test_client_events_parse(text: str, event: object) -> None:
    assert parse_client_message(text) == event


@pytest.mark.parametrize(
    ("data", "code", "message", "param", "event_id"),
    [
        (b"\x00", "invalid_event", "events must be JSON text messages", None, None),
        ("{", "invalid_json", "the event is not valid JSON", None, None),
        ("[" * 100_000, "invalid_json", "the event is not valid JSON", None, None),
        ("[]", "invalid_event", "the event must be a JSON object", None, None),
        ('"input_audio_buffer.commit"', "invalid_event", "the event must be a JSON object", None, None),
        (
            '{"type":"response.create","event_id":"r1"}',
            "unknown_event",
            "unknown event type 'response.create'",
            "type",
            "r1",
        ),
        ('{"event_id":"r2"}', "unknown_event", "unknown event type None", "type", "r2"),
        ('{"type":{"a":1}}', "unknown_event", "unknown event type {'a': 1}", "type", None),
        (
            '{"type":"input_audio_buffer.append","event_id":"a1"}',
            "invalid_audio",
            "audio must be a base64 string",
            "audio",
            "a1",
        ),
        (
            '{"type":"input_audio_buffer.append","audio":12}',
            "invalid_audio",
            "audio must be a base64 string",
            "audio",
            None,
        ),
        (
            '{"type":"input_audio_buffer.append","audio":"AAE"}',
            "invalid_base64",
            "audio must be valid base64",
            "audio",
            None,
        ),
        (
            '{"type":"input_audio_buffer.append","audio":"AA\\nE="}',
            "invalid_base64",
            "audio must be valid base64",
            "audio",
            None,
        ),
        (
            '{"type":"input_audio_buffer.append","audio":"ü==="}',
            "invalid_base64",
            "audio must be valid base64",
            "audio",
            None,
        ),
    ],
)
def test_client_event_errors(
    data: str | bytes, code: str, message: str, param: str | None, event_id: str | None
) -> None:
    with pytest.raises(InvalidClientEvent) as info:
        parse_client_message(data)
    exc = info.value
    assert (exc.code, exc.message, exc.param, exc.event_id) == (code, message, param, event_id)
    assert isinstance(exc, InvalidRequest)


# ----------------------------------------------------------------------------------- server events


def test_server_events_exact_text() -> None:
    cases = [
        (
            SpeechStarted(420, "item_1", event_id="e1"),
            '{"type":"input_audio_buffer.speech_started","audio_start_ms":420,"item_id":"item_1","event_id":"e1"}',
        ),
        (
            SpeechStopped(1300, "item_1", event_id="e2"),
            '{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1300,"item_id":"item_1","event_id":"e2"}',
        ),
        (
            Committed("item_1", None, event_id="e3"),
            '{"type":"input_audio_buffer.committed","item_id":"item_1","previous_item_id":null,"event_id":"e3"}',
        ),
        (
            ConversationItemCreated("item_2", "item_1", event_id="e4"),
            '{"type":"conversation.item.created","previous_item_id":"item_1","item":{"id":"item_2","object":"realtime.item",'
            '"type":"message","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]},"event_id":"e4"}',
        ),
        (
            TranscriptionDelta("item_1", "Hello", event_id="e5"),
            '{"type":"conversation.item.input_audio_transcription.delta","item_id":"item_1","content_index":0,"delta":"Hello","event_id":"e5"}',
        ),
        (
            TranscriptionCompleted("item_1", "Hello there.", 1.234, event_id="e6"),
            '{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_1","content_index":0,'
            '"transcript":"Hello there.","usage":{"type":"duration","seconds":1.234},"event_id":"e6"}',
        ),
        (
            TranscriptionFailed("item_1", event_id="e7"),
            '{"type":"conversation.item.input_audio_transcription.failed","item_id":"item_1","content_index":0,'
            '"error":{"type":"server_error","code":"transcription_failed","message":"decode failed"},'
            '"event_id":"e7"}',
        ),
        (Cleared(event_id="e8"), '{"type":"input_audio_buffer.cleared","event_id":"e8"}'),
        (
            RealtimeErrorEvent(
                "input_audio_buffer_commit_empty", "buffer too small", None, "c1", event_id="e9"
            ),
            '{"type":"error","error":{"type":"invalid_request_error","code":"input_audio_buffer_commit_empty",'
            '"message":"buffer too small","param":null,"event_id":"c1"},"event_id":"e9"}',
        ),
    ]
    for event, text in cases:
        assert event.to_text() == text
        assert parse_server_event(text) == event


def test_item_created_by_dialect() -> None:
    assert type(rt.item_created("beta", "i", None)) is ConversationItemCreated
    added = rt.item_created("ga", "i2", "i")
    assert type(added) is ConversationItemAdded and added.to_json()["type"] == "conversation.item.added"
    assert parse_server_event(added.to_text()) == added


def test_error_event_from_server_error() -> None:
    exc = UnknownModel("model 'x' is not served here", param="model")
    event = RealtimeErrorEvent.from_error(exc, "upd_1")
    assert event.to_json()["error"] == {
        "type": "invalid_request_error",
        "code": "model_not_found",
        "message": "model 'x' is not served here",
        "param": "model",
        "event_id": "upd_1",
    }


def test_parse_openai_style_events() -> None:
    # OpenAI's own servers send null codes, token usage and no event_id in places: still typed.
    error = parse_server_event(
        '{"type":"error","error":{"type":"invalid_request_error","code":null,"message":"m"}}'
    )
    assert error == RealtimeErrorEvent("", "m", None, None, event_id="")
    done = parse_server_event(
        '{"type":"conversation.item.input_audio_transcription.completed","event_id":"x","item_id":"i",'
        '"content_index":0,"transcript":"t","usage":{"type":"tokens","total_tokens":5}}'
    )
    assert done == TranscriptionCompleted("i", "t", None, event_id="x")
    assert "usage" not in done.to_json()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nope", "invalid_json"),
        ("[1]", "invalid_event"),
        ('{"type":"response.done"}', "unknown_event"),
        ('{"type":"session.created"}', "invalid_event"),
        ('{"type":"session.created","session":{"audio":[]}}', "invalid_event"),
        (
            '{"type":"transcription_session.created","session":{"input_audio_transcription":5}}',
            "invalid_event",
        ),
        (
            '{"type":"transcription_session.created","session":{"turn_detection":{"type":"semantic_vad"}}}',
            "unsupported_turn_detection",
        ),
        ('{"type":"transcription_session.created","session":{"max_message_bytes":"1"}}', "invalid_event"),
        ('{"type":"input_audio_buffer.speech_started","audio_start_ms":1.5,"item_id":"i"}', "invalid_event"),
        ('{"type":"input_audio_buffer.committed","item_id":"i","previous_item_id":3}', "invalid_event"),
        ('{"type":"conversation.item.created","item":[]}', "invalid_event"),
        ('{"type":"conversation.item.input_audio_transcription.delta","item_id":"i"}', "invalid_event"),
        (
            '{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","transcript":"t","usage":{"type":"duration"}}',
            "invalid_event",
        ),
        ('{"type":"conversation.item.input_audio_transcription.failed","item_id":"i"}', "invalid_event"),
        ('{"type":"input_audio_buffer.cleared","event_id":1}', "invalid_event"),
        ('{"type":"error","error":{"message":5}}', "invalid_event"),
    ],
)
def test_server_event_errors(text: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_server_event(text)
    assert info.value.code == code


def test_session_from_json_defaults() -> None:
    event = parse_server_event('{"type":"session.created","session":{},"event_id":"e"}')
    assert event == SessionCreated(TranscriptionSession(language=None, turn_detection=None), event_id="e")


# ----------------------------------------------------------------------------------- hints and logprobs


def test_keywords_languages_and_include_both_dialects_golden() -> None:
    ga = _update(
        '{"type":"session.update","event_id":"u1","session":{"type":"transcription","include":'
        '["item.input_audio_transcription.logprobs"],"audio":{"input":{"transcription":{"model":'
        '"gpt-live-transcribe","keywords":["Voxserve","Linnell"],"languages":["en","fr"]}}}}}'
    )
    assert ga == SessionUpdate(
        "pcm16",
        "gpt-live-transcribe",
        event_id="u1",
        keywords=("Voxserve", "Linnell"),
        languages=("en", "fr"),
        include=(rt.INCLUDE_LOGPROBS,),
    )
    assert _update(ga.to_text()) == ga
    beta = _update(
        '{"type":"transcription_session.update","session":{"include":null,"input_audio_transcription":'
        '{"keywords":null,"languages":["de"]}}}'
    )
    assert beta == TranscriptionSessionUpdate(keywords=None, languages=("de",), include=None)
    assert beta.to_json()["session"] == {
        "input_audio_transcription": {"keywords": None, "languages": ["de"]},
        "include": None,
    }
    session = SESSION.apply(ga)
    assert (session.keywords, session.languages, session.logprobs) == (
        ("Voxserve", "Linnell"),
        ("en", "fr"),
        True,
    )
    assert session.apply(beta) == TranscriptionSession(
        model="gpt-live-transcribe", max_message_bytes=262144, languages=("de",)
    )
    assert SESSION.apply(SessionUpdate()).keywords == ()  # absent: kept (empty)
    event = SessionUpdated(session, event_id="e1")
    assert event.to_text() == (
        '{"type":"session.updated","session":{"type":"transcription","object":"realtime.transcription_session",'
        '"audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"transcription":{"model":'
        '"gpt-live-transcribe","language":"en","prompt":"","keywords":["Voxserve","Linnell"],'
        '"languages":["en","fr"]},"turn_detection":{"type":"server_vad","threshold":0.5,'
        '"prefix_padding_ms":300,"silence_duration_ms":500}}},'
        '"include":["item.input_audio_transcription.logprobs"],"max_message_bytes":262144},"event_id":"e1"}'
    )
    assert parse_server_event(event.to_text()) == event
    beta_event = TranscriptionSessionUpdated(session, event_id="e2")
    assert beta_event.to_json()["session"]["input_audio_transcription"]["keywords"] == ["Voxserve", "Linnell"]
    assert parse_server_event(beta_event.to_text()) == beta_event


@pytest.mark.parametrize(
    ("session", "code"),
    [
        ('{"audio":{"input":{"transcription":{"keywords":"Voxserve"}}}}', "invalid_value"),
        ('{"audio":{"input":{"transcription":{"languages":[1]}}}}', "invalid_value"),
        ('{"include":["item.input_audio_transcription.text"]}', "invalid_value"),
        ('{"include":"item.input_audio_transcription.logprobs"}', "invalid_value"),
    ],
)
def test_bad_hints_are_refused(session: str, code: str) -> None:
    with pytest.raises(InvalidClientEvent) as info:
        parse_client_message(f'{{"type":"session.update","event_id":"u","session":{session}}}')
    assert (info.value.code, info.value.event_id) == (code, "u")


def test_logprobs_on_deltas_and_completions_golden() -> None:
    lp = (rt.Logprob(" Hi", -0.105361, (32, 72, 105)),)
    delta = TranscriptionDelta("item_1", "Hi", logprobs=lp, event_id="e1")
    assert delta.to_text() == (
        '{"type":"conversation.item.input_audio_transcription.delta","item_id":"item_1","content_index":0,'
        '"delta":"Hi","logprobs":[{"token":" Hi","logprob":-0.105361,"bytes":[32,72,105]}],"event_id":"e1"}'
    )
    assert parse_server_event(delta.to_text()) == delta
    done = TranscriptionCompleted("item_1", "Hi", 0.5, logprobs=lp, event_id="e2")
    assert done.to_text() == (
        '{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_1","content_index":0,'
        '"transcript":"Hi","usage":{"type":"duration","seconds":0.5},'
        '"logprobs":[{"token":" Hi","logprob":-0.105361,"bytes":[32,72,105]}],"event_id":"e2"}'
    )
    assert parse_server_event(done.to_text()) == done
    empty = TranscriptionCompleted("item_1", "", 0.5, logprobs=(), event_id="e3")
    assert empty.to_json()["logprobs"] == [] and parse_server_event(empty.to_text()) == empty
    with pytest.raises(InvalidRequest):
        parse_server_event(
            '{"type":"conversation.item.input_audio_transcription.delta","item_id":"i","delta":"x",'
            '"logprobs":[{"token":"x","logprob":-1,"bytes":[true]}]}'
        )
