"""Golden tests for :mod:`voxserve.protocol.speech`: the SSE events of the speech and transcription
routes, exact bytes out and typed objects in."""

from __future__ import annotations

import pytest

from voxserve.errors import EngineFailure, InvalidRequest
from voxserve.protocol.speech import (
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechAudioError,
    TranscriptionError,
    TranscriptTextDelta,
    TranscriptTextDone,
    parse_speech_event,
    parse_transcription_event,
)


def test_docs_inline_examples(api_text: str) -> None:
    delta = '{"type":"speech.audio.delta","audio":"<base64>"}'
    assert f"data: {delta}" in api_text
    with pytest.raises(InvalidRequest) as info:  # the placeholder is not base64
        parse_speech_event(delta)
    assert info.value.code == "invalid_base64"
    assert '{"type":"speech.audio.done","usage":{...}}' in api_text
    assert '{"type":"speech.audio.error","error":{...}}' in api_text
    assert '{"type":"transcript.text.delta","delta":"..."}' in api_text
    assert parse_transcription_event('{"type":"transcript.text.delta","delta":"..."}') == TranscriptTextDelta(
        "..."
    )
    assert '{"type":"transcript.text.done","text":"<full text>"}' in api_text
    assert parse_transcription_event(
        '{"type":"transcript.text.done","text":"<full text>"}'
    ) == TranscriptTextDone("<full text>")


def test_speech_events_exact_bytes() -> None:
    assert (
        SpeechAudioDelta(b"\x00\x01\x02").to_sse()
        == b'data: {"type":"speech.audio.delta","audio":"AAEC"}\n\n'
    )
    done = SpeechAudioDone.for_speech(15, 2)
    assert done.to_sse() == (
        b'data: {"type":"speech.audio.done","usage":{"input_tokens":15,"output_tokens":2,'
        b'"total_tokens":17}}\n\n'
    )
    error = SpeechAudioError.from_error(EngineFailure("the worker died", code="worker_crashed"))
    assert error.to_sse() == (
        b'data: {"type":"speech.audio.error","error":{"type":"server_error","code":"worker_crashed",'
        b'"message":"the worker died"}}\n\n'
    )
    for event in (SpeechAudioDelta(b"\x00\x01\x02"), done, error):
        assert parse_speech_event(event.to_text()) == event


def test_transcription_events_exact_bytes() -> None:
    assert (
        TranscriptTextDelta(" Grüße").to_sse()
        == 'data: {"type":"transcript.text.delta","delta":" Grüße"}\n\n'.encode()
    )
    assert (
        TranscriptTextDone("Grüße.").to_sse()
        == 'data: {"type":"transcript.text.done","text":"Grüße."}\n\n'.encode()
    )
    failed = TranscriptionError("transcription_failed", "transcription failed")
    assert failed.to_sse() == (
        b'data: {"type":"error","error":{"type":"server_error","code":"transcription_failed",'
        b'"message":"transcription failed"}}\n\n'
    )
    untyped = TranscriptionError("empty_audio", "no audio", None)
    assert untyped.to_text() == '{"type":"error","error":{"code":"empty_audio","message":"no audio"}}'
    for event in (TranscriptTextDelta("a"), TranscriptTextDone("b"), failed, untyped):
        assert parse_transcription_event(event.to_text()) == event
    assert TranscriptTextDelta("\ud800").to_sse() == b'data: {"type":"transcript.text.delta","delta":"?"}\n\n'


def test_transcription_error_from_error() -> None:
    event = TranscriptionError.from_error(InvalidRequest("bad", code="empty_audio"))
    assert event == TranscriptionError("empty_audio", "bad", "invalid_request_error")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("", "invalid_json"),
        ("[DONE]", "invalid_json"),
        ("[1]", "invalid_event"),
        ('{"type":"speech.audio.delta"}', "invalid_event"),
        ('{"type":"speech.audio.delta","audio":"AA"}', "invalid_base64"),
        ('{"type":"speech.audio.delta","audio":"ÄÄÄÄ"}', "invalid_base64"),
        ('{"type":"speech.audio.done","usage":{"input_tokens":1}}', "invalid_event"),
        ('{"type":"speech.audio.error","error":"boom"}', "invalid_event"),
        ('{"type":"transcript.text.delta","delta":"a"}', "unknown_event"),
    ],
)
def test_speech_event_errors(data: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_speech_event(data)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("nope", "invalid_json"),
        ('"x"', "invalid_event"),
        ('{"type":"transcript.text.delta","delta":1}', "invalid_event"),
        ('{"type":"transcript.text.done"}', "invalid_event"),
        ('{"type":"error","error":{"code":"c"}}', "invalid_event"),
        ('{"type":"speech.audio.done"}', "unknown_event"),
    ],
)
def test_transcription_event_errors(data: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_transcription_event(data)
    assert info.value.code == code
