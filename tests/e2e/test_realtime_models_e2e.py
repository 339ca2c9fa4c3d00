"""Realtime sessions per model, the commit race, and gpt-transcribe's hints and logprobs, against a
real server (light: espeak and tiny.en) with a raw WebSocket client and the official ``openai``
client."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.ws_helpers import collect_until, pcm16
from tests.speech_dev import by_name
from tests.timing import scaled
from tests.wer import errors
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

LIGHT_ENV = {
    "VOXSERVE_ENGINES": '["espeak"]',
    "VOXSERVE_DEFAULT_VOICE": "espeak/en-us",
    "VOXSERVE_STT_MODELS": '["tiny.en"]',
    "VOXSERVE_UI_ENABLED": "false",
}
RARE = "librispeech_1272-128104-0004_8k.wav"
"""tiny.en hears "Mr. Burkett (or Birkett) Foster's" and "idels" here; with the keywords it spells
"Birket" and "idylls" as the reference does."""


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("realtime-models"), env=LIGHT_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=scaled(120))


def send(ws: ClientConnection, event: dict[str, Any]) -> None:
    ws.send(json.dumps(event))


def append(ws: ClientConnection, pcm: bytes, step: int = 9600) -> None:
    for i in range(0, len(pcm), step):
        send(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + step]).decode()})


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(24000 * seconds)


def update(transcription: dict[str, Any], **extra: Any) -> dict[str, Any]:
    audio_in: dict[str, Any] = {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": transcription,
    }
    if "turn_detection" in extra:
        audio_in["turn_detection"] = extra.pop("turn_detection")
    return {
        "type": "session.update",
        "session": {"type": "transcription", "audio": {"input": audio_in}, **extra},
    }


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def is_type(kind: str) -> Any:
    return lambda e: e["type"] == kind


COMPLETED = "conversation.item.input_audio_transcription.completed"
COMMITTED = "input_audio_buffer.committed"


def test_the_pipecat_commit_race_gets_no_error_and_keeps_the_transcripts(light: Server) -> None:
    """Server VAD on; after each speech_stopped the client's own VAD commits at once (pipecat with
    Silero ``stop_secs`` a little over the server's 500 ms): acknowledged, no error, nothing lost."""
    names = ["fleurs_en_007.wav", "pocketsphinx_cards_005.wav", "speech_recognition_english_123.wav"]
    with connect(ws_url(light)) as ws:
        events = collect_until(ws, is_type("session.created"))
        send(
            ws,
            update(
                {"model": "gpt-realtime-whisper", "language": "en"}, turn_detection={"type": "server_vad"}
            ),
        )
        events += collect_until(ws, is_type("session.updated"))
        assert (
            of(events, "session.updated")[0]["session"]["audio"]["input"]["turn_detection"]["type"]
            == "server_vad"
        )
        for name in names:
            append(ws, pcm16(by_name(name).path, 24000) + silence(0.6))
            events += collect_until(ws, is_type("input_audio_buffer.committed"), timeout_s=60)
            send(ws, {"type": "input_audio_buffer.commit", "event_id": f"client_commit_{name}"})
            append(ws, silence(0.1))
            send(ws, {"type": "input_audio_buffer.commit"})  # a second framework commit, later still
        while len(of(events, COMPLETED)) < len(of(events, "conversation.item.added")) or len(
            of(events, "input_audio_buffer.committed")
        ) < len(of(events, "conversation.item.added")) + 2 * len(names):
            events += collect_until(
                ws, lambda e: e["type"] in (COMPLETED, "input_audio_buffer.committed"), 120
            )
    assert not of(events, "error"), of(events, "error")
    items = [e["item"]["id"] for e in of(events, "conversation.item.added")]
    acks = of(events, "input_audio_buffer.committed")
    # Each client commit was acknowledged with an item server VAD had committed, and made no item.
    assert len(acks) == len(items) + 2 * len(names) and {a["item_id"] for a in acks} == set(items)
    transcript = " ".join(e["transcript"] for e in of(events, COMPLETED))
    reference = " ".join(by_name(name).text for name in names)
    assert errors(reference, transcript)[0] <= len(reference.split()) // 5, transcript


