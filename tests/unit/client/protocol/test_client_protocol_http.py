"""voxserve.client.protocol.http, .routes and .jobs: the requests each route sends, and how its
response is read (with httpx.Response as the response)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from voxserve.client.errors import ClientError
from voxserve.client.events import TranscriptionDelta, TranscriptionDone
from voxserve.client.protocol import jobs, routes
from voxserve.client.protocol.http import Passthrough, Request, SSEParser, Upload


def test_speech_request_and_result() -> None:
    call = routes.speech("Hi.", voice="nova", speed=1.5, instructions="calm", volume_multiplier=2)
    assert (call.request.method, call.request.path) == ("POST", "/v1/audio/speech")
    assert call.request.json == {
        "model": "tts-1",
        "input": "Hi.",
        "voice": "nova",
        "response_format": "mp3",
        "speed": 1.5,
        "stream": False,
        "volume_multiplier": 2,
        "instructions": "calm",
    }
    assert call.result(httpx.Response(200, content=b"ID3")) == b"ID3"
    assert routes.stream_speech("Hi.").request.json["stream"] is True


def test_error_statuses_raise_and_ready_reads_503() -> None:
    error = {
        "error": {"message": "no", "type": "invalid_request_error", "param": None, "code": "unknown_voice"}
    }
    with pytest.raises(ClientError) as info:
        routes.speech("x").result(httpx.Response(404, json=error))
    assert (info.value.code, info.value.status) == ("unknown_voice", 404)
    assert routes.ready().result(httpx.Response(503, json={"status": "starting"})) == {"status": "starting"}
    with pytest.raises(ClientError) as info:
        routes.ready().result(httpx.Response(500, text="boom"))
    assert info.value.code == "http_500"
    with pytest.raises(ClientError) as info:
        routes.health().result(httpx.Response(200, text="<html>"))
    assert info.value.code == "invalid_event"


def test_transcription_form_and_formats(tmp_path: Path) -> None:
    call = routes.transcribe(b"RIFF", language="en", temperature=0.2, timestamp_granularities=["word"])
    assert call.request.form == {
        "model": "whisper-1",
        "response_format": "json",
        "language": "en",
        "temperature": "0.2",
        "timestamp_granularities[]": ["word"],
    }
    assert call.request.upload == Upload(b"RIFF", None)
    assert call.result(httpx.Response(200, json={"text": "hi"})) == {"text": "hi"}
    srt = routes.translate(b"RIFF", response_format="srt")
    assert srt.request.path == "/v1/audio/translations"
    assert srt.result(httpx.Response(200, text="1\n00:00 --> 00:01\nhi\n")) == "1\n00:00 --> 00:01\nhi\n"
    assert routes.stream_transcription(b"x").request.form == {
        "model": "whisper-1",
        "response_format": "json",
        "stream": "true",
    }


def test_uploads_read_bytes_paths_and_files(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp3"
    path.write_bytes(b"ID3")
    assert Upload(b"RIFF").read() == ("audio.wav", b"RIFF", "audio/wav")
    assert Upload(path).read() == ("clip.mp3", b"ID3", "audio/mpeg")
    assert Upload(io.BytesIO(b"x"), "a.ogg").read() == ("a.ogg", b"x", "audio/ogg")
    request = Request("POST", "/p", form={"a": "1"}, upload=Upload(b"x"))
    assert request.options(("f", b"x", "t")) == {"data": {"a": "1"}, "files": {"file": ("f", b"x", "t")}}


def test_the_transcription_stream_decoder() -> None:
    decoder = routes.stream_transcription(b"x").decoder()
    body = (
        b'data: {"type":"transcript.text.delta","delta":"Hel"}\r\n\r\n'
        b'data: {"type":"transcript.text.delta","delta":"lo"}\n\n'
        b'data: {"type":"something.else"}\n\n'
        b'data: {"type":"transcript.text.done","text":"Hello"}'
    )
    events = [e for i in range(0, len(body), 5) for e in decoder.feed(body[i : i + 5])]
    assert events == [TranscriptionDelta("Hel"), TranscriptionDelta("lo")]
    assert decoder.end() == [TranscriptionDone("Hello")]
    failed = routes.TranscriptionEvents()
    with pytest.raises(ClientError) as info:
        failed.feed(
            b'data: {"type":"error","error":{"type":"server_error","code":"decode_failed","message":"x"}}\n\n'
        )
    assert (info.value.code, info.value.error_type) == ("decode_failed", "server_error")


def test_passthrough_and_the_line_parser() -> None:
    assert Passthrough().feed(b"") == [] and Passthrough().feed(b"a") == [b"a"] and Passthrough().end() == []
    parser = SSEParser()
    assert parser.feed('data: {"a": 1}\n') is None
    assert parser.feed("\n") == {"a": 1}
    assert parser.feed("data: [DONE]") is None and parser.feed("") is None
    parser.feed("data: {nope")
    with pytest.raises(ClientError) as info:
        parser.end()
    assert info.value.code == "invalid_event"


def test_job_routes_and_waiting() -> None:
    create = jobs.create_speech_job("Long.", voice="x", markup="off")
    assert create.request.json == {
        "model": "tts-1",
        "input": "Long.",
        "voice": "x",
        "response_format": "mp3",
        "speed": 1.0,
        "markup": "off",
    }
    assert jobs.delete_speech_job("j1").request.method == "DELETE"
    assert jobs.speech_job_download("j1").chunk_bytes == 256 * 1024
    wait = jobs.wait_speech_job("j1", max_wait_s=2.5, poll_interval_s=1.0)
    wait.start(100.0)
    assert wait.next({"id": "j1", "status": "queued"}, 100.1) == 1.0
    assert wait.next({"id": "j1", "status": "running"}, 102.0) == pytest.approx(0.5)
    with pytest.raises(ClientError) as info:
        wait.next({"id": "j1", "status": "running"}, 102.5)
    assert info.value.code == "timeout"
    assert wait.next({"id": "j1", "status": "succeeded"}, 200.0) is None and wait.job["status"] == "succeeded"
    with pytest.raises(ClientError) as info:
        wait.next({"id": "j1", "status": "failed", "error": {"code": "synthesis_failed", "message": "x"}}, 1)
    assert info.value.code == "synthesis_failed"
