"""voxserve.client.protocol.speak: feed the server's raw messages, assert the exact typed events."""

from __future__ import annotations

import json

import pytest

from voxserve.client.errors import ClientError
from voxserve.client.events import Sentence, SpeakDone, Word
from voxserve.client.protocol.speak import speak_stream, speak_stream_events

SENTENCE = json.dumps(
    {
        "type": "sentence",
        "text": "Hello there.",
        "start_s": 0.5,
        "words": [{"word": "Hello", "start_s": 0.5, "end_s": 0.8, "source_start": 0, "source_end": 5}],
    }
)
DONE = '{"type":"done","audio_s":1.25,"samples":30000}'


def test_the_handshake_sends_the_config_and_waits_for_ready() -> None:
    p = speak_stream_events("Hi.", voice="alloy", response_format="mp3", speed=1.5, model="tts-1")
    assert [json.loads(m) for m in p.start()] == [
        {"type": "config", "voice": "alloy", "response_format": "mp3", "speed": 1.5, "model": "tts-1"}
    ]
    assert not p.opened
    ready = '{"type":"ready","voice":"piper/x","response_format":"mp3","sample_rate":24000,"speed":1.5}'
    assert p.accept(ready) == []
    assert p.opened
    assert json.loads(speak_stream_events("x").start()[0]) == {
        "type": "config",
        "response_format": "pcm",
        "speed": 1.0,
    }


def test_a_refused_config_is_raised() -> None:
    p = speak_stream_events("Hi.", voice="nobody")
    with pytest.raises(ClientError) as info:
        p.accept('{"type":"error","code":"unknown_voice","message":"unknown voice"}')
    assert (info.value.code, info.value.message, info.value.close_code) == (
        "unknown_voice",
        "unknown voice",
        None,
    )


def test_pieces_and_the_end() -> None:
    p = speak_stream_events("")
    assert p.single()
    assert p.pieces("a" * 2500) == ["a" * 1000, "a" * 1000, "a" * 500]
    assert json.loads(p.send("Hello")) == {"type": "text", "text": "Hello"}
    assert [json.loads(m) for m in p.finish()] == [{"type": "end"}]
    with pytest.raises(TypeError, match="must be str"):
        p.pieces(b"bytes")


def test_events_in_order() -> None:
    p = speak_stream_events("Hello there.")
    assert p.receive(b"\x01\x02") == [b"\x01\x02"]
    assert p.receive(SENTENCE) == [Sentence("Hello there.", 0.5, (Word("Hello", 0.5, 0.8, 0, 5),))]
    assert p.receive('{"type":"cancelled","dropped_fragments":0}') == []
    assert p.receive('{"type":"something.new","x":1}') == []  # a newer server's event is skipped
    assert p.closed(1000, "") is not None  # closed before "done"
    assert p.receive(DONE) == [SpeakDone(1.25)]
    assert p.closed(1000, "") is None


def test_error_events_and_bad_messages_raise() -> None:
    p = speak_stream_events("x")
    with pytest.raises(ClientError) as info:
        p.receive('{"type":"error","code":"backlog_full","message":"too much text"}')
    assert info.value.code == "backlog_full"
    for bad in ("<html>", '{"type":"sentence","text":5,"start_s":0}'):
        with pytest.raises(ClientError) as info:
            p.receive(bad)
        assert info.value.code == "invalid_event"


def test_a_close_before_done_names_the_reason() -> None:
    p = speak_stream_events("x")
    error = p.closed(1000, "idle")
    assert error is not None and (error.code, error.message, error.close_code) == ("closed", "idle", 1000)
    error = p.closed(1000, "")
    assert error is not None and error.message == "the server closed the session before it was done"


def test_flow_control_keeps_the_unspoken_text_under_the_limit() -> None:
    p = speak_stream_events("", max_pending_chars=20)
    assert p.can_send("x" * 50)  # nothing unspoken: one piece may always go
    p.send("Hello there.")  # 12 unspoken
    assert p.can_send("x" * 8)
    assert not p.can_send("x" * 9)
    p.receive(SENTENCE)  # "Hello there." was spoken
    assert p.can_send("x" * 20)


def test_audio_only_hands_sentences_to_the_callback() -> None:
    heard: list[Sentence] = []
    p = speak_stream("x", on_sentence=heard.append)
    assert p.receive(SENTENCE) == []
    assert p.receive(b"audio") == [b"audio"]
    assert p.receive(DONE) == []
    assert [s.text for s in heard] == ["Hello there."]
    assert p.closed(1000, "") is None
    assert speak_stream("x").receive(SENTENCE) == []  # no callback: dropped
