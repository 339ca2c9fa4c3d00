"""The failure corpus (``../shared/reference/failure_corpus.md``) as tests against one real server.

One case per corpus row that names REST or WebSocket behaviour voxserve offers, named by the row's ID
(``test_corpus[K9]``). Each case sends the row's input, checks voxserve's documented answer (status
and ``error.code``, WebSocket error event or close code, or the documented 200 behaviour), and then
the harness checks that no response of the case was a 5xx and that ``GET /health`` is 200.

Where voxserve's documented rule differs from the corpus' suggestion, the case checks voxserve's rule
(docs/api.md) and says so: M2 (a truncated WAV decodes what is there, documented, rather than 400
``truncated_audio``), M6 (a 12-bit WAV stored in 16-bit words is valid WAV and decodes), M9, M14 and
ST18 (streaming routes answer with error events, not HTTP statuses), M14 (a message before the
config closes 1008 ``invalid_config``, documented).

K12's long-form path (speech jobs) is tested at length in ``test_speech_jobs_e2e.py``.

Rows covered by other test modules (they need their own server, fault injection or minutes of time):

| Row | Where |
|---|---|
| B1 | ``test_faults_e2e.py``: a worker killed mid-stream aborts the body; SSE ends in an error event |
| B2 | ``unit/runtime/test_pool.py``: a fake engine's silence is a 502 ``output_error`` |
| P6 | ``unit/runtime/test_pool.py``: ``trailing_silence_ms`` pads the end (default 0 here) |
| K22, RT3 | ``test_speech_e2e.py`` concurrency tests |
| ST11, ST12 | ``test_faults_e2e.py``: idle timeout closes 1000, ``max_session_s`` closes 1008 |
| ST13 | ``test_stream_ws_e2e.py::test_sessions_do_not_share_results`` |
| ST19 | ``test_realtime_e2e.py::test_g711_ulaw`` / ``test_g711_alaw`` (real G.711 decoding) |
| L1, L4 | ``test_faults_e2e.py``, ``test_speech_e2e.py`` (disconnects cancel, workers replaced) |
| K23, SEC6 | ``unit/api/test_api_jobs.py``, ``test_security_e2e.py``: job files bounded by age and bytes |
| K24 | ``engine/test_engine_kokoro.py``: blends mixed in memory, an LRU of 32, no file per mix |
| SEC1–4, SEC7 | ``unit/api/test_security.py``, ``test_security_e2e.py``: keys, Origin, CORS, TLS, host |
| SEC5 | no admin or debug routes: ``/dev/*`` needs the key like every route (the route walk) |
| L2, L6, L9 | ``test_faults_e2e.py``: pings (1011), idle timeout, 1013 at capacity, SIGTERM closes 1001 |
| L7, L8 | ``test_deadlines_e2e.py``: slow headers and bodies get 408; a speak client not reading is ended |

Rows not applicable yet:

| Rows | Why |
|---|---|
| P1–P5, P9, P10, ST27, M19 | no Wyoming server in voxserve (ST6 is checked as ``end`` with no audio) |
| K26, ST15, ST26 | no GPU support: CPU-only engines, nothing to select or fall back from |
| K25 | covered by ``test_dev_e2e.py`` (whole-text phonemes, real tokens) |
| RT1, RT2, RT6–RT8, O1, O3, S3 | engine-library and release rows (unit, engine, benchmark suites) |
| ST2, ST3, ST16, ST17, L3, L5, L10, ST25 | the long-running reliability battery (R1–R13) |
| ST4 | needs a plosive-onset recording; prefix padding is a unit test of the session |
| ST14 | WhisperLive's per-session VAD flag; voxserve has no shared option to leak |
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import struct
import time
import wave
from collections.abc import Callable, Iterator
from typing import Any

import av
import httpx
import numpy as np
import pytest
from tests.audio_helpers import decode, duration
from tests.e2e.conftest import Server
from tests.e2e.ws_helpers import collect_until, drain, pcm16
from tests.speech_dev import by_name
from tests.timing import deadline_in, remaining, scaled
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from voxserve.text.normalize import normalize_text

pytestmark = pytest.mark.e2e

Case = Callable[["Ctx"], None]
CASES: dict[str, Case] = {}


def row(row_id: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[row_id] = fn
        return fn

    return register


class Ctx:
    """What a case gets: an HTTP client whose every response is recorded, and WebSocket helpers."""

    def __init__(self, server: Server, client: httpx.Client, statuses: list[tuple[str, int]]) -> None:
        self.server = server
        self.http = client
        self.statuses = statuses

    @contextlib.contextmanager
    def ws(self, path: str, **kwargs: Any) -> Iterator[ClientConnection]:
        url = self.server.url.replace("http://", "ws://") + path
        with connect(url, open_timeout=scaled(30), **kwargs) as ws:
            yield ws

    def speech(self, *, give_up_s: float | None = None, **fields: Any) -> httpx.Response:
        """``give_up_s``: a read timeout (nominal, scaled) for a request a pathological server path
        would hold far longer; the client's default is 120 s."""
        body = {"model": "tts-1", "voice": "alloy", "input": "Hello there."} | fields
        timeout = scaled(give_up_s) if give_up_s is not None else httpx.USE_CLIENT_DEFAULT
        return self.http.post("/v1/audio/speech", json=body, timeout=timeout)

    def raw_speech(self, body: bytes) -> httpx.Response:
        return self.http.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})

    def transcribe(
        self, data: bytes, name: str = "audio.wav", *, give_up_s: float | None = None, **fields: Any
    ) -> httpx.Response:
        """``give_up_s``: as for :meth:`speech`."""
        return self.http.post(
            "/v1/audio/transcriptions",
            files={"file": (name, data)},
            data={"model": "whisper-1", **fields},
            timeout=scaled(give_up_s) if give_up_s is not None else httpx.USE_CLIENT_DEFAULT,
        )

    def ws_status(self, code: int) -> None:
        """Record a WebSocket close code (1011 is the WebSocket 5xx)."""
        self.statuses.append(("ws close", 500 if code == 1011 else 200))