@pytest.mark.parametrize("model", ["gpt-realtime-whisper", "gpt-live-transcribe"])
def test_a_realtime_only_model_commits_when_the_client_does(light: Server, model: str) -> None:
    """As LiveKit uses them: the update names the model and leaves turn_detection out."""
    names = ["fleurs_en_008.wav", "pocketsphinx_cards_002.wav"]
    with connect(ws_url(light)) as ws:
        collect_until(ws, is_type("session.created"))
        send(ws, update({"model": model}, include=["item.input_audio_transcription.logprobs"]))
        (updated,) = of(collect_until(ws, is_type("session.updated")), "session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        events: list[dict[str, Any]] = []
        for name in names:
            append(ws, pcm16(by_name(name).path, 24000) + silence(1.0))  # a pause: no server commit
            send(ws, {"type": "input_audio_buffer.commit"})
            events += collect_until(ws, is_type(COMPLETED), timeout_s=120)
    assert not of(events, "error") and not of(events, "input_audio_buffer.speech_started")
    done = of(events, COMPLETED)
    assert len(done) == len(names) == len(of(events, "input_audio_buffer.committed"))
    for event, name in zip(done, names, strict=True):
        reference = by_name(name).text
        assert errors(reference, event["transcript"])[0] <= max(2, len(reference.split()) // 4), event[
            "transcript"
        ]
        logprobs = event["logprobs"]
        assert "".join(e["token"] for e in logprobs).strip() == event["transcript"]
        assert all(e["logprob"] <= 0 and bytes(e["bytes"]).decode() == e["token"] for e in logprobs)
        assert len(logprobs) > len(event["transcript"].split())  # per token: "." is one of its own


def test_keywords_reach_the_model(light: Server) -> None:
    audio = Path(by_name(RARE).path).read_bytes()
    api = client(light)
    plain = api.audio.transcriptions.create(model="gpt-transcribe", file=(RARE, io.BytesIO(audio)))
    hinted = api.audio.transcriptions.create(
        model="gpt-transcribe", file=(RARE, io.BytesIO(audio)), keywords=["Birket Foster", "idylls"]
    )
    assert "Birket Foster" not in plain.text and "idylls" not in plain.text  # the model alone misspells them
    assert "Birket Foster" in hinted.text and "idylls" in hinted.text
    with pytest.raises(openai.BadRequestError) as info:
        api.audio.transcriptions.create(
            model="gpt-transcribe", file=(RARE, io.BytesIO(b"x")), keywords=["k"] * 101
        )
    assert info.value.code == "too_many_keywords"


def test_languages_on_an_english_only_model(light: Server) -> None:
    name = "fleurs_en_007.wav"
    audio = Path(by_name(name).path).read_bytes()
    api = client(light)
    result = api.audio.transcriptions.create(
        model="gpt-transcribe", file=(name, io.BytesIO(audio)), languages=["fr", "en"]
    )
    assert errors(by_name(name).text, result.text)[0] <= 3
    assert [lang.code for lang in result.languages or []] == ["en"]
    with pytest.raises(openai.BadRequestError) as info:
        api.audio.transcriptions.create(
            model="gpt-transcribe", file=(name, io.BytesIO(audio)), languages=["fr"]
        )
    assert info.value.code == "unsupported_language" and "English-only" in str(info.value)


def test_logprobs_on_rest_come_from_the_model(light: Server) -> None:
    name = "speech_recognition_english_123.wav"
    audio = Path(by_name(name).path).read_bytes()
    result = client(light).audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=(name, io.BytesIO(audio)),
        include=["logprobs"],
        response_format="json",
    )
    assert result.logprobs, result
    assert "".join(lp.token or "" for lp in result.logprobs).strip() == result.text
    assert len(result.logprobs) > len(result.text.split())  # per token, not per word
    assert all(lp.logprob is not None and -50 < lp.logprob <= 0 for lp in result.logprobs)
    assert any(lp.logprob is not None and lp.logprob < 0 for lp in result.logprobs)  # not all made up as 0
    probability = math.exp(sum(lp.logprob or 0 for lp in result.logprobs) / len(result.logprobs))
    assert 0 < probability <= 1
    plain = client(light).audio.transcriptions.create(model="whisper-1", file=(name, io.BytesIO(audio)))
    assert plain.logprobs is None
