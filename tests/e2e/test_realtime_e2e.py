"""``WS /v1/realtime`` transcription sessions in both OpenAI dialects against a real server."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from tests.e2e.conftest import Server
from tests.e2e.ws_helpers import collect_until, pcm16
from tests.speech_dev import by_name
from tests.timing import scaled
from tests.wer import errors
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e


def url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


def open_realtime(server: Server, beta: bool) -> ClientConnection:
    """A Realtime connection in the dialect a client of that API opens: beta clients send the
    ``OpenAI-Beta: realtime=v1`` header (the query is the same for both)."""
    headers = {"OpenAI-Beta": "realtime=v1"} if beta else {}
    return connect(url(server), additional_headers=headers)


def beta_update(fmt: str = "pcm16") -> dict[str, object]:
    return {
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": fmt,
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
            },
        },
    }


GA_UPDATE = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                },
            }
        },
    },
}


def append_all(ws: object, pcm: bytes, step: int = 9600) -> None:
    for i in range(0, len(pcm), step):
        ws.send(
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + step]).decode()}
            )
        )  # type: ignore[attr-defined]


def completed(event: dict[str, object]) -> bool:
    return event["type"] == "conversation.item.input_audio_transcription.completed"


@pytest.mark.parametrize("beta", [True, False])
def test_server_vad_session(server: Server, beta: bool) -> None:
    u = by_name("fleurs_en_007.wav")
    pcm = pcm16(u.path, rate=24000) + b"\x00\x00" * 24000
    with open_realtime(server, beta) as ws:
        created = json.loads(ws.recv(timeout=scaled(30)))
        assert created["type"] == ("transcription_session.created" if beta else "session.created")
        ws.send(json.dumps(beta_update() if beta else GA_UPDATE))
        updated = json.loads(ws.recv(timeout=scaled(30)))
        assert updated["type"] == ("transcription_session.updated" if beta else "session.updated")
        append_all(ws, pcm)
        events = collect_until(ws, completed, timeout_s=60)
    kinds = [e["type"] for e in events]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped")
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")
    assert ("conversation.item.created" if beta else "conversation.item.added") in kinds
    item = events[-1]["item_id"]
    deltas = [e["delta"] for e in events if e["type"].endswith(".delta")]
    assert deltas, "confirmed words arrive as deltas"
    assert all(e["item_id"] == item for e in events if e["type"].endswith((".delta", ".completed")))
    final = str(events[-1]["transcript"])
    assert final.startswith("".join(deltas).strip()[:10])
    assert errors(u.text, final)[0] <= 3, final


def test_g711_ulaw(server: Server) -> None:
    u = by_name("speech_recognition_english_123.wav")
    linear = np.frombuffer(pcm16(u.path, rate=8000), "<i2").astype(np.int32)
    # Encode μ-law (ITU-T G.711) in the test, independently of the server's decoder.
    sign = (linear < 0).astype(np.int32)
    mag = np.minimum(np.abs(linear), 32635) + 132
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    ulaw = (~((sign << 7) | (exponent << 4) | mantissa)) & 0xFF
    data = ulaw.astype(np.uint8).tobytes() + b"\xff" * 8000
    with open_realtime(server, True) as ws:
        ws.recv(timeout=scaled(30))
        ws.send(json.dumps(beta_update("g711_ulaw")))
        assert json.loads(ws.recv(timeout=scaled(30)))["session"]["input_audio_format"] == "g711_ulaw"
        append_all(ws, data, step=4000)
        events = collect_until(ws, completed, timeout_s=60)
    assert errors(u.text, str(events[-1]["transcript"]))[0] <= 2, events[-1]


def alaw_encode(linear: np.ndarray) -> bytes:
    """ITU-T G.711 A-law, written out in the test, independently of the server's decoder."""
    out = bytearray()
    ends = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
    for sample in linear.tolist():
        pcm = int(sample) >> 3
        if pcm >= 0:
            mask = 0xD5
        else:
            mask = 0x55
            pcm = -pcm - 1
        seg = next((i for i, end in enumerate(ends) if pcm <= end), 8)
        mantissa = (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
        out.append((0x7F if seg >= 8 else (seg << 4) | mantissa) ^ mask)
    return bytes(out)


def test_g711_alaw(server: Server) -> None:
    u = by_name("speech_recognition_english_123.wav")
    linear = np.frombuffer(pcm16(u.path, rate=8000), "<i2").astype(np.int32)
    data = alaw_encode(linear) + alaw_encode(np.zeros(8000, np.int32))
    with open_realtime(server, False) as ws:
        ws.recv(timeout=scaled(30))
        ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"format": {"type": "audio/pcma"}}},
                    },
                }
            )
        )
        updated = json.loads(ws.recv(timeout=scaled(30)))
        assert updated["type"] == "session.updated", updated
        append_all(ws, data, step=4000)
        events = collect_until(ws, completed, timeout_s=60)
    assert errors(u.text, str(events[-1]["transcript"]))[0] <= 2, events[-1]


