"""voxserve.client.protocol.transcribe: raw PCM up, exact results down."""

from __future__ import annotations

import json

import pytest

from voxserve.client.errors import ClientError
from voxserve.client.events import TranscriptResult
from voxserve.client.protocol.session import AUDIO_FRAME_BYTES
from voxserve.client.protocol.transcribe import transcribe_stream

READY = {
    "type": "ready",
    "sample_rate_hz": 16000,
    "encoding": "linear16",
    "max_message_bytes": 10,
    "idle_timeout_s": 30,
    "max_session_s": 3600,
}


def result(transcript: str, is_final: bool, end: float, confidence: float = 0.0) -> str:
    alternatives = [{"transcript": transcript, "confidence": confidence}]
    r = {"alternatives": alternatives, "is_final": is_final, "stability": 0.9, "result_end_time": end}
    return json.dumps({"type": "result", "results": [r]})


def test_config_then_frames_cut_to_the_servers_limit() -> None:
    p = transcribe_stream(b"", sample_rate_hz=8000, encoding="float32", language=None, interim_results=False)
    assert [json.loads(m) for m in p.start()] == [
        {
            "type": "config",
            "sample_rate_hz": 8000,
            "encoding": "float32",
            "language": None,
            "interim_results": False,
        }
    ]
    assert p.frame_bytes == AUDIO_FRAME_BYTES
    assert p.accept(json.dumps(READY)) == [] and p.opened
    assert p.frame_bytes == 10
    assert p.pieces(bytes(25)) == [bytes(10), bytes(10), bytes(5)]
    assert p.send(b"abc") == b"abc"
    assert [json.loads(m) for m in p.finish()] == [{"type": "end"}]
    with pytest.raises(TypeError, match="must be bytes"):
        p.pieces("text")


def test_results_are_typed() -> None:
    p = transcribe_stream(b"")
    assert p.receive(result("hel", False, 0.5)) == [TranscriptResult("hel", False, 0.9, 0.5)]
    assert p.receive(result("Hello.", True, 1.0, 0.8)) == [TranscriptResult("Hello.", True, 0.9, 1.0, 0.8)]
    assert p.receive('{"type":"lag","lag_ms":900,"dropped_partials":2}') == []
    assert p.receive('{"type":"speech_event","event":"SPEECH_ACTIVITY_BEGIN","time":0.1}') == []
    assert p.receive('{"type":"result","results":[]}') == []
    assert p.closed(1000, "") is None  # a transcription may end at any time


def test_an_error_event_is_raised() -> None:
    p = transcribe_stream(b"")
    with pytest.raises(ClientError) as info:
        p.receive('{"type":"error","code":"transcription_backlog","message":"too fast"}')
    assert (info.value.code, info.value.message) == ("transcription_backlog", "too fast")
