"""``WS /v1/stream/transcribe`` (the mobile-app protocol) against a real server."""

from __future__ import annotations

import base64
import json
import math
import struct
import time

import pytest
from tests.e2e.conftest import Server
from tests.e2e.ws_helpers import collect_until, drain, pcm16
from tests.speech_dev import by_name
from tests.timing import scaled
from tests.wer import errors
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e

CONFIG = {
    "type": "config",
    "sample_rate_hz": 16000,
    "encoding": "linear16",
    "language": "en",
    "interim_results": True,
}


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/stream/transcribe"


def finals(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e["results"][0] for e in events if e["type"] == "result" and e["results"][0]["is_final"]]  # type: ignore[index]


@pytest.mark.parametrize("as_base64", [False, True])
def test_stream_gives_partials_then_finals(server: Server, as_base64: bool) -> None:
    u = by_name("librispeech_1272-141231-0002.wav")
    pcm = pcm16(u.path)
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps(CONFIG))
        assert json.loads(ws.recv(timeout=scaled(30)))["type"] == "ready"
        step = 3200  # 100 ms
        for i in range(0, len(pcm), step):
            frame = pcm[i : i + step]
            time.sleep(0.05)  # a microphone at 2x real time: partials need time to be decoded
            if as_base64:
                ws.send(json.dumps({"type": "audio", "audio": base64.b64encode(frame).decode()}))
            else:
                ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        events, code = drain(ws)
    assert code == 1000
    results = [e for e in events if e["type"] == "result"]
    partials = [r for r in results if not r["results"][0]["is_final"]]
    assert partials, "interim results were requested"
    assert all(0.0 <= p["results"][0]["stability"] <= 1.0 for p in partials)
    fin = finals(events)
    text = " ".join(str(f["alternatives"][0]["transcript"]) for f in fin)  # type: ignore[index]
    e, n = errors(u.text, text)
    assert e / n <= 0.25, text
    ends = [float(f["result_end_time"]) for f in fin]  # type: ignore[arg-type]
    assert ends == sorted(ends) and ends[-1] <= 13.5


def test_float32_and_resampled_input(server: Server) -> None:
    import numpy as np

    u = by_name("fleurs_en_007.wav")
    samples = np.frombuffer(pcm16(u.path, rate=48000), "<i2").astype("<f4") / 32768
    data = samples.tobytes()
    with connect(ws_url(server)) as ws:
        ws.send(
            json.dumps(CONFIG | {"sample_rate_hz": 48000, "encoding": "float32", "interim_results": False})
        )
        ws.recv(timeout=scaled(30))
        for i in range(0, len(data), 19200):
            ws.send(data[i : i + 19200])
        ws.send(json.dumps({"type": "end"}))
        events, code = drain(ws)
    assert code == 1000
    assert not [e for e in events if e["type"] == "result" and not e["results"][0]["is_final"]]
    text = " ".join(str(f["alternatives"][0]["transcript"]) for f in finals(events))  # type: ignore[index]
    assert errors(u.text, text)[0] / len(u.text.split()) <= 0.25, text


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (json.dumps({"type": "audio", "audio": "not base64!!"}), "invalid_base64"),
        (b"\x00\x01\x02", "misaligned_pcm"),
        (json.dumps({"type": "what"}), "unknown_message"),
        ("{not json", "invalid_json"),
        (json.dumps(CONFIG), "unexpected_config"),
    ],
)
def test_bad_messages_get_error_events_and_the_session_stays_open(
    server: Server, message: object, code: str
) -> None:
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps(CONFIG))
        ws.recv(timeout=scaled(30))
        ws.send(message)  # type: ignore[arg-type]
        event = json.loads(ws.recv(timeout=scaled(10)))
        assert event == {"type": "error", "code": code, "message": event["message"]}
        ws.send(b"\x00\x00" * 1600)  # still accepts audio
        ws.send(json.dumps({"type": "end"}))
        _, close = drain(ws)
    assert close == 1000


def test_nan_floats_are_rejected(server: Server) -> None:
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps(CONFIG | {"encoding": "float32"}))
        ws.recv(timeout=scaled(30))
        ws.send(struct.pack("<4f", 0.0, math.nan, 0.1, math.inf))
        event = json.loads(ws.recv(timeout=scaled(10)))
        assert event["type"] == "error" and event["code"] == "non_finite_samples"


@pytest.mark.parametrize(
    "first",
    [b"\x00\x00", json.dumps({"type": "audio", "audio": ""}), json.dumps(CONFIG | {"sample_rate_hz": 1})],
)
def test_bad_or_missing_config_closes_1008(server: Server, first: object) -> None:
    with connect(ws_url(server)) as ws:
        ws.send(first)  # type: ignore[arg-type]
        events, code = drain(ws, timeout_s=10)
    assert code == 1008
    assert events and events[0]["type"] == "error"


def test_oversized_message_closes_1009(server: Server) -> None:
    with connect(ws_url(server), max_size=None) as ws:
        ws.send(json.dumps(CONFIG))
        ws.recv(timeout=scaled(30))
        ws.send(b"\x00" * (262_144 + 2))
        _, code = drain(ws, timeout_s=10)
    assert code == 1009


def test_message_at_the_limit_is_accepted(server: Server) -> None:
    with connect(ws_url(server), max_size=None) as ws:
        ws.send(json.dumps(CONFIG))
        ws.recv(timeout=scaled(30))
        ws.send(b"\x00" * 262_144)
        ws.send(json.dumps({"type": "end"}))
        _, code = drain(ws, timeout_s=30)
    assert code == 1000


def test_sessions_do_not_share_results(server: Server) -> None:
    a, b = by_name("fleurs_en_007.wav"), by_name("speech_recognition_english_123.wav")
    with connect(ws_url(server)) as wa, connect(ws_url(server)) as wb:
        for ws in (wa, wb):
            ws.send(json.dumps(CONFIG | {"interim_results": False}))
            ws.recv(timeout=scaled(30))
        pa, pb = pcm16(a.path), pcm16(b.path)
        for i in range(0, max(len(pa), len(pb)), 3200):
            if i < len(pa):
                wa.send(pa[i : i + 3200])
            if i < len(pb):
                wb.send(pb[i : i + 3200])
        wa.send(json.dumps({"type": "end"}))
        wb.send(json.dumps({"type": "end"}))
        ea, _ = drain(wa)
        eb, _ = drain(wb)
    ta = " ".join(str(f["alternatives"][0]["transcript"]) for f in finals(ea))  # type: ignore[index]
    tb = " ".join(str(f["alternatives"][0]["transcript"]) for f in finals(eb))  # type: ignore[index]
    assert errors(a.text, ta)[0] <= 4 and errors(b.text, tb)[0] <= 2
    assert "test" not in ta.lower() or "test" in a.text.lower()


def test_speech_events(server: Server) -> None:
    u = by_name("speech_recognition_english_123.wav")
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps(CONFIG))
        ws.recv(timeout=scaled(30))
        ws.send(pcm16(u.path))
        ws.send(b"\x00\x00" * 16000)  # one second of silence ends the utterance
        events = collect_until(ws, lambda e: e["type"] == "result" and e["results"][0]["is_final"])
    kinds = [e.get("event") for e in events if e["type"] == "speech_event"]
    assert kinds[:2] == ["SPEECH_ACTIVITY_BEGIN", "SPEECH_ACTIVITY_END"]
