"""``voxserve.Client`` and ``voxserve.AsyncClient`` against a real server: every method, for real."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from tests.audio_helpers import duration
from tests.e2e.conftest import Server, free_port
from tests.e2e.ws_helpers import pcm16
from tests.speech_dev import by_name
from tests.timing import scaled
from tests.wer import errors, wer

from voxserve import AsyncClient, Client, ClientError
from voxserve.client import (
    RealtimeCompleted,
    RealtimeDelta,
    Sentence,
    SpeakDone,
    TranscriptionDelta,
    TranscriptionDone,
    TranscriptResult,
)

pytestmark = pytest.mark.e2e

TEXT = "The quick brown fox jumps over the lazy dog. Streaming speech should never lose a word."
TOKENS = [
    "The quick",
    " brown fox",
    " jumps over",
    " the lazy",
    " dog.",
    " Streaming speech",
    " should never lose a word.",
]
SPEECH = "librispeech_1272-141231-0002.wav"


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, timeout=60) as c:
        yield c


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, timeout=60) as c:
        yield c


def token_generator() -> Iterator[str]:
    yield from TOKENS


async def async_tokens() -> AsyncIterator[str]:
    for token in TOKENS:
        await asyncio.sleep(0)
        yield token


# --- sync client -------------------------------------------------------------------------------------


def test_system_routes(client: Client) -> None:
    assert client.health() == {"status": "ok"}
    assert client.ready()["status"] == "ready"
    voices = client.voices()
    assert "piper/en_US-joe-medium" in {v["id"] for v in voices["voices"]}
    assert voices["aliases"]["alloy"] == "piper/en_US-joe-medium"
    ids = {m["id"] for m in client.models()}
    assert {"tts-1", "whisper-1"} <= ids
    assert client.model("tts-1")["id"] == "tts-1"
    with pytest.raises(ClientError) as info:
        client.model("no-such-model")
    assert (info.value.code, info.value.status) == ("model_not_found", 404)


def test_speech_and_stream_speech(client: Client) -> None:
    wav = client.speech(TEXT, voice="alloy", response_format="wav")
    assert wav[:4] == b"RIFF"
    seconds = duration(wav, "wav")
    assert 3.0 < seconds < 12.0
    chunks = list(client.stream_speech(TEXT, voice="alloy", response_format="mp3"))
    assert len(chunks) >= 2  # streamed as it was synthesized
    assert duration(b"".join(chunks), "mp3") == pytest.approx(seconds, abs=0.3)
    pcm = client.speech("Faster.", response_format="pcm", speed=2.0)
    assert 0.1 < duration(pcm, "pcm") < 1.5


def test_unknown_voice_is_a_client_error(client: Client) -> None:
    with pytest.raises(ClientError) as info:
        client.speech("Hello.", voice="nobody")
    err = info.value
    assert (err.code, err.status, err.param) == ("unknown_voice", 404, "voice")
    assert "nobody" in err.message
    with pytest.raises(ClientError) as info:
        list(client.stream_speech("Hello.", voice="nobody"))
    assert info.value.code == "unknown_voice"
    with pytest.raises(ClientError) as info:
        list(client.speak_stream("Hello.", voice="nobody"))
    assert (info.value.code, info.value.status) == ("unknown_voice", None)
    with pytest.raises(ClientError) as info:
        client.speech("")
    assert info.value.code == "no_speakable_text"


def test_transcribe_file_path_and_bytes(client: Client) -> None:
    u = by_name(SPEECH)
    result = client.transcribe(u.path)
    assert isinstance(result, dict)
    assert wer(u.text, result["text"]) <= 0.15, result
    text = client.transcribe(u.path.read_bytes(), response_format="text", language="en")
    assert isinstance(text, str) and wer(u.text, text) <= 0.15
    with u.path.open("rb") as f:
        verbose = client.transcribe(f, response_format="verbose_json", timestamp_granularities=["word"])
    assert isinstance(verbose, dict) and verbose["words"]
    translated = client.translate(u.path, response_format="text")
    assert isinstance(translated, str) and wer(u.text, translated) <= 0.15
    with pytest.raises(ClientError) as info:
        client.transcribe(b"this is not audio at all", filename="notes.txt")
    assert (info.value.code, info.value.status) == ("unsupported_media_type", 415)


def test_stream_transcription(client: Client) -> None:
    u = by_name(SPEECH)
    events = list(client.stream_transcription(u.path))
    assert isinstance(events[-1], TranscriptionDone)
    deltas = [e.delta for e in events if isinstance(e, TranscriptionDelta)]
    assert deltas
    assert wer(u.text, events[-1].text) <= 0.15
    assert "".join(deltas).strip() == events[-1].text


def test_transcribe_stream(client: Client) -> None:
    u = by_name(SPEECH)
    pcm = pcm16(u.path)
    frames = (pcm[i : i + 3200] for i in range(0, len(pcm), 3200))  # a microphone's 100 ms frames
    results = list(client.transcribe_stream(frames, sample_rate_hz=16000))
    finals = [r for r in results if r.is_final]
    assert finals and all(isinstance(r, TranscriptResult) for r in results)
    assert all(a.end_s <= b.end_s for a, b in zip(finals, finals[1:], strict=False))
    text = " ".join(r.transcript for r in finals)
    assert wer(u.text, text) <= 0.25, text


def test_realtime_transcribe(client: Client) -> None:
    u = by_name("fleurs_en_007.wav")
    pcm = pcm16(u.path, rate=24000)
    events = list(client.realtime_transcribe(pcm, model="gpt-4o-transcribe"))
    completed = [e for e in events if isinstance(e, RealtimeCompleted)]
    assert completed, events
    assert any(isinstance(e, RealtimeDelta) for e in events)
    text = " ".join(e.transcript for e in completed)
    assert errors(u.text, text)[0] <= 3, text
    # Manual commits: the whole audio is one utterance, committed when it ends.
    manual = list(client.realtime_transcribe(pcm, turn_detection=None))
    assert len([e for e in manual if isinstance(e, RealtimeCompleted)]) == 1
    with pytest.raises(ClientError) as info:
        list(client.realtime_transcribe(pcm, model="no-such-model"))
    assert info.value.code == "model_not_found"


def test_speak_stream_with_a_token_generator(client: Client) -> None:
    sentences: list[Sentence] = []
    audio = b"".join(client.speak_stream(token_generator(), voice="alloy", on_sentence=sentences.append))
    assert " ".join(s.text for s in sentences) == "".join(TOKENS).strip()
    assert sentences[0].start_s == 0.0 and sentences[0].words
    seconds = duration(audio, "pcm")
    assert 3.0 < seconds < 12.0
    events = list(client.speak_stream_events(TEXT, response_format="wav"))
    assert isinstance(events[-1], SpeakDone)
    wav = b"".join(e for e in events if isinstance(e, bytes))
    assert duration(wav, "wav") == pytest.approx(events[-1].audio_s, abs=0.1)
    with pytest.raises(ClientError) as info:
        list(client.speak_stream("Hello.", response_format="aac"))
    assert (info.value.code, info.value.close_code) == ("unsupported_format", None)


def test_a_failing_token_source_is_raised(client: Client) -> None:
    def broken() -> Iterator[str]:
        yield "Hello there. "
        raise ValueError("the LLM went away")

    with pytest.raises(ValueError, match="LLM went away"):
        list(client.speak_stream(broken()))


def test_dev_routes(client: Client) -> None:
    phon = client.phonemize("Hello world.")
    assert phon["phonemes"] and phon["tokens"]
    wav = client.generate_from_phonemes(phon["phonemes"], voice="piper/en_US-joe-medium")
    assert 0.3 < duration(wav, "wav") < 3.0
    captioned = client.captioned_speech("Hello world, again.", voice="espeak/en-us")
    assert captioned.audio_format == "wav"
    assert [w.word for w in captioned.words][:2] == ["Hello", "world"]
    assert duration(captioned.audio, "wav") > 0.5


def test_no_server_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout=5) as c:
        with pytest.raises(ClientError) as info:
            c.health()
        assert info.value.code == "connection_error"
        with pytest.raises(ClientError) as info:
            list(c.speak_stream("Hello."))
        assert info.value.code == "connection_error"


# --- async client ------------------------------------------------------------------------------------


async def test_async_system_and_speech(aclient: AsyncClient) -> None:
    assert await aclient.health() == {"status": "ok"}
    assert (await aclient.ready())["status"] == "ready"
    assert (await aclient.voices())["default"] == "piper/en_US-joe-medium"
    assert "whisper-1" in {m["id"] for m in await aclient.models()}
    assert (await aclient.model("whisper-1"))["id"] == "whisper-1"
    wav = await aclient.speech(TEXT, response_format="wav")
    seconds = duration(wav, "wav")
    chunks = [c async for c in aclient.stream_speech(TEXT, response_format="opus")]
    assert duration(b"".join(chunks), "opus") == pytest.approx(seconds, abs=0.3)
    with pytest.raises(ClientError) as info:
        await aclient.speech("Hello.", voice="nobody")
    assert (info.value.code, info.value.status) == ("unknown_voice", 404)


async def test_async_transcription(aclient: AsyncClient) -> None:
    u = by_name(SPEECH)
    result = await aclient.transcribe(u.path)
    assert isinstance(result, dict) and wer(u.text, result["text"]) <= 0.15
    translated = await aclient.translate(u.path.read_bytes())
    assert isinstance(translated, dict) and wer(u.text, translated["text"]) <= 0.15
    events = [e async for e in aclient.stream_transcription(u.path)]
    assert isinstance(events[-1], TranscriptionDone) and wer(u.text, events[-1].text) <= 0.15
    assert any(isinstance(e, TranscriptionDelta) for e in events)


async def test_async_transcribe_stream_from_an_async_microphone(aclient: AsyncClient) -> None:
    u = by_name(SPEECH)
    pcm = pcm16(u.path)

    async def microphone() -> AsyncIterator[bytes]:
        for i in range(0, len(pcm), 3200):
            await asyncio.sleep(0)
            yield pcm[i : i + 3200]

    async with asyncio.timeout(scaled(120)):
        results = [r async for r in aclient.transcribe_stream(microphone(), interim_results=False)]
    assert results and all(r.is_final for r in results)
    assert wer(u.text, " ".join(r.transcript for r in results)) <= 0.25


async def test_async_realtime_transcribe(aclient: AsyncClient) -> None:
    u = by_name("fleurs_en_007.wav")
    pcm = pcm16(u.path, rate=24000)
    async with asyncio.timeout(scaled(120)):
        events = [e async for e in aclient.realtime_transcribe(pcm)]
    text = " ".join(e.transcript for e in events if isinstance(e, RealtimeCompleted))
    assert errors(u.text, text)[0] <= 3, text


async def test_async_speak_stream_sync_and_async_tokens(aclient: AsyncClient) -> None:
    for source in (token_generator(), async_tokens(), TEXT):
        sentences: list[Sentence] = []
        async with asyncio.timeout(scaled(120)):
            audio = b"".join(
                [c async for c in aclient.speak_stream(source, voice="alloy", on_sentence=sentences.append)]
            )
        assert " ".join(s.text for s in sentences) == TEXT
        assert 3.0 < duration(audio, "pcm") < 12.0
    events = [e async for e in aclient.speak_stream_events(TEXT, response_format="mp3")]
    done = events[-1]
    assert isinstance(done, SpeakDone)
    mp3 = b"".join(e for e in events if isinstance(e, bytes))
    assert duration(mp3, "mp3") == pytest.approx(done.audio_s, abs=0.15)
    with pytest.raises(ClientError) as info:
        _ = [c async for c in aclient.speak_stream("Hello.", voice="nobody")]
    assert info.value.code == "unknown_voice"


async def test_async_speak_stream_does_not_wait_for_a_slow_generator(aclient: AsyncClient) -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow_llm() -> Iterator[str]:
        yield "This first sentence is complete. "
        if not release.wait(scaled(60)):  # blocks its thread, never the loop
            raise TimeoutError("the test never released the generator")
        yield "And here is the rest."
        finished.set()

    audio = bytearray()
    try:
        async with asyncio.timeout(scaled(120)):
            stream = aclient.speak_stream(slow_llm())
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for chunk in stream:
                    if not release.is_set():
                        assert not finished.is_set()
                        release.set()  # audio came before the generator could finish
                    audio += chunk
    finally:
        release.set()
    assert finished.is_set()
    assert 2.0 < duration(bytes(audio), "pcm") < 10.0
