"""voxserve.client.protocol.realtime: the GA handshake, appends, and when a session is finished."""

from __future__ import annotations

import base64
import json

import pytest

from voxserve.client.errors import ClientError
from voxserve.client.events import RealtimeCompleted, RealtimeDelta, RealtimeFailed
from voxserve.client.protocol.realtime import APPEND_BYTES, realtime_transcribe

ITEM = "conversation.item.input_audio_transcription"


def test_the_update_follows_the_first_event() -> None:
    p = realtime_transcribe(b"", language="fr", prompt="names", turn_detection=None)
    assert p.start() == []
    (update,) = p.accept('{"type":"session.created","event_id":"e1","session":{"type":"transcription"}}')
    assert json.loads(update) == {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1", "language": "fr", "prompt": "names"},
                    "turn_detection": None,
                }
            },
        },
    }
    assert not p.opened
    with pytest.raises(ClientError) as info:
        p.accept('{"type":"session.created","event_id":"e2"}')
    assert info.value.code == "unexpected_event"
    p.accept('{"type":"session.updated","event_id":"e3"}')
    assert p.opened


def test_g711_and_server_vad() -> None:
    p = realtime_transcribe(b"", audio_format="audio/pcmu")
    audio_input = p.update["session"]["audio"]["input"]
    assert audio_input["format"] == {"type": "audio/pcmu"}
    assert audio_input["turn_detection"] == {"type": "server_vad"}


def test_appends_then_commit_and_barrier() -> None:
    p = realtime_transcribe(b"")
    assert p.pieces(bytes(APPEND_BYTES + 1)) == [bytes(APPEND_BYTES), bytes(1)]
    append = json.loads(p.send(b"\x01\x02"))
    assert (append["type"], base64.b64decode(append["audio"])) == ("input_audio_buffer.append", b"\x01\x02")
    commit, barrier = (json.loads(m) for m in p.finish())
    assert (commit["type"], commit["event_id"]) == ("input_audio_buffer.commit", "voxserve_client_commit")
    assert (barrier["type"], barrier["event_id"]) == ("input_audio_buffer.clear", "voxserve_client_end")


def event(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, "event_id": "ev", **fields})


def test_finished_once_every_committed_item_has_its_transcript() -> None:
    p = realtime_transcribe(b"")
    assert p.receive(event("input_audio_buffer.committed", item_id="a")) == []
    assert p.receive(event("input_audio_buffer.committed", item_id="b", previous_item_id="a")) == []
    delta = event(f"{ITEM}.delta", item_id="a", content_index=0, delta="Hi")
    assert p.receive(delta) == [RealtimeDelta("a", "Hi")]
    empty = {"type": "invalid_request_error", "code": "input_audio_buffer_commit_empty", "message": "empty"}
    assert p.receive(event("error", error={**empty, "event_id": "voxserve_client_commit"})) == []
    assert p.receive(event("input_audio_buffer.cleared")) == []
    assert not p.finished
    done = event(f"{ITEM}.completed", item_id="a", content_index=0, transcript="Hi.")
    assert p.receive(done) == [RealtimeCompleted("a", "Hi.")]
    assert not p.finished and p.closed(1000, "") is not None
    failure = {"type": "server_error", "code": "transcription_failed", "message": "decode failed"}
    failed = event(f"{ITEM}.failed", item_id="b", content_index=0, error=failure)
    assert p.receive(failed) == [RealtimeFailed("b", "transcription_failed", "decode failed")]
    assert p.finished and p.closed(1000, "") is None


def test_other_errors_are_raised_with_their_param() -> None:
    p = realtime_transcribe(b"")
    error = {"type": "invalid_request_error", "code": "invalid_base64", "message": "bad", "param": "audio"}
    with pytest.raises(ClientError) as info:
        p.receive(event("error", error=error))
    assert (info.value.code, info.value.param, info.value.error_type) == (
        "invalid_base64",
        "audio",
        "invalid_request_error",
    )
    assert p.receive(event("rate_limits.updated")) == []  # an event the client does not use
