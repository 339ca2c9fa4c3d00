"""OpenAI transcription REST against a real server, with the official openai client and httpx."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from tests.e2e.conftest import Server
from tests.speech_dev import by_name
from tests.wer import errors

pytestmark = pytest.mark.e2e

FILES = ["fleurs_en_007.wav", "librispeech_1272-141231-0002.wav", "speech_recognition_english_123.wav"]


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    # Closed explicitly: an unclosed client's socket would surface as a ResourceWarning in a later test.
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_openai_client_transcribes_real_speech(oai: openai.OpenAI) -> None:
    total_err = total_words = 0
    for name in FILES:
        u = by_name(name)
        with u.path.open("rb") as f:
            result = oai.audio.transcriptions.create(model="whisper-1", file=f)
        e, n = errors(u.text, result.text)
        total_err += e
        total_words += n
    assert total_err / total_words <= 0.15, (total_err, total_words)


def test_base_model_transcribes(oai: openai.OpenAI) -> None:
    """The Whisper base model, joined from its two packages on first use, serves REST requests."""
    u = by_name(FILES[0])
    with u.path.open("rb") as f:
        result = oai.audio.transcriptions.create(model="base", file=f)
    e, n = errors(u.text, result.text)
    assert e / n <= 0.15, result.text


def test_openai_client_streaming(oai: openai.OpenAI) -> None:
    u = by_name("librispeech_1272-141231-0002.wav")
    with u.path.open("rb") as f:
        events = list(oai.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done"
    assert kinds[:-1] == ["transcript.text.delta"] * (len(kinds) - 1) and len(kinds) > 1
    deltas = "".join(e.delta for e in events[:-1])  # type: ignore[union-attr]
    assert events[-1].text == deltas.strip()  # type: ignore[union-attr]
    e, n = errors(u.text, events[-1].text)  # type: ignore[union-attr]
    assert e / n <= 0.2


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_response_formats(client: httpx.Client, fmt: str) -> None:
    u = by_name("fleurs_en_007.wav")
    r = client.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1", "response_format": fmt, "timestamp_granularities[]": ["word", "segment"]},
        files={"file": (u.path.name, u.path.read_bytes(), "audio/wav")},
    )
    assert r.status_code == 200, r.text
    if fmt == "json":
        assert errors(u.text, r.json()["text"])[0] <= 3
    elif fmt == "text":
        assert r.headers["content-type"].startswith("text/plain") and len(r.text.split()) > 5
    elif fmt == "srt":
        assert r.text.startswith("1\n00:00:0") and " --> " in r.text
    elif fmt == "vtt":
        assert r.text.startswith("WEBVTT\n\n00:00:0")
    else:
        body = r.json()
        assert body["task"] == "transcribe" and body["language"] == "en"
        assert 6.5 < body["duration"] < 7.5
        assert body["segments"][0]["start"] >= 0.0
        words = body["words"]
        assert len(words) > 5 and all(w["end"] >= w["start"] for w in words)
        assert [w["start"] for w in words] == sorted(w["start"] for w in words)


def test_other_containers_are_decoded(client: httpx.Client) -> None:
    import av

    u = by_name("fleurs_en_007.wav")
    buf = io.BytesIO()
    with av.open(str(u.path)) as src, av.open(buf, "w", format="ogg") as dst:
        out = dst.add_stream("libopus", rate=48000)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                for p in out.encode(f):
                    dst.mux(p)
        for p in out.encode(None):
            dst.mux(p)
    r = client.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("x.ogg", buf.getvalue(), "audio/ogg")},
    )
    assert r.status_code == 200 and errors(u.text, r.json()["text"])[0] <= 3


def test_translation(client: httpx.Client) -> None:
    u = by_name("speech_recognition_english_123.wav")
    r = client.post(
        "/v1/audio/translations", data={"model": "whisper-1"}, files={"file": ("a.wav", u.path.read_bytes())}
    )
    assert r.status_code == 200 and len(r.json()["text"]) > 3


@pytest.mark.parametrize(
    ("content", "fields", "status", "code"),
    [
        (b"", {}, 400, "empty_audio"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, {}, 415, "unsupported_media_type"),
        (b"just some text, not audio at all" * 10, {}, 415, "unsupported_media_type"),
        (None, {"model": "whisper-9000"}, 404, "model_not_found"),
        (None, {"response_format": "xml"}, 422, "unsupported_format"),
        (None, {"language": "de"}, 422, "unsupported_language"),
        (None, {"timestamp_granularities[]": "sentence"}, 422, "invalid_timestamp_granularities"),
    ],
)
def test_errors(
    client: httpx.Client, content: bytes | None, fields: dict[str, str], status: int, code: str
) -> None:
    data = by_name("fsdd_4_george_0.wav").path.read_bytes() if content is None else content
    r = client.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1", **fields}, files={"file": ("f.wav", data)}
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_upload_over_limit_is_413(client: httpx.Client) -> None:
    big = b"\x00" * (26_214_400 + 1)
    r = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("big.wav", big)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"


def test_models_list_stt(client: httpx.Client) -> None:
    ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert {"whisper-1", "tiny.en", "base"} <= ids
    assert json.loads(client.get("/v1/models/tiny.en").text)["id"] == "tiny.en"
