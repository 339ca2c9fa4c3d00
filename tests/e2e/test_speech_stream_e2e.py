"""``voxserve.SpeechStream`` with a real server behind it and with the engines in-process."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from tests.audio_helpers import duration
from tests.e2e.conftest import Server
from tests.timing import scaled
from tests.wer import wer

from voxserve import Client, ClientError, SpeechStream
from voxserve.client import Sentence
from voxserve.config import Settings
from voxserve.errors import UnknownVoice

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


def local_settings() -> Settings:
    return Settings(
        engines=["piper"], preload_engines=["piper"], workers_per_engine=1, stt_models=["tiny.en"]
    )


def token_generator() -> Iterator[str]:
    yield from TOKENS


async def async_tokens() -> AsyncIterator[str]:
    for token in TOKENS:
        await asyncio.sleep(0)
        yield token


def no_workers_left() -> bool:
    return multiprocessing.active_children() == []


class SlowLLM:
    """Yields a complete first sentence, then blocks (in its thread) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self) -> Iterator[str]:
        yield "This first sentence "
        yield "is complete. "
        if not self.release.wait(scaled(60)):
            raise TimeoutError("the test never released the generator")
        yield "And here is the rest."
        self.finished.set()


async def read_released(stream: SpeechStream, llm: SlowLLM) -> bytes:
    """Read all audio; release the generator only once the first chunk has arrived."""
    audio = bytearray()
    try:
        async with asyncio.timeout(scaled(180)), stream:
            async for chunk in stream:
                if not llm.release.is_set():
                    assert not llm.finished.is_set()
                    llm.release.set()
                audio += chunk
    finally:
        llm.release.set()
    assert llm.finished.is_set()
    return bytes(audio)


# --- with a server -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "sync", "async"])
async def test_remote_sources(server: Server, kind: str) -> None:
    source = {"str": TEXT, "sync": token_generator(), "async": async_tokens()}[kind]
    sentences: list[Sentence] = []
    stream = SpeechStream(
        source, voice="alloy", response_format="wav", server=server.url, on_sentence=sentences.append
    )
    async with asyncio.timeout(scaled(120)), stream:
        audio = b"".join([chunk async for chunk in stream])
    assert [s.text for s in stream.sentences] == [s.text for s in sentences]
    assert " ".join(s.text for s in sentences) == TEXT
    assert stream.audio_s is not None and 3.0 < stream.audio_s < 12.0
    assert duration(audio, "wav") == pytest.approx(stream.audio_s, abs=0.1)
    if kind == "str":
        with Client(server.url) as client:
            text = client.transcribe(audio, response_format="text")
        assert isinstance(text, str) and wer(TEXT, text) <= 0.15, text


async def test_remote_first_audio_before_the_generator_finishes(server: Server) -> None:
    llm = SlowLLM()
    audio = await read_released(SpeechStream(llm(), server=server.url), llm)
    assert 2.0 < duration(audio, "pcm") < 10.0


def test_remote_sync_iteration_and_errors(server: Server) -> None:
    audio = b"".join(SpeechStream(token_generator(), server=server.url, response_format="mp3"))
    assert 3.0 < duration(audio, "mp3") < 12.0
    with pytest.raises(ClientError) as info:
        list(SpeechStream("Hello.", voice="nobody", server=server.url))
    assert info.value.code == "unknown_voice"


# --- in-process --------------------------------------------------------------------------------------


async def test_local_str_and_async_generator() -> None:
    for source in (TEXT, async_tokens()):
        stream = SpeechStream(source, voice="alloy", response_format="pcm", settings=local_settings())
        async with asyncio.timeout(scaled(180)), stream:
            audio = b"".join([chunk async for chunk in stream])
        assert " ".join(s.text for s in stream.sentences) == TEXT
        assert stream.sentences[0].words
        assert stream.audio_s is not None
        assert duration(audio, "pcm") == pytest.approx(stream.audio_s, abs=0.05)
        assert 3.0 < stream.audio_s < 12.0
        assert no_workers_left()


async def test_local_first_audio_before_the_slow_generator_finishes() -> None:
    llm = SlowLLM()
    audio = await read_released(SpeechStream(llm(), settings=local_settings()), llm)
    assert 2.0 < duration(audio, "pcm") < 10.0
    assert no_workers_left()


def test_local_sync_iteration_with_a_generator() -> None:
    stream = SpeechStream(token_generator(), response_format="wav", settings=local_settings())
    audio = b"".join(stream)
    assert stream.audio_s is not None and 3.0 < stream.audio_s < 12.0
    assert duration(audio, "wav") == pytest.approx(stream.audio_s, abs=0.1)
    assert no_workers_left()


def test_local_stopping_early_stops_the_workers() -> None:
    long_text = " ".join(f"This is sentence number {i} of a long answer." for i in range(1, 40))
    for n, _ in enumerate(SpeechStream(long_text, settings=local_settings()), 1):
        if n == 2:
            break
    assert no_workers_left()


async def test_local_unknown_voice() -> None:
    stream = SpeechStream("Hello.", voice="nobody", settings=local_settings())
    with pytest.raises(UnknownVoice):
        async with asyncio.timeout(scaled(120)), stream:
            _ = [chunk async for chunk in stream]
    assert no_workers_left()


async def test_local_aclose_mid_stream_stops_the_workers() -> None:
    long_text = " ".join(f"This is sentence number {i} of a long answer." for i in range(1, 40))
    stream = SpeechStream(long_text, settings=local_settings())
    async with asyncio.timeout(scaled(120)), stream:
        chunks = 0
        async for _ in stream:
            chunks += 1
            if chunks == 2:
                break
    assert no_workers_left()