@pytest.fixture
def ctx(server: Server) -> Iterator[Ctx]:
    statuses: list[tuple[str, int]] = []

    def record(response: httpx.Response) -> None:
        statuses.append((f"{response.request.method} {response.request.url.path}", response.status_code))

    with httpx.Client(base_url=server.url, timeout=scaled(120), event_hooks={"response": [record]}) as client:
        yield Ctx(server, client, statuses)


def expect(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.read()[:300])
    if code is not None:
        assert r.json()["error"]["code"] == code, r.json()


def expect_one_of(r: httpx.Response, allowed: dict[int, set[str] | None]) -> None:
    assert r.status_code in allowed, (r.status_code, r.read()[:300])
    codes = allowed[r.status_code]
    if codes is not None:
        assert r.json()["error"]["code"] in codes, r.json()


def captions(ctx: Ctx, text: str, voice: str = "espeak/en-us") -> list[dict[str, Any]]:
    r = ctx.http.post(
        "/dev/captioned_speech", json={"model": "tts-1", "voice": voice, "input": text, "stream": False}
    )
    expect(r, 200)
    words: list[dict[str, Any]] = r.json()["timestamps"]
    return words


# --- audio fixtures -------------------------------------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def raw_wav(rate: int = 16000, channels: int = 1, width: int = 2, frames: int = 1600, bits: int = 0) -> bytes:
    data = bytes(frames * channels * width)
    fmt = struct.pack(
        "<HHIIHH", 1, channels, rate, rate * channels * width, channels * width, bits or width * 8
    )
    return (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", len(data)) + data
    )  # fmt: skip


SPEECH = "fsdd_string_george_a.wav"  # 5.7 s of digits read aloud


def speech_utterance() -> tuple[bytes, str]:
    u = by_name(SPEECH)
    return u.path.read_bytes(), u.text


def speech_pcm(rate: int) -> bytes:
    return pcm16(by_name(SPEECH).path, rate)


