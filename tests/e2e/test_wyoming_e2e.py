"""voxserve as a Wyoming server, driven by the wyoming package's own AsyncTcpClient as Home Assistant
drives wyoming-faster-whisper and wyoming-piper: describe (without starting a lazy engine), transcribe
(batch, streaming, and a minute of audio sent as fast as the socket goes), synthesize (batch and
streaming), the failure corpus's Wyoming rows (P1-P5, P9, P10, ST27, M19), several clients at once, a
worker killed in the middle of a request, and the zeroconf announcement (on loopback only)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from tests.e2e.conftest import Server, free_port, start_server, stop_server
from tests.speech_dev import by_name
from tests.timing import scaled, until
from tests.unit.wyoming.test_wyoming_discovery import loopback_multicast
from tests.wer import wer
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

pytestmark = pytest.mark.e2e

VOICE = "piper/en_US-joe-medium"
LONG = " ".join(f"Sentence {i} keeps the worker busy for a while longer." for i in range(40))


@dataclass
class Wyoming:
    server: Server
    port: int


@pytest.fixture(scope="module")
def wy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wyoming]:
    port = free_port()
    srv = start_server(
        tmp_path_factory.mktemp("wyoming"),
        env={
            "VOXSERVE_WYOMING_URI": f"tcp://127.0.0.1:{port}",
            # espeak is lazy (not in preload_engines): describe must not start it.
            "VOXSERVE_ENGINES": '["piper", "espeak"]',
            "VOXSERVE_PRELOAD_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "1",
            "VOXSERVE_SESSION_IDLE_TIMEOUT_S": "4",
            "VOXSERVE_WS_SEND_TIMEOUT_S": "2",
            "VOXSERVE_WYOMING_MAX_EVENT_BYTES": "262144",
            # Announced on 127.0.0.1 only (the Wyoming host): no multicast leaves the machine.
            "VOXSERVE_WYOMING_ZEROCONF": "true",
            "VOXSERVE_WYOMING_ZEROCONF_NAME": f"voxserve-e2e-{port}",
        },
    )
    try:
        yield Wyoming(srv, port)
    finally:
        stop_server(srv)


def client(wy: Wyoming) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", wy.port)


async def read(c: AsyncTcpClient, within: float = 30) -> Event | None:
    async with asyncio.timeout(scaled(within)):
        return await c.read_event()


def wav_pcm(name: str) -> tuple[bytes, int, int, int]:
    with wave.open(str(by_name(name).path)) as w:
        return w.readframes(w.getnframes()), w.getframerate(), w.getsampwidth(), w.getnchannels()


@dataclass
class Heard:
    events: list[Event] = field(default_factory=list)
    stop_sent_at: float = 0.0
    transcript_at: float = 0.0
    chunks_before_stop: int = 0

    @property
    def text(self) -> str:
        return next(Transcript.from_event(e).text for e in self.events if e.type == "transcript")

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


async def transcribe(
    wy: Wyoming,
    pcm: bytes,
    rate: int,
    width: int,
    channels: int,
    *,
    pace: float = 0.0,
    transcribe_event: Transcribe | None = Transcribe(name="tiny.en", language="en"),  # noqa: B008
) -> Heard:
    """Send audio as Home Assistant does (100 ms chunks; at ``pace`` x real time when given) and
    read every event up to ``transcript-stop``."""
    heard = Heard()
    async with client(wy) as c:

        async def reader() -> None:
            while True:
                event = await read(c, 60)
                assert event is not None, "connection closed before transcript-stop"
                heard.events.append(event)
                if event.type == "transcript":
                    heard.transcript_at = time.monotonic()
                if event.type == "transcript-chunk" and not heard.stop_sent_at:
                    heard.chunks_before_stop += 1
                if event.type in ("transcript-stop", "error"):
                    return

        task = asyncio.create_task(reader())
        if transcribe_event is not None:
            await c.write_event(transcribe_event.event())
        await c.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = rate * width * channels // 10
        started = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), step)):
            await c.write_event(
                AudioChunk(
                    rate=rate, width=width, channels=channels, audio=pcm[offset : offset + step]
                ).event()
            )
            if pace:
                # Pacing a live microphone (not a wait for a condition): chunk i is due at i * 0.1 s.
                await asyncio.sleep(max(0.0, started + (i + 1) * 0.1 / pace - time.monotonic()))
        heard.stop_sent_at = time.monotonic()
        await c.write_event(AudioStop().event())
        await task
    return heard


# --- describe ---------------------------------------------------------------------------------------


async def describe(c: AsyncTcpClient) -> Info:
    await c.write_event(Describe().event())
    event = await read(c)
    assert event is not None and Info.is_type(event.type)
    return Info.from_event(event)


def espeak_state(url: str) -> str:
    lazy: dict[str, str] = httpx.get(f"{url}/ready", timeout=10).json()["lazy"]
    return lazy["espeak"]


async def test_describe_lists_models_and_voices(wy: Wyoming) -> None:
    async with client(wy) as c:
        for _ in range(2):  # rebuilt on every describe (corpus P4)
            info = await describe(c)
            asr, tts = info.asr[0], info.tts[0]
            assert [m.name for m in asr.models] == ["tiny.en"] and asr.models[0].languages == ["en"]
            assert asr.supports_transcript_streaming and tts.supports_synthesize_streaming
            assert VOICE in [v.name for v in tts.voices]
            assert next(v for v in tts.voices if v.name == VOICE).languages == ["en_US"]
            assert asr.installed and tts.installed and asr.version and asr.attribution.name == "voxserve"


async def test_describe_does_not_start_a_lazy_engine_and_lists_it_once_started(wy: Wyoming) -> None:
    # Home Assistant describes on every setup and reload, with a short timeout: the answer comes from
    # what is running, and a lazy engine stays stopped until a request needs one of its voices.
    url = wy.server.url
    async with client(wy) as c:
        if await asyncio.to_thread(espeak_state, url) == "not_started":  # (no earlier test started it)
            info = await describe(c)
            assert not [v for v in info.tts[0].voices if v.name.startswith("espeak/")]
            assert await asyncio.to_thread(espeak_state, url) == "not_started"
        events = await synthesize(c, "Started on first use.", SynthesizeVoice(name="espeak/en-us"))
        assert events[-1].type == "audio-stop" and len(audio_of(events)[0]) > 10000
        assert await asyncio.to_thread(espeak_state, url) == "ready"
        voices = {v.name: v for v in (await describe(c)).tts[0].voices}
        assert VOICE in voices and voices["espeak/en-us"].languages == ["en_US"]


# --- speech-to-text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fleurs_en_007.wav", "OSR_us_000_0034_8k.wav"])
async def test_transcribe(wy: Wyoming, name: str) -> None:
    pcm, rate, width, channels = wav_pcm(name)
    heard = await transcribe(wy, pcm, rate, width, channels)
    assert heard.types[0] == "transcript-start" and heard.types[-2:] == ["transcript", "transcript-stop"]
    assert wer(by_name(name).text, heard.text) <= 0.25, heard.text


async def test_streaming_transcribe_gives_partials_and_a_prompt_final(wy: Wyoming) -> None:
    pcm, rate, width, channels = wav_pcm("fleurs_en_008.wav")
    heard = await transcribe(wy, pcm, rate, width, channels, pace=1.0)
    assert heard.types[0] == "transcript-start" and heard.types[-2:] == ["transcript", "transcript-stop"]
    assert heard.chunks_before_stop >= 1, heard.types  # partial words while it speaks
    # Chunks carry new settled words only (never a revision); the transcript is the final word.
    chunks = [e.data["text"] for e in heard.events if e.type == "transcript-chunk"]
    assert all(chunks) and "".join(chunks).strip()
    assert wer(by_name("fleurs_en_008.wav").text, heard.text) <= 0.25, heard.text
    # The same streaming session as the WebSockets: the final is ready soon after audio-stop (only its
    # last words are left to decode; the bound is loose for a loaded CI machine, the benchmark times it).
    assert heard.transcript_at - heard.stop_sent_at < scaled(8.0)


async def test_transcribe_without_transcribe_uses_the_defaults_and_any_format(wy: Wyoming) -> None:
    pcm, rate, width, channels = wav_pcm("fleurs_en_007.wav")
    assert (width, channels) == (2, 1)
    mono = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    stereo32 = (np.repeat(mono, 2) << 16).astype("<i4").tobytes()  # 32-bit stereo, same rate
    heard = await transcribe(wy, stereo32, rate, 4, 2, transcribe_event=None)
    assert wer(by_name("fleurs_en_007.wav").text, heard.text) <= 0.25, heard.text


async def test_a_minute_and_a_half_of_audio_sent_at_once_loses_nothing(wy: Wyoming) -> None:
    # A client that sends faster than the decodes go (a file, not a microphone): the session holds at
    # most max_buffer_s (60 s) of audio, and past it the server stops reading the socket until a decode
    # takes some (TCP holds the client back) instead of failing: every word comes out.
    names = [
        "OSR_us_000_0034_8k.wav",
        "librispeech_1272-128104-0004_8k.wav",
        "librispeech_1272-141231-0002.wav",
        "fleurs_en_008.wav",
        "fleurs_en_007.wav",
    ]
    parts = [wav_pcm(n) for n in names]
    assert {(rate, width, channels) for _, rate, width, channels in parts} == {(16000, 2, 1)}
    pcm = b"".join(p[0] for p in parts)
    assert len(pcm) / 2 / 16000 > 90  # well past max_buffer_s: the hold-back below must happen
    held_before = wy.server.log_text().count("holding the client back")
    heard = await transcribe(wy, pcm, 16000, 2, 1)
    assert heard.types[-2:] == ["transcript", "transcript-stop"], heard.types[-3:]
    assert wy.server.log_text().count("holding the client back") == held_before + 1
    reference = " ".join(by_name(n).text for n in names)
    assert wer(reference, heard.text) <= 0.3, heard.text


async def test_several_clients_at_once_do_not_cross_talk(wy: Wyoming) -> None:
    names = ["fleurs_en_007.wav", "fsdd_string_george_a.wav", "speech_recognition_english_123.wav"]
    results = await asyncio.gather(*(transcribe(wy, *wav_pcm(n)) for n in names))
    for name, heard in zip(names, results, strict=True):
        assert wer(by_name(name).text, heard.text) <= 0.35, (name, heard.text)


# --- text-to-speech ---------------------------------------------------------------------------------


async def synthesize(c: AsyncTcpClient, text: str, voice: SynthesizeVoice | None = None) -> list[Event]:
    await c.write_event(Synthesize(text=text, voice=voice).event())
    events: list[Event] = []
    while True:
        event = await read(c)
        assert event is not None
        events.append(event)
        if event.type in ("audio-stop", "error"):
            return events


def audio_of(events: list[Event]) -> tuple[bytes, int]:
    start = next(AudioStart.from_event(e) for e in events if e.type == "audio-start")
    assert (start.width, start.channels) == (2, 1)
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk"), start.rate


async def test_synthesize_round_trips_through_transcription(wy: Wyoming) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    async with client(wy) as c:
        events = await synthesize(c, text, SynthesizeVoice(name=VOICE))
    assert events[0].type == "audio-start" and events[-1].type == "audio-stop"
    pcm, rate = audio_of(events)
    assert len(pcm) / 2 / rate > 1.5
    heard = await transcribe(wy, pcm, rate, 2, 1)
    assert wer(text, heard.text) <= 0.25, heard.text


async def test_synthesize_by_language_or_alias_and_a_second_longer_request(wy: Wyoming) -> None:
    async with client(wy) as c:
        short, _ = audio_of(await synthesize(c, "Battery is at 50%.", SynthesizeVoice(language="en_US")))
        longer, _ = audio_of(await synthesize(c, "Hello. " * 30, SynthesizeVoice(name="alloy")))
    assert len(short) > 20000 and len(longer) > 4 * len(short)  # corpus P2, P9, P10


async def test_streaming_synthesize_speaks_each_sentence_as_soon_as_it_is_complete(wy: Wyoming) -> None:
    async with client(wy) as c:
        await c.write_event(SynthesizeStart(voice=SynthesizeVoice(name=VOICE)).event())
        for piece in ["The first sen", "tence is complete now. ", "The second"]:
            await c.write_event(SynthesizeChunk(text=piece).event())
        # Audio for the first sentence arrives before the stream ends.
        first = await read(c)
        assert first is not None and first.type == "audio-start"
        chunk = await read(c)
        assert chunk is not None and chunk.type == "audio-chunk"
        await c.write_event(SynthesizeChunk(text=" one ends here.").event())
        # Home Assistant also sends the whole text as a plain synthesize for older servers: ignored.
        await c.write_event(Synthesize(text="IGNORED " * 10).event())
        await c.write_event(SynthesizeStop().event())
        events = [first, chunk]
        while events[-1].type != "synthesize-stopped":
            event = await read(c)
            assert event is not None and event.type != "error", event
            events.append(event)
    types = [e.type for e in events]
    assert types[-2:] == ["audio-stop", "synthesize-stopped"] and types.count("audio-start") == 1
    pcm, rate = audio_of(events)
    heard = await transcribe(wy, pcm, rate, 2, 1)
    assert wer("The first sentence is complete now. The second one ends here.", heard.text) <= 0.3


# --- bad input and faults (corpus rows) ------------------------------------------------------------


async def expect_error(c: AsyncTcpClient, code: str) -> Error:
    event = await read(c)
    assert event is not None and Error.is_type(event.type), event
    error = Error.from_event(event)
    assert error.code == code, error
    return error


async def still_usable(c: AsyncTcpClient) -> None:
    await c.write_event(Describe().event())
    event = await read(c)
    assert event is not None and event.type == "info"


async def test_bad_events_get_an_error_and_the_connection_goes_on(wy: Wyoming) -> None:
    async with client(wy) as c:
        assert c._writer is not None  # noqa: SLF001 - raw bytes the client would never write
        c._writer.write(b"this is not json\n")  # noqa: SLF001
        await expect_error(c, "malformed_event")
        await still_usable(c)
        await c.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0" * 160).event())
        await expect_error(c, "audio_before_start")
        await still_usable(c)
        await c.write_event(Event("some-future-event", {"x": 1}))  # ignored, as the reference servers do
        await still_usable(c)
        await c.write_event(Synthesize(text="hi", voice=SynthesizeVoice(name="cori")).event())
        await expect_error(c, "unknown_voice")  # corpus P3/P5: never a built-in speaker instead
        await c.write_event(Transcribe(name="large-v9").event())
        await expect_error(c, "model_not_found")
        await c.write_event(Synthesize(text="x" * 5000).event())
        await expect_error(c, "text_too_long")
        await c.write_event(AudioStart(rate=16000, width=7, channels=1).event())
        await expect_error(c, "unsupported_audio_format")
        await still_usable(c)


async def test_huge_lengths_get_an_error_and_a_clean_close(wy: Wyoming) -> None:
    # Corpus M19: the reference reader trusts data_length and payload_length.
    for key in ("data_length", "payload_length"):
        async with client(wy) as c:
            assert c._writer is not None  # noqa: SLF001
            c._writer.write(json.dumps({"type": "audio-chunk", key: 10**12}).encode() + b"\n")  # noqa: SLF001
            await expect_error(c, "event_too_large")
            assert await read(c) is None  # closed
    async with client(wy) as c:
        await still_usable(c)


async def test_idle_connection_is_closed(wy: Wyoming) -> None:
    # Corpus ST27: every stage has a deadline; an idle client is closed after session_idle_timeout_s.
    async with client(wy) as c:
        assert await read(c, 30) is None


async def test_a_client_that_leaves_or_stops_reading_does_not_hurt_the_server(wy: Wyoming) -> None:
    # Corpus P1: a long answer to a client that goes away ends the request cleanly.
    async with client(wy) as c:
        await c.write_event(Synthesize(text=LONG).event())
    # A client that never reads is dropped after the send timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", wy.port)
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(json.dumps({"type": "synthesize", "data": {"text": LONG}}).encode() + b"\n")
    await writer.drain()
    url = wy.server.url
    # Both requests end (the leaver's at its first write, the non-reader's after the send timeout) and
    # release the one piper worker; how soon the worker stops is the pool's business (bounded here).
    await asyncio.to_thread(until, lambda: piper_idle(url), 90, 0.2, message="piper idle")
    async with client(wy) as c:
        await still_usable(c)
        events = await synthesize(c, "Still here.")
        assert events[-1].type == "audio-stop", events[-1]
    assert reader.at_eof() or not (await _drained(reader))
    writer.close()
    health = await asyncio.to_thread(httpx.get, f"{wy.server.url}/health", timeout=10)
    assert health.status_code == 200


def piper_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{url}/ready", timeout=10).json()["engines"]["piper"]
    return stats


def piper_idle(url: str) -> bool:
    """The piper worker is up (not being replaced) and serves nobody."""
    stats = piper_stats(url)
    return bool(stats["pids"]) and stats["busy"] == 0 and stats["alive"] == stats["workers"] >= 1


def piper_pid(url: str) -> int:
    return int(piper_stats(url)["pids"][0])


async def _drained(reader: asyncio.StreamReader) -> bool:
    """Read what the server had sent the non-reader; False once the server has closed the connection."""
    async with asyncio.timeout(scaled(30)):
        while await reader.read(65536):
            pass
    return False


async def test_worker_killed_mid_request_gives_an_error_and_the_next_request_succeeds(wy: Wyoming) -> None:
    url = wy.server.url
    await asyncio.to_thread(until, lambda: piper_idle(url), 90, 0.2, message="piper idle")
    pid = await asyncio.to_thread(piper_pid, url)
    async with client(wy) as c:
        await c.write_event(Synthesize(text=LONG).event())
        first = await read(c)
        assert first is not None and first.type == "audio-start"
        os.kill(pid, signal.SIGKILL)
        while True:
            event = await read(c)
            assert event is not None
            if event.type != "audio-chunk":
                break
        assert Error.is_type(event.type), event
        assert Error.from_event(event).code in ("worker_crashed", "synthesis_failed")
        # While the only piper worker is being replaced, describe still lists its voices.
        assert VOICE in [v.name for v in (await describe(c)).tts[0].voices]

        def replaced() -> bool:
            r = httpx.get(f"{url}/ready", timeout=10)
            piper = r.json()["engines"]["piper"]
            return r.status_code == 200 and piper["pids"] and piper["pids"][0] != pid and piper["alive"] == 1

    await asyncio.to_thread(until, replaced, 60, 0.1, message="piper worker replaced")
    async with client(wy) as c:  # (the first connection has passed its idle timeout by now)
        events = await synthesize(c, "Back again.")
        assert events[-1].type == "audio-stop" and len(audio_of(events)[0]) > 10000


# --- zeroconf ---------------------------------------------------------------------------------------


async def test_announced_by_zeroconf_on_loopback(wy: Wyoming) -> None:
    if not loopback_multicast():
        pytest.skip("this machine does not loop multicast back on 127.0.0.1")
    wanted = f"voxserve-e2e-{wy.port}._wyoming._tcp.local."
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    loop = asyncio.get_running_loop()
    found: asyncio.Future[None] = loop.create_future()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name == wanted and state_change is ServiceStateChange.Added:
            loop.call_soon_threadsafe(lambda: found.done() or found.set_result(None))

    browser = AsyncServiceBrowser(zc.zeroconf, "_wyoming._tcp.local.", handlers=[on_change])
    try:
        async with asyncio.timeout(scaled(20)):
            await found
        info = AsyncServiceInfo("_wyoming._tcp.local.", wanted)
        assert await info.async_request(zc.zeroconf, int(scaled(5) * 1000))
        assert info.port == wy.port and info.parsed_addresses() == ["127.0.0.1"]
    finally:
        await browser.async_cancel()
        await zc.async_close()
    async with client(wy) as c:  # what Home Assistant does next with what it found
        assert (await describe(c)).tts[0].voices