def test_manual_commit_and_errors(server: Server) -> None:
    u = by_name("speech_recognition_english_123.wav")
    with open_realtime(server, True) as ws:
        ws.recv(timeout=scaled(30))
        update = beta_update()
        update["session"]["turn_detection"] = None  # type: ignore[index]
        ws.send(json.dumps(update))
        assert json.loads(ws.recv(timeout=scaled(30)))["session"]["turn_detection"] is None
        ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "e1"}))
        err = json.loads(ws.recv(timeout=scaled(10)))
        assert err["type"] == "error" and err["error"]["code"] == "input_audio_buffer_commit_empty"
        assert err["error"]["event_id"] == "e1"
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        assert json.loads(ws.recv(timeout=scaled(10)))["error"]["code"] == "invalid_base64"
        ws.send("{oops")
        assert json.loads(ws.recv(timeout=scaled(10)))["error"]["code"] == "invalid_json"
        ws.send(json.dumps({"type": "response.create"}))
        assert json.loads(ws.recv(timeout=scaled(10)))["error"]["code"] == "unknown_event"
        append_all(ws, pcm16(u.path, rate=24000))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = collect_until(ws, completed, timeout_s=60)
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.committed" in kinds
    assert "input_audio_buffer.speech_started" not in kinds  # no server VAD in manual mode
    assert errors(u.text, str(events[-1]["transcript"]))[0] <= 2


def early_finals(server: Server, outcome: str) -> float:
    """``voxserve_stt_early_finals_total{outcome=…}`` from the server's /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=scaled(10)).text
    for line in text.splitlines():
        if line.startswith(f'voxserve_stt_early_finals_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_manual_commit_after_a_pause_gets_the_transcript_decoded_in_the_pause(server: Server) -> None:
    """pipecat's way: no server turn detection, the client's VAD commits after its own silence. voxserve
    decodes during that silence, and the commit's item is that decode (no decode after the commit).
    One phrase with no pause inside: sent at once, a pause between words would find both decode slots
    busy and wait for them (a client speaking in real time leaves them time)."""
    u = by_name("pocketsphinx_cards_001.wav")
    used = early_finals(server, "used")
    with open_realtime(server, False) as ws:
        ws.recv(timeout=scaled(30))
        update = json.loads(json.dumps(GA_UPDATE))
        update["session"]["audio"]["input"]["turn_detection"] = None
        update["session"]["audio"]["input"]["transcription"]["model"] = "gpt-realtime-whisper"
        ws.send(json.dumps(update))
        assert json.loads(ws.recv(timeout=scaled(30)))["type"] == "session.updated"
        pause = np.zeros(24000, dtype="<i2").tobytes()  # 1 s of silence: the client's VAD waits
        append_all(ws, pcm16(u.path, rate=24000) + pause)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = collect_until(ws, completed, timeout_s=60)
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" not in kinds  # our VAD makes no events here
    assert errors(u.text, str(events[-1]["transcript"]))[0] <= 1
    assert early_finals(server, "used") == used + 1


def test_clear_and_bad_format(server: Server) -> None:
    with open_realtime(server, False) as ws:
        ws.recv(timeout=scaled(30))
        bad = json.loads(json.dumps(GA_UPDATE))
        bad["session"]["audio"]["input"]["format"] = {"type": "audio/pcm", "rate": 16000}
        ws.send(json.dumps(bad))
        assert json.loads(ws.recv(timeout=scaled(10)))["error"]["code"] == "unsupported_format"
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(ws.recv(timeout=scaled(10)))["type"] == "input_audio_buffer.cleared"
