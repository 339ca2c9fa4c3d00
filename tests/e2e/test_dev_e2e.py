"""Kokoro-FastAPI's development endpoints against a real server."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from tests.audio_helpers import duration

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("voice", [None, "kokoro/jf_alpha"])
def test_phonemize_whole_text_with_real_tokens(client: httpx.Client, voice: str | None) -> None:
    body: dict[str, object] = {"text": "Hello world. How are you today?", "language": "a"}
    if voice:
        body["voice"] = voice
    r = client.post("/dev/phonemize", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert "h" in out["phonemes"] and "?" in out["phonemes"]  # both sentences
    assert len(out["tokens"]) >= len(out["phonemes"].replace(" ", "")) // 2
    assert all(isinstance(t, int) for t in out["tokens"])


@pytest.mark.parametrize("voice", ["piper/en_US-joe-medium", "kokoro/jf_alpha"])
def test_generate_from_phonemes_streams_wav(client: httpx.Client, voice: str) -> None:
    phonemes = client.post("/dev/phonemize", json={"text": "This is a test.", "voice": voice}).json()[
        "phonemes"
    ]
    r = client.post("/dev/generate_from_phonemes", json={"phonemes": phonemes, "voice": voice})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert duration(r.content, "wav") > 0.5


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"phonemes": "həlˈoʊ ☃☃", "voice": "piper/en_US-joe-medium"}, 422, "invalid_phonemes"),
        ({"phonemes": "həlˈoʊ ☃", "voice": "kokoro/jf_alpha"}, 422, "invalid_phonemes"),
        ({"phonemes": "a" * 600, "voice": "kokoro/jf_alpha"}, 422, "phonemes_too_long"),
        ({"phonemes": "həlˈoʊ", "voice": "kokoro/nobody"}, 404, "unknown_voice"),
        ({"phonemes": "   ", "voice": "piper/en_US-joe-medium"}, 422, "invalid_phonemes"),
    ],
)
def test_generate_from_phonemes_errors_before_headers(
    client: httpx.Client, body: dict[str, object], status: int, code: str
) -> None:
    r = client.post("/dev/generate_from_phonemes", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_phonemize_rejects_empty_text(client: httpx.Client) -> None:
    r = client.post("/dev/phonemize", json={"text": "  "})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_speakable_text"


def test_captioned_speech_streaming(client: httpx.Client) -> None:
    text = "The quick brown fox jumps. It lands softly."
    r = client.post("/dev/captioned_speech", json={"model": "tts-1", "voice": "alloy", "input": text})
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    audio = b"".join(base64.b64decode(x["audio"]) for x in lines)
    total = duration(audio, "wav")
    words = [w for x in lines for w in x["timestamps"]]
    assert [w["word"] for w in words] == ["The", "quick", "brown", "fox", "jumps", "It", "lands", "softly"]
    starts = [w["start_time"] for w in words]
    assert starts == sorted(starts)
    assert all(w["end_time"] > w["start_time"] for w in words)
    assert words[-1]["end_time"] <= total + 0.05
    assert words[5]["start_time"] > 0.5  # the second sentence starts after the first


def test_captioned_speech_buffered(client: httpx.Client) -> None:
    r = client.post(
        "/dev/captioned_speech",
        json={
            "model": "tts-1",
            "voice": "alloy",
            "input": "One two three.",
            "stream": False,
            "response_format": "mp3",
        },
    )
    assert r.status_code == 200
    out = r.json()
    assert out["audio_format"] == "mp3"
    assert duration(base64.b64decode(out["audio"]), "mp3") > 0.5
    assert [w["word"] for w in out["timestamps"]] == ["One", "two", "three"]