def encode(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=container) as c:
        stream = c.add_stream(codec, rate=rate)
        stream.layout = "mono"  # type: ignore[attr-defined]
        frame = av.AudioFrame.from_ndarray(
            (np.clip(samples, -1, 1) * 32767).astype("<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):  # type: ignore[attr-defined]
            c.mux(packet)
        for packet in stream.encode(None):  # type: ignore[attr-defined]
            c.mux(packet)
    return out.getvalue()


def video_only_mp4() -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as c:
        stream = c.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"  # type: ignore[attr-defined]
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):  # type: ignore[attr-defined]
                c.mux(packet)
        for packet in stream.encode(None):  # type: ignore[attr-defined]
            c.mux(packet)
    return out.getvalue()


# --- WebSocket helpers ------------------------------------------------------------------------------

STREAM_CONFIG = {"type": "config", "sample_rate_hz": 16000, "encoding": "linear16", "language": "en"}


@contextlib.contextmanager
def transcribe_session(
    ctx: Ctx, config: dict[str, Any] | None = None, **kwargs: Any
) -> Iterator[ClientConnection]:
    with ctx.ws("/v1/stream/transcribe", **kwargs) as ws:
        ws.send(json.dumps(config or STREAM_CONFIG))
        ready = json.loads(ws.recv(timeout=scaled(60)))
        assert ready["type"] == "ready", ready
        yield ws


def next_event(ws: ClientConnection, timeout_s: float = 30) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(ws.recv(timeout=scaled(timeout_s)))
    return event


def end_normally(ctx: Ctx, ws: ClientConnection, end: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Send ``end``; return the events up to the close, which must be 1000 (the session was open)."""
    ws.send(json.dumps(end or {"type": "end"}))
    events, code = drain(ws, timeout_s=60)
    assert code == 1000, (code, events)
    ctx.ws_status(code)
    return events


def closed_with(ctx: Ctx, ws: ClientConnection, timeout_s: float = 30) -> tuple[list[dict[str, Any]], int]:
    events: list[dict[str, Any]] = []
    deadline = deadline_in(timeout_s)
    try:
        while time.monotonic() < deadline:
            message = ws.recv(timeout=remaining(deadline))
            if isinstance(message, str):
                events.append(json.loads(message))
    except ConnectionClosed:
        pass
    code = ws.close_code
    assert code is not None, "the server did not close the socket"
    ctx.ws_status(code)
    return events, code


@contextlib.contextmanager
def realtime(ctx: Ctx, beta: bool = True) -> Iterator[ClientConnection]:
    with ctx.ws("/v1/realtime" + ("?intent=transcription" if beta else "")) as ws:
        created = next_event(ws, 60)
        assert created["type"].endswith(".created"), created
        yield ws


def realtime_errors_then_alive(ws: ClientConnection) -> None:
    """The session still answers: a clear is acknowledged."""
    ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
    collect_until(ws, lambda e: e["type"] == "input_audio_buffer.cleared")


def append(ws: ClientConnection, pcm: bytes, step: int = 9600) -> None:
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step]).decode()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))


# ==================================================================================================
# A. TTS text and request validation
# ==================================================================================================


@row("K3")
def _k3(ctx: Ctx) -> None:
    r = ctx.speech(
        input="[pause:1s] Hello", response_format="wav", stream=False, voice="piper/en_US-joe-medium"
    )
    expect(r, 200)
    samples, rate = decode(r.content, "wav")
    lead = samples[: int(0.9 * rate)]
    assert float(np.abs(lead).max()) < 1e-3  # leading silence...
    assert float(np.abs(samples[int(1.0 * rate) :]).max()) > 0.05  # ...then speech
    assert "hello" in ctx.transcribe(r.content).json()["text"].lower()


@row("K4")
def _k4(ctx: Ctx) -> None:
    for text in ("[pause=1.5] Hello world.", "[PAUSE 1.0] Hello world.", "[silent 1s] Hello world."):
        tag = text.split("]")[0] + "]"
        r = ctx.speech(input=text, response_format="wav", stream=False, voice="piper/en_US-joe-medium")
        expect(r, 200)
        warning = r.headers["x-voxserve-warning"]
        assert warning.startswith("invalid_tag:") and tag in warning, warning
        heard = ctx.transcribe(r.content).json()["text"].lower()
        assert "hello" in heard and not any(w in heard for w in ("pause", "silent", "1.5")), (
            heard
        )  # never spoken
        expect(ctx.speech(input=text, markup="strict"), 422, "invalid_tag")
    expect(
        ctx.speech(input="Hello [pause:30s] world"), 422, "invalid_tag"
    )  # out of range, never hours of silence


def located(ctx: Ctx, text: str, voice: str = "espeak/en-us") -> list[tuple[str, str]]:
    """Each timestamp's word and the input characters its offsets point at."""
    out = []
    for w in captions(ctx, text, voice):
        assert 0 <= w["source_start"] <= w["source_end"] <= len(text), w
        out.append((w["word"], text[w["source_start"] : w["source_end"]]))
    return out


@row("K6")
def _k6(ctx: Ctx) -> None:
    for voice in ("espeak/en-us", "piper/en_US-joe-medium"):
        words = located(ctx, "It is 40–60°C today.", voice)
        assert not any(w.endswith("-") or "°" in w for w, _ in words), words
        by_word = dict(words)
        assert by_word["forty"] == by_word["sixty"] == "40–60°C", words
        assert by_word["It"] == "It" and by_word["today"] == "today", words


@row("K7")
def _k7(ctx: Ctx) -> None:
    text = "The price will be $100 after 9:30PM."
    for voice in ("espeak/en-us", "piper/en_US-joe-medium"):
        words = located(ctx, text, voice)
        spoken = " ".join(w for w, _ in words).lower()
        assert "dollars" in spoken and "nine" in spoken and "thirty" in spoken, spoken
        assert not any("thirtypm" in w.lower() for w, _ in words), words
        by_word = dict((w.lower(), src) for w, src in words)
        assert by_word["hundred"] == by_word["dollars"] == "$100", words
        assert by_word["nine"] == by_word["thirty"] == "9:30PM", words
        assert by_word["price"] == "price" and by_word["after"] == "after", words


@row("K8")
def _k8(ctx: Ctx) -> None:
    # The override is spoken, not its text: Whisper hears the IPA's words, never "bla bla".
    r = ctx.speech(
        input="[bla bla](/ðɪs ɪz ˈoʊnli ɐ tˈɛst/)",
        response_format="wav",
        stream=False,
        voice="piper/en_US-joe-medium",
    )
    expect(r, 200)
    heard = ctx.transcribe(r.content).json()["text"].lower()
    assert "test" in heard and "bla" not in heard, heard
    expect(ctx.speech(input="Say [x](/€€/) now.", voice="piper/en_US-joe-medium"), 422, "invalid_phonemes")
    expect(ctx.speech(input="Say [x](/ɪz/) now.", voice="espeak/en-us"), 422, "phonemes_not_supported")


K9_PATTERNS = ["a", "a.", ".a", "a@", "9"]


@row("K9")
def _k9(ctx: Ctx) -> None:
    for unit in K9_PATTERNS:
        big = unit * (100_000 // len(unit)) if unit != "9" else "9" * 80_000
        expect(ctx.speech(input=big), 413, "text_too_long")
    # Just under the limit the normaliser is linear and runs off the loop: the first audio (or the
    # 422) comes (a super-linear normaliser would outlast the give-up bound), and /health answers.
    for unit in K9_PATTERNS:
        text = unit * (4096 // len(unit))
        body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
        with ctx.http.stream("POST", "/v1/audio/speech", json=body, timeout=scaled(15)) as r:
            assert r.status_code in (200, 413, 422), (unit, r.status_code)
            if r.status_code == 413:  # 4096 nines: within the characters, over max_speech_s
                assert json.loads(r.read())["error"]["code"] == "speech_too_long", unit
            ctx.statuses.append(("K9 stream", r.status_code))
        expect(ctx.http.get("/health"), 200)


@row("K15")
def _k15(ctx: Ctx) -> None:
    text = "Call 555-123-4567 or visit https://example.com, it costs $5."
    expect(ctx.speech(input=text, response_format="pcm", normalization_options={"normalize": False}), 200)
    options = {"url_normalization": False, "phone_normalization": False, "unit_normalization": True}
    expect(ctx.speech(input=text, response_format="pcm", normalization_options=options), 200)
    bad = ctx.speech(input=text, normalization_options={"no_such_toggle": True})
    expect(bad, 422, "unknown_field")


@row("K16")
def _k16(ctx: Ctx) -> None:
    # Contractions are expanded before G2P: the engine speaks (and times) "how are", never "harry".
    expect(ctx.speech(input="how're you doing?", response_format="pcm"), 200)
    words = [w["word"].lower() for w in captions(ctx, "how're you doing?")]
    assert words[:2] == ["how", "are"], words


@row("K17")
def _k17(ctx: Ctx) -> None:
    expect(ctx.speech(voice={"id": "voice_1234"}), 404, "unknown_voice")
    r = ctx.speech(voice={"id": "alloy"}, response_format="pcm")
    expect(r, 200)


@row("K18")
def _k18(ctx: Ctx) -> None:
    for voice in ("ballad", "verse", "marin", "cedar"):
        r = ctx.speech(voice=voice, response_format="pcm")
        expect(r, 200)
        assert r.headers["x-voxserve-voice"]


@row("K19")
def _k19(ctx: Ctx) -> None:
    r = ctx.speech(instructions="speak angrily", response_format="pcm")
    expect(r, 200)
    assert r.headers["x-voxserve-ignored"] == "instructions"
    r = ctx.speech(stream_format="sse", response_format="pcm")
    expect(r, 200)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[0]["type"] == "speech.audio.delta" and events[-1]["type"] == "speech.audio.done"


@row("K20")
def _k20(ctx: Ctx) -> None:
    expect(ctx.speech(input="a" * 1_048_576), 413, "body_too_large")


@row("K21")
def _k21(ctx: Ctx) -> None:
    expect(ctx.speech(lang_code="x", stream=True), 422, "unknown_field")


@row("S1")
def _s1(ctx: Ctx) -> None:
    for speed in (0.25, 3.0, 4.0):
        expect(ctx.speech(speed=speed, response_format="pcm"), 200)
    for speed in (0.1, 4.5, -1):
        expect(ctx.speech(speed=speed), 422, "invalid_speed")


@row("S2")
def _s2(ctx: Ctx) -> None:
    aliases = ctx.http.get("/v1/audio/voices").json()["aliases"]
    r = ctx.speech(model="kokoro", voice="alloy", response_format="pcm")
    expect(r, 200)
    assert r.headers["x-voxserve-voice"] == aliases["alloy"]  # the documented alias, not a silent swap
    expect(ctx.speech(model="kokoro", voice="no_such_voice"), 404, "unknown_voice")


@row("O2")
def _o2(ctx: Ctx) -> None:
    text = 'He said "hi".'
    assert normalize_text(text) == text  # quotes and the final full stop are kept
    expect(ctx.speech(input=text, response_format="pcm"), 200)


@row("P7")
def _p7(ctx: Ctx) -> None:
    expect(ctx.speech(input=""), 422, "no_speakable_text")


@row("P8")
def _p8(ctx: Ctx) -> None:
    expect(ctx.speech(voice="typo"), 404, "unknown_voice")


@row("TX1")
def _tx1(ctx: Ctx) -> None:
    for text in ("😀🎉👍", "...!?—;", "   \n\t  ", "\u200b\u200d"):
        expect(ctx.speech(input=text), 422, "no_speakable_text")


@row("TX2")
def _tx2(ctx: Ctx) -> None:
    # Control, bidi and lone-surrogate characters are stripped (documented in normalize.py), also with
    # normalisation off (that reached espeak-ng and was a 500), and on /dev/phonemize (also a 500).
    for escaped in ("\\u0000", "\\u001b[31m", "\\u202e", "\\ud800"):
        for options in ("", ', "normalization_options": {"normalize": false}'):
            body = '{"model": "tts-1", "voice": "alloy", "response_format": "pcm", '
            body += f'"input": "Hello {escaped} world"{options}}}'
            expect_one_of(ctx.raw_speech(body.encode()), {200: None, 422: None})
        r = ctx.http.post(
            "/dev/phonemize",
            content=f'{{"text": "Hello {escaped} world"}}'.encode(),
            headers={"content-type": "application/json"},
        )
        expect_one_of(r, {200: None, 422: None})
    expect(
        ctx.raw_speech(b'{"model": "tts-1", "voice": "alloy", "input": "\\u0000"}'), 422, "no_speakable_text"
    )


@row("TX3")
def _tx3(ctx: Ctx) -> None:
    expect(ctx.speech(input="a" + "\u0301" * 10_000), 413, "text_too_long")
    # 4000 combining marks: linear work (a super-linear path would outlast the give-up bound).
    expect(ctx.speech(input="a" + "\u0301" * 4000, response_format="pcm", give_up_s=15), 200)
    expect(ctx.speech(input="👩‍👩‍👧‍👦 👨🏽‍💻"), 422, "no_speakable_text")
    expect(ctx.speech(input="Hello שלום مرحبا world.", response_format="pcm"), 200)
    expect_one_of(
        ctx.speech(input="𝐇𝐞𝐥𝐥𝐨 𝕨𝕠𝕣𝕝𝕕", response_format="pcm"), {200: None, 422: {"no_speakable_text"}}
    )


@row("TX4")
def _tx4(ctx: Ctx) -> None:
    for bad in ("../../etc/passwd", "piper/../../etc/passwd", "http://127.0.0.1:1/x", "/etc/passwd"):
        expect_one_of(ctx.speech(voice=bad), {404: {"unknown_voice"}, 422: None})
        expect_one_of(ctx.speech(model=bad), {404: {"model_not_found"}, 422: None})
    expect_one_of(ctx.speech(voice="v" * 10_000), {404: {"unknown_voice"}, 422: None})
    expect(ctx.speech(model="m" * 10_000), 422)


# ==================================================================================================
# B. TTS streaming and containers
# ==================================================================================================


@row("K1")
def _k1(ctx: Ctx) -> None:
    r = ctx.http.post(
        "/dev/generate_from_phonemes",
        json={"phonemes": "həlˈoʊ wˈɜːld", "voice": "piper/en_US-joe-medium"},
    )
    expect(r, 200)
    assert duration(r.content, "wav") > 0.3


@row("K2")
def _k2(ctx: Ctx) -> None:
    long = ctx.http.post(
        "/dev/generate_from_phonemes", json={"phonemes": "ə" * 600, "voice": "kokoro/jf_alpha"}
    )
    expect(long, 422, "phonemes_too_long")
    unknown = ctx.http.post(
        "/dev/generate_from_phonemes", json={"phonemes": "həlˈoʊ", "voice": "kokoro/nobody"}
    )
    expect(unknown, 404, "unknown_voice")


@row("K10")
def _k10(ctx: Ctx) -> None:
    text = "This is the first sentence. Here is the second sentence."
    r = ctx.speech(input=text, response_format="wav")
    expect(r, 200)
    assert r.content.count(b"RIFF") == 1 and r.content.count(b"WAVEfmt ") == 1
    samples, rate = decode(r.content, "wav")
    assert len(samples) / rate > 2.0  # both sentences decode, not only the first


@row("K11")
def _k11(ctx: Ctx) -> None:
    text = "Test. This is a longer sentence, and the last word is Constantinople."
    for fmt in ("opus", "mp3", "flac", "aac", "wav"):
        r = ctx.speech(input=text, response_format=fmt, stream=False, speed=1.2)
        expect(r, 200)
        assert int(r.headers["content-length"]) == len(r.content)
        assert duration(r.content, fmt) > 2.5, fmt  # the whole text, the last page included


@row("K12")
def _k12(ctx: Ctx) -> None:
    # The documented maximum, with a message that names the long-form path; never a silent
    # truncation. The job path itself (a 13 500-character text, past 12 m 45 s of audio) is in
    # test_speech_jobs_e2e.py.
    r = ctx.speech(input="word " * 819 + "ab")  # 4097 characters
    expect(r, 413, "text_too_long")
    assert "/v1/audio/speech/jobs" in r.json()["error"]["message"]
    job = ctx.http.post(
        "/v1/audio/speech/jobs", json={"model": "tts-1", "voice": "alloy", "input": "word " * 819 + "ab"}
    )
    expect(job, 202)
    expect(ctx.http.delete(f"/v1/audio/speech/jobs/{job.json()['id']}"), 200)
    body = {"model": "tts-1", "voice": "alloy", "input": ("Word. " * 683)[:4096], "response_format": "pcm"}
    with ctx.http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        ctx.statuses.append(("K12 stream", r.status_code))


@row("K13")
def _k13(ctx: Ctx) -> None:
    for voice in ("espeak/en-us", "piper/en_US-joe-medium"):
        words = captions(ctx, "Hello world! Welcome to voxserve, the speech server.", voice)
        keys = [(w["word"], w["start_time"]) for w in words]
        assert len(keys) == len(set(keys)), words
        starts = [w["start_time"] for w in words]
        assert starts == sorted(starts) and all(w["end_time"] >= w["start_time"] for w in words)


@row("K14")
def _k14(ctx: Ctx) -> None:
    for voice in ("kokoro/jf_alpha", "espeak/en-us"):
        body = {"model": "tts-1", "voice": voice, "input": "Hello world. Welcome.", "stream": True}
        r = ctx.http.post("/dev/captioned_speech", json=body)
        expect(r, 200)
        lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        assert lines and all(isinstance(line["timestamps"], list) for line in lines)
        assert any(line["timestamps"] for line in lines)
    body = {"model": "tts-1", "voice": "ef_dora", "input": "Hola.", "stream": True}
    expect(ctx.http.post("/dev/captioned_speech", json=body), 404, "unknown_voice")


RT4_TEXT = (
    "Oh! Let me tell you about something that happened to me at exactly at 12pm on November 29th, 2024! "
    "I was in professor's robotics lab, and everyone was so excited about the demo."
)


@row("RT4")
def _rt4(ctx: Ctx) -> None:
    with ctx.ws("/v1/stream/speak") as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy", "response_format": "pcm"}))
        assert next_event(ws, 60)["type"] == "ready"
        for i in range(0, len(RT4_TEXT), 7):  # in token-sized pieces, as an LLM sends it
            ws.send(json.dumps({"type": "text", "text": RT4_TEXT[i : i + 7]}))
        ws.send(json.dumps({"type": "end"}))
        sentences: list[str] = []
        deadline = deadline_in(120)
        while time.monotonic() < deadline:
            try:
                message = ws.recv(timeout=remaining(deadline))
            except ConnectionClosed:
                break
            if isinstance(message, str):
                event = json.loads(message)
                assert event["type"] != "error", event
                if event["type"] == "sentence":
                    sentences.append(event["text"])
        assert ws.close_code == 1000
        ctx.ws_status(ws.close_code)
    words = RT4_TEXT.split()
    assert " ".join(sentences).split() == words  # every cut falls between words
    assert len(sentences) > 1


@row("P6")
def _p6(ctx: Ctx) -> None:
    # The pad is the trailing_silence_ms setting (default 0, unit-tested); here: the last word is in the
    # audio and the stream ends after the last sample (non-streamed wav).
    r = ctx.speech(input="Turn off the lights in the kitchen.", response_format="wav", stream=False)
    expect(r, 200)
    samples, rate = decode(r.content, "wav")
    assert float(np.abs(samples[-rate // 2 :]).max()) > 0.0 or len(samples) > rate


@row("B2")
def _b2(ctx: Ctx) -> None:
    # Silent engine output is a 502 output_error (unit-tested with a fake engine); real output is not.
    r = ctx.speech(input="Hello.", response_format="pcm", stream=False)
    expect(r, 200)
    assert float(np.abs(decode(r.content, "pcm")[0]).max()) > 0.05


@row("B3")
def _b3(ctx: Ctx) -> None:
    r = ctx.speech(response_format="pcm")
    expect(r, 200)
    assert r.headers["x-audio-encoding"] == "pcm_s16le"
    assert r.headers["x-audio-sample-rate"] == "24000"
    assert r.headers["x-audio-channels"] == "1"


# ==================================================================================================
# D. Speech-to-text
# ==================================================================================================


def pink_noise(seconds: float, rate: int = 16000, dbfs: float = -40) -> np.ndarray:
    rng = np.random.default_rng(0)
    white = np.fft.rfft(rng.standard_normal(int(seconds * rate)))
    white /= np.sqrt(np.arange(1, len(white) + 1))
    noise = np.fft.irfft(white).astype(np.float32)
    return noise / np.sqrt(np.mean(noise**2)) * 10 ** (dbfs / 20)


@row("ST1")
def _st1(ctx: Ctx) -> None:
    for samples in (np.zeros(10 * 16000, dtype=np.float32), pink_noise(10)):
        r = ctx.transcribe(wav_bytes(samples))
        expect(r, 200)
        assert r.json()["text"] == "", r.json()
    with transcribe_session(ctx) as ws:
        pcm = (pink_noise(10) * 32767).astype("<i2").tobytes()
        for i in range(0, len(pcm), 32000):
            ws.send(pcm[i : i + 32000])
        events = end_normally(ctx, ws)
    assert not [e for e in events if e["type"] == "result" and e["results"][0]["is_final"]], events


@row("ST5")
def _st5(ctx: Ctx) -> None:
    pcm = speech_pcm(16000)
    with transcribe_session(ctx, STREAM_CONFIG | {"interim_results": False}) as ws:
        for i in range(0, len(pcm), 16000):
            ws.send(pcm[i : i + 16000])
        events = end_normally(ctx, ws)  # no trailing silence: end must flush the final
    finals = [e for e in events if e["type"] == "result" and e["results"][0]["is_final"]]
    assert finals


@row("ST6")
def _st6(ctx: Ctx) -> None:
    with transcribe_session(ctx) as ws:
        events = end_normally(ctx, ws)  # the end of a stream with no audio at all
    assert not [e for e in events if e["type"] == "error"], events


@row("ST7")
def _st7(ctx: Ctx) -> None:
    with realtime(ctx) as ws:
        pcm = speech_pcm(24000)
        half = len(pcm) // 4 * 2  # whole 16-bit samples
        append(ws, pcm[:half])
        collect_until(ws, lambda e: e["type"] == "input_audio_buffer.speech_started", 60)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))  # while speech is still going on
        append(ws, pcm[half:] + bytes(24000 * 2))
        events = collect_until(
            ws, lambda e: e["type"] == "conversation.item.input_audio_transcription.completed", 90
        )
        assert not [e for e in events if e["type"] == "error"], events
        realtime_errors_then_alive(ws)


@row("ST8")
def _st8(ctx: Ctx) -> None:
    with realtime(ctx) as ws:
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        event = collect_until(ws, lambda e: e["type"] == "error")[-1]
        assert event["error"]["code"] == "input_audio_buffer_commit_empty"
        append(ws, bytes(24000 * 2 // 20))  # 50 ms
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        event = collect_until(ws, lambda e: e["type"] == "error")[-1]
        assert event["error"]["code"] == "input_audio_buffer_commit_empty"
        realtime_errors_then_alive(ws)


@row("ST9")
def _st9(ctx: Ctx) -> None:
    with realtime(ctx) as ws:
        ws.send(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
        collect_until(ws, lambda e: e["type"] == "transcription_session.updated")
        append(ws, speech_pcm(24000))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # while it is being transcribed
        collect_until(ws, lambda e: e["type"] == "input_audio_buffer.cleared", 60)
        realtime_errors_then_alive(ws)


@row("ST10")
def _st10(ctx: Ctx) -> None:
    with realtime(ctx, beta=False) as ws:
        td = {"type": "server_vad", "create_response": True, "interrupt_response": True}
        update = {"type": "transcription", "audio": {"input": {"turn_detection": td}}}
        ws.send(json.dumps({"type": "session.update", "session": update}))
        event = collect_until(ws, lambda e: e["type"] in ("session.updated", "error"))[-1]
        assert event["type"] == "session.updated", event
        realtime_errors_then_alive(ws)


@row("ST18")
def _st18(ctx: Ctx) -> None:
    with transcribe_session(ctx, STREAM_CONFIG | {"encoding": "float32"}) as ws:
        ws.send(bytes(6))  # not a whole number of float32 samples
        assert next_event(ws)["code"] == "misaligned_pcm"
        ws.send(np.zeros(1600, dtype="<f4").tobytes())
        end_normally(ctx, ws)


@row("ST20")
def _st20(ctx: Ctx) -> None:
    for rate in (8000, 44100, 48000):
        with transcribe_session(ctx, STREAM_CONFIG | {"sample_rate_hz": rate}) as ws:
            ws.send(speech_pcm(rate)[: rate * 2])
            end_normally(ctx, ws)
    for bad in (
        {"encoding": "linear16_be"},
        {"channels": 2, "encoding": "stereo16"},
        {"sample_rate_hz": 96000},
    ):
        with ctx.ws("/v1/stream/transcribe") as ws:
            ws.send(json.dumps(STREAM_CONFIG | bad))
            events, code = closed_with(ctx, ws)
            assert code == 1008 and events[0]["code"] == "invalid_config", (bad, events)
    with transcribe_session(ctx) as ws:
        ws.send(bytes(3))  # an odd-length linear16 frame
        assert next_event(ws)["code"] == "misaligned_pcm"
        ws.send(json.dumps({"type": "audio", "audio": "AAAA AAAA"}))  # base64 with whitespace
        assert next_event(ws)["code"] == "invalid_base64"
        ws.send("\x00\x01 not json")  # a text frame with binary content
        assert next_event(ws)["code"] == "invalid_json"
        end_normally(ctx, ws)


@row("ST21")
def _st21(ctx: Ctx) -> None:
    with realtime(ctx) as ws:
        ws.send("{not json")
        assert collect_until(ws, lambda e: e["type"] == "error")[-1]["error"]["code"] == "invalid_json"
        session = {"input_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1"}}
        ws.send(json.dumps({"type": "transcription_session.update", "session": session}))
        collect_until(ws, lambda e: e["type"] == "transcription_session.updated")
        ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription"}}))
        collect_until(ws, lambda e: e["type"] == "session.updated")
        realtime_errors_then_alive(ws)


@row("ST22")
def _st22(ctx: Ctx) -> None:
    data, _ = speech_utterance()
    expect(ctx.transcribe(data, model="whisper-large-v9"), 404, "model_not_found")
    with ctx.ws("/v1/stream/transcribe") as ws:
        ws.send(json.dumps(STREAM_CONFIG | {"model": "whisper-large-v9"}))
        events, code = closed_with(ctx, ws)
        assert code == 1008 and events[0]["code"] == "model_not_found"  # as on REST


@row("ST23")
def _st23(ctx: Ctx) -> None:
    samples, rate = decode(speech_utterance()[0], "wav")
    assert rate == 16000
    r = ctx.transcribe(encode(samples, 16000, "webm", "libopus"), name="speech.webm")
    expect(r, 200)
    assert r.json()["text"].strip()
    for junk in (b"\x00\xffjunk" * 100, np.random.default_rng(1).bytes(50_000)):
        # Refused without a long decode attempt (which would outlast the give-up bound).
        expect(ctx.transcribe(junk, name="junk.webm", give_up_s=2), 415, "unsupported_media_type")


@row("ST24")
def _st24(ctx: Ctx) -> None:
    data, _ = speech_utterance()
    r = ctx.transcribe(data, stream="true")
    expect(r, 200)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "transcript.text.done"
    deltas = "".join(e["delta"] for e in events if e["type"] == "transcript.text.delta")
    assert events[-1]["text"] == deltas.strip() and events[-1]["text"]
    assert "[DONE]" not in r.text


# ==================================================================================================
# E. Generic malformed input
# ==================================================================================================


@row("M1")
def _m1(ctx: Ctx) -> None:
    expect(ctx.transcribe(b""), 400, "empty_audio")


@row("M2")
def _m2(ctx: Ctx) -> None:
    # voxserve's documented rule: a truncated file decodes to the audio that is there.
    full = wav_bytes(np.zeros(16000 * 10, dtype=np.float32))
    expect(ctx.transcribe(full[: 44 + 3200]), 200)  # data declares 10 s, 0.1 s present
    wrong = bytearray(wav_bytes(np.zeros(16000, dtype=np.float32)))
    wrong[4:8] = struct.pack("<I", 12)  # a wrong RIFF size
    expect(ctx.transcribe(bytes(wrong)), 200)


@row("M3")
def _m3(ctx: Ctx) -> None:
    port = int(ctx.server.url.rsplit(":", 1)[1])
    # The body is never sent: a reply at all shows the server refused on the header alone (waiting
    # for the body would end in the body deadline's 408 instead).
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(10)) as s:
        s.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b\r\nContent-Length: 2147483648\r\n\r\n--b\r\n"
        )
        reply = b""
        while chunk := s.recv(65536):  # the server answers and closes ("connection: close")
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    ctx.statuses.append(("M3 raw", status))
    assert status == 413 and b"file_too_large" in reply, reply[:300]
    # A WAV whose data chunk claims 2 GB but holds 1 s: voxserve's documented truncation rule (M2)
    # decodes the second that is there; nothing is allocated for the claim.
    header = bytearray(raw_wav(frames=16000))
    header[40:44] = struct.pack("<I", 2_000_000_000)
    expect(ctx.transcribe(bytes(header)), 200)


@row("M4")
def _m4(ctx: Ctx) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(27):  # 27 MiB, over the 25 MiB limit
            yield bytes(1 << 20)

    r = ctx.http.post(
        "/v1/audio/transcriptions",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    expect(r, 413, "file_too_large")


@row("M5")
def _m5(ctx: Ctx) -> None:
    # Silence compresses to almost nothing: ~2000 s of FLAC in a small upload.
    rate = 8000
    silence = encode(np.zeros(rate * 2000, dtype=np.float32), rate, "flac", "flac")
    assert len(silence) < 2_000_000
    # Refused without decoding the 2000 s (which would outlast the give-up bound).
    expect(ctx.transcribe(silence, name="long.flac", give_up_s=10), 413, "audio_too_long")


@row("M6")
def _m6(ctx: Ctx) -> None:
    for header in ({"rate": 1}, {"rate": 10_000_000}, {"channels": 9}, {"channels": 0}, {"width": 8}):
        expect(ctx.transcribe(raw_wav(**header)), 422, "unsupported_format")
    expect(ctx.transcribe(raw_wav(rate=0)), 415, "unsupported_media_type")  # FFmpeg cannot open it
    # voxserve's rule: 12 valid bits stored in 16-bit words is valid WAV, and decodes.
    expect(ctx.transcribe(raw_wav(bits=12)), 200)


@row("M7")
def _m7(ctx: Ctx) -> None:
    u = by_name(SPEECH)
    import soxr

    samples, rate = decode(u.path.read_bytes(), "wav")
    for target in (8000, 22050, 44100, 48000):
        r = ctx.transcribe(wav_bytes(soxr.resample(samples, rate, target), target))
        expect(r, 200)
        assert r.json()["text"].strip(), target


@row("M8")
def _m8(ctx: Ctx) -> None:
    with transcribe_session(ctx) as ws:
        ws.send(bytes(1001))
        assert next_event(ws)["code"] == "misaligned_pcm"
        end_normally(ctx, ws)
    with realtime(ctx) as ws:
        ws.send(
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(3)).decode()})
        )
        assert collect_until(ws, lambda e: e["type"] == "error")[-1]["error"]["code"] == "misaligned_pcm"
        realtime_errors_then_alive(ws)


@row("M9")
def _m9(ctx: Ctx) -> None:
    with transcribe_session(ctx, STREAM_CONFIG | {"encoding": "float32"}) as ws:
        for value in (float("nan"), float("inf"), float("-inf")):
            ws.send(np.array([0.0, value, 0.0, 0.0], dtype="<f4").tobytes())
            assert next_event(ws)["code"] == "non_finite_samples"
        ws.send(np.array([1e30, -1e30, 0.0, 0.5], dtype="<f4").tobytes())  # clipped, accepted
        end_normally(ctx, ws)


@row("M10")
def _m10(ctx: Ctx) -> None:
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + bytes(17)
    zipped = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a.txt", "hello")
    for name, data in (
        ("a.txt", b"Hello, this is plain text and not audio at all.\n" * 20),
        ("a.png", png),
        ("a.zip", zipped.getvalue()),
        ("a.mp4", video_only_mp4()),
    ):
        expect(ctx.transcribe(data, name=name), 415, "unsupported_media_type")


@row("M11")
def _m11(ctx: Ctx) -> None:
    bad = ("!!!!", "AAA", "AAAA=", "data:audio/wav;base64,AAAA", "AA-_")
    with transcribe_session(ctx) as ws:
        for text in bad:
            ws.send(json.dumps({"type": "audio", "audio": text}))
            assert next_event(ws)["code"] == "invalid_base64", text
        end_normally(ctx, ws)
    with realtime(ctx) as ws:
        for text in bad:
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": text}))
            assert collect_until(ws, lambda e: e["type"] == "error")[-1]["error"]["code"] == "invalid_base64"
        realtime_errors_then_alive(ws)


@row("M12")
def _m12(ctx: Ctx) -> None:
    expect(ctx.speech(input="a" * 4097), 413, "text_too_long")
    expect(ctx.speech(input="a" * 1_000_000), 413, "text_too_long")  # under the 1 MiB body limit
    expect(ctx.speech(input="a" * 10_000_000), 413, "body_too_large")
    # Within the characters, over what would be spoken: 4096 nines are 17 minutes of audio.
    expect(ctx.speech(input="9" * 4096), 413, "speech_too_long")


@row("M13")
def _m13(ctx: Ctx) -> None:
    expect(ctx.raw_speech(b'{"model": "tts-1", "voice": '), 400, "invalid_json")
    expect(ctx.raw_speech(b"[1, 2, 3]"), 400, "invalid_json")
    expect(ctx.speech(input=123), 422, "invalid_input")
    expect(ctx.speech(speed="fast"), 422, "invalid_speed")
    expect(ctx.speech(extra_field=True), 422, "unknown_field")
    for deep in (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"[" * 10_000 + b"]" * 10_000):
        expect_one_of(ctx.raw_speech(deep), {400: None, 422: None})


@row("M14")
def _m14(ctx: Ctx) -> None:
    with ctx.ws("/v1/stream/speak") as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy"}))
        assert next_event(ws, 60)["type"] == "ready"
        ws.send(b"\x00\x01binary")
        assert next_event(ws)["code"] == "unexpected_binary"
        ws.send(json.dumps({"type": "no_such_event"}))
        assert next_event(ws)["code"] == "unknown_message"
        end_normally(ctx, ws)
    with transcribe_session(ctx) as ws:
        ws.send(json.dumps({"type": "no_such_event"}))
        assert next_event(ws)["code"] == "unknown_message"
        end_normally(ctx, ws)
    with ctx.ws("/v1/stream/transcribe") as ws:  # an event before the config: documented 1008
        ws.send(json.dumps({"type": "audio", "audio": "AAAA"}))
        events, code = closed_with(ctx, ws)
        assert code == 1008 and events[0]["code"] == "invalid_config"


@row("M15")
def _m15(ctx: Ctx) -> None:
    with ctx.ws("/v1/stream/speak") as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy"}))
        assert next_event(ws, 60)["type"] == "ready"
        ws.send(b"\xff\xfe not utf-8", text=True)
        _, code = closed_with(ctx, ws)
        assert code == 1007


@row("M16")
def _m16(ctx: Ctx) -> None:
    limit = 262_144
    with transcribe_session(ctx, compression=None) as ws:
        ws.send(bytes(limit))  # exactly at the limit: accepted
        ws.send(bytes(limit + 2))  # over it (an even length, so only the size is wrong)
        _, code = closed_with(ctx, ws)
        assert code == 1009


@row("M17")
def _m17(ctx: Ctx) -> None:
    # 1 MiB of zeros compresses to ~1 KiB: the limit is on the message after decompression.
    with transcribe_session(ctx) as ws:
        ws.send(bytes(1 << 20))
        _, code = closed_with(ctx, ws)
        assert code == 1009


@row("M18")
def _m18(ctx: Ctx) -> None:
    # uvicorn parses any headers; the app refuses more than max_headers / max_header_bytes with 431.
    r = ctx.http.get("/health", headers={"X-Big": "a" * 100_000})
    expect(r, 431, "headers_too_large")
    r = ctx.http.get("/health", headers={f"X-H{i}": "v" for i in range(200)})
    expect(r, 431, "headers_too_large")
    expect(ctx.http.get("/health", headers={"X-Fine": "a" * 1000}), 200)
    # The same head in two writes, as a slow link (or a loaded machine) delivers it: still a 431, not
    # uvicorn's 400 and a reset while the client is still sending (h11's 16 KiB head buffer did that).
    host, port = ctx.server.url.removeprefix("http://").split(":")
    head = f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Big: {'a' * 100_000}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=scaled(30)) as sock:
        sock.sendall(head[:40_000])
        time.sleep(0.2)  # a slow sender: the server reads the first part alone
        sock.sendall(head[40_000:])
        reply = b""
        while b"\r\n\r\n" not in reply and len(reply) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]


# ==================================================================================================


@pytest.mark.parametrize("row_id", list(CASES))
def test_corpus(ctx: Ctx, row_id: str) -> None:
    CASES[row_id](ctx)
    server_errors = [(what, status) for what, status in ctx.statuses if status >= 500]
    assert not server_errors, server_errors
    health = httpx.get(f"{ctx.server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
