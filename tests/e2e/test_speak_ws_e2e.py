"""``WS /v1/stream/speak`` against a real server: tokens in, audio and sentence events out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.audio_helpers import duration
from tests.e2e.conftest import Server, start_server, stop_server
from tests.timing import deadline_in, remaining, scaled
from tests.wer import wer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Streaming speech should start before the whole answer is known, "
    "and it should never lose a word. That is the point of this test."
)


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/stream/speak"


def configure(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    ws.send(json.dumps({"type": "config", **fields}))
    ready: dict[str, Any] = json.loads(ws.recv(timeout=scaled(60)))
    return ready


def send_tokens(ws: ClientConnection, text: str) -> None:
    for token in text.split(" "):
        ws.send(json.dumps({"type": "text", "text": token + " "}))


def read_all(ws: ClientConnection, timeout_s: float = 60) -> tuple[bytes, list[dict[str, Any]], int | None]:
    """Audio and events until the server closes."""
    audio = bytearray()
    events: list[dict[str, Any]] = []
    deadline = deadline_in(timeout_s)
    while True:
        try:
            message = ws.recv(timeout=remaining(deadline))
        except (ConnectionClosed, TimeoutError):
            break
        if isinstance(message, bytes):
            audio += message
        else:
            events.append(json.loads(message))
    return bytes(audio), events, ws.close_code


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "opus"])
def test_tokens_stream_to_audio_in_every_format(server: Server, fmt: str) -> None:
    with connect(ws_url(server)) as ws:
        ready = configure(ws, voice="alloy", response_format=fmt)
        assert ready == {
            "type": "ready",
            "voice": "piper/en_US-joe-medium",
            "response_format": fmt,
            "sample_rate": 24000,
            "speed": 1.0,
        }
        send_tokens(ws, TEXT)
        ws.send(json.dumps({"type": "end"}))
        audio, events, code = read_all(ws)
    assert code == 1000
    sentences = [e for e in events if e["type"] == "sentence"]
    assert " ".join(s["text"] for s in sentences) == TEXT.strip()
    starts = [s["start_s"] for s in sentences]
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert events[-1]["type"] == "done"
    assert duration(audio, fmt) == pytest.approx(events[-1]["audio_s"], abs=0.1)
    if fmt == "pcm":  # every sample the server produced arrived, once
        assert len(audio) == 2 * events[-1]["samples"]
    assert not [e for e in events if e["type"] == "error"]


def test_first_fragment_is_short_and_words_are_timed(server: Server) -> None:
    with connect(ws_url(server)) as ws:
        configure(ws)
        send_tokens(ws, "Well, to be honest with you, the answer depends on what you mean by fast.")
        ws.send(json.dumps({"type": "end"}))
        _, events, _ = read_all(ws)
    sentences = [e for e in events if e["type"] == "sentence"]
    assert sentences[0]["text"] == "Well, to be honest with you,"
    words = [w for s in sentences for w in s["words"]]
    assert [w["word"] for w in words][:3] == ["Well", "to", "be"]
    assert all(w["start_s"] <= w["end_s"] for w in words)


def test_words_point_at_the_pushed_text_and_markup_is_read(server: Server) -> None:
    text = "[pause:300ms] It costs $100 today. Say [tomato](/təmˈɑːtoʊ/) now. "
    with connect(ws_url(server)) as ws:
        configure(ws)
        send_tokens(ws, text.strip())
        ws.send(json.dumps({"type": "end"}))
        audio, events, _ = read_all(ws)
    words = [w for e in events if e["type"] == "sentence" for w in e["words"]]
    located = {w["word"].lower(): text[w["source_start"] : w["source_end"]] for w in words}
    assert located["hundred"] == located["dollars"] == "$100", located
    assert located["costs"] == "costs" and located["now"] == "now", located
    assert located["tomato"] == "[tomato](/təmˈɑːtoʊ/)", located
    assert "pause" not in located
    assert not any(e["type"] == "error" for e in events), events
    first = next(e for e in events if e["type"] == "sentence")
    assert first["start_s"] >= 0.25  # the leading pause is audio too


def test_streamed_speech_transcribes_back(server: Server, client: httpx.Client) -> None:
    with connect(ws_url(server)) as ws:
        configure(ws, response_format="wav")
        send_tokens(ws, TEXT)
        ws.send(json.dumps({"type": "end"}))
        audio, _, code = read_all(ws)
    assert code == 1000
    r = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("speech.wav", audio, "audio/wav")},
        data={"model": "whisper-1", "response_format": "text"},
    )
    assert r.status_code == 200, r.text
    assert wer(TEXT, r.text) <= 0.10, r.text


def test_flush_speaks_without_a_sentence_end(server: Server) -> None:
    with connect(ws_url(server)) as ws:
        configure(ws)
        ws.send(json.dumps({"type": "text", "text": "no full stop here"}))
        ws.send(json.dumps({"type": "flush"}))
        first = ws.recv(timeout=scaled(30))
        assert json.loads(first)["type"] == "sentence"
        assert json.loads(first)["text"] == "no full stop here"
        assert isinstance(ws.recv(timeout=scaled(30)), bytes)
        ws.send(json.dumps({"type": "end"}))
        _, events, code = read_all(ws)
    assert code == 1000 and events[-1]["type"] == "done"


def test_cancel_stops_audio_and_the_session_goes_on(server: Server) -> None:
    long_text = " ".join(f"This is sentence number {i} of a long answer." for i in range(1, 30))
    with connect(ws_url(server)) as ws:
        configure(ws)
        ws.send(json.dumps({"type": "text", "text": long_text}))
        assert json.loads(ws.recv(timeout=scaled(30)))["type"] == "sentence"
        assert isinstance(ws.recv(timeout=scaled(30)), bytes)
        ws.send(json.dumps({"type": "cancel"}))
        while True:
            message = ws.recv(timeout=scaled(10))
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] == "cancelled":
                break
        # Cancelled before most of the answer was synthesized (how fast: benchmarks/speak_bench.py).
        assert event["dropped_fragments"] >= 20
        # Nothing of the dropped text follows; new text is spoken.
        ws.send(json.dumps({"type": "text", "text": "A fresh start."}))
        ws.send(json.dumps({"type": "end"}))
        audio, events, code = read_all(ws)
    assert code == 1000
    assert [e["text"] for e in events if e["type"] == "sentence"] == ["A fresh start."]
    assert events[-1]["type"] == "done"
    assert 0.3 < len(audio) / 48000 < 3.0


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"voice": "nobody"}, "unknown_voice"),
        ({"voice": "piper/nobody"}, "unknown_voice"),
        ({"response_format": "aac"}, "unsupported_format"),
        ({"speed": 9}, "invalid_speed"),
        ({"speed": "fast"}, "invalid_speed"),
        ({"model": "nope"}, "model_not_found"),
    ],
)
def test_bad_config_gets_an_error_and_1008(server: Server, config: dict[str, Any], code: str) -> None:
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "config", **config}))
        event = json.loads(ws.recv(timeout=scaled(30)))
        assert event["type"] == "error" and event["code"] == code, event
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=scaled(10))
        assert ws.close_code == 1008


@pytest.mark.parametrize("first", ["not json", json.dumps({"type": "text", "text": "hi"})])
def test_first_message_must_be_config(server: Server, first: str) -> None:
    with connect(ws_url(server)) as ws:
        ws.send(first)
        event = json.loads(ws.recv(timeout=scaled(30)))
        assert event["code"] == "invalid_config"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=scaled(10))
        assert ws.close_code == 1008


def test_bad_messages_get_errors_and_the_session_survives(server: Server) -> None:
    with connect(ws_url(server)) as ws:
        configure(ws)
        bad: list[tuple[str | bytes, str]] = [
            (b"\x00\x01", "unexpected_binary"),
            ("{not json", "invalid_json"),
            (json.dumps({"type": "dance"}), "unknown_message"),
            (json.dumps({"type": "text", "text": 5}), "invalid_text"),
            (json.dumps({"type": "text", "text": "x" * 5000}), "text_too_long"),
            (json.dumps({"type": "config"}), "unexpected_config"),
        ]
        for message, code in bad:
            ws.send(message)
            event = json.loads(ws.recv(timeout=scaled(10)))
            assert event == {"type": "error", "code": code, "message": event["message"]}
        ws.send(json.dumps({"type": "text", "text": "Still here."}))
        ws.send(json.dumps({"type": "end"}))
        ws.send(json.dumps({"type": "text", "text": "too late"}))
        audio, events, code = read_all(ws)
    assert code == 1000
    assert [e["text"] for e in events if e["type"] == "sentence"] == ["Still here."]
    assert "ended" in [e["code"] for e in events if e["type"] == "error"]
    assert audio


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("speak"),
        env={"VOXSERVE_MAX_SPEAK_SESSIONS": "1", "VOXSERVE_SESSION_IDLE_TIMEOUT_S": "1.5"},
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def test_over_capacity_closes_1013_and_idle_closes_1000(small_server: Server, tmp_path: Path) -> None:
    with connect(ws_url(small_server)) as first:
        configure(first)
        with connect(ws_url(small_server)) as second:
            with pytest.raises(ConnectionClosed):
                second.recv(timeout=scaled(10))
            assert second.close_code == 1013
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            first.recv(timeout=scaled(10))
        assert first.close_code == 1000
        # Not before the idle timeout (1.5 s); a lower bound holds on any machine, however busy.
        assert time.monotonic() - t0 > 1.0
    # The slot is free again.
    with connect(ws_url(small_server)) as again:
        assert configure(again)["type"] == "ready"
