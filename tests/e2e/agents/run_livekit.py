"""Drive LiveKit Agents' OpenAI plugin against a voxserve server, as an agent does.

Run with ``.venv-agents/bin/python`` (see agent_io.py): ``run_livekit.py COMMAND JOB.json RESULT.json``.

The plugin objects are built as their users build them for OpenAI, with only ``base_url`` and
``api_key`` changed; job keys ``model``, ``voice``, ``response_format``, ``use_realtime`` are passed
only when the job names them. Outside an agent worker the plugins want an HTTP session context:
``utils.http_context.open()``, as LiveKit's docs say for scripts and tests.

- ``tts``: ``openai.TTS(...).synthesize(text)`` for each of the job's ``texts``.
- ``tts-stream``: ``tts.StreamAdapter(tts=openai.TTS(...)).stream()`` (what an ``AgentSession`` wraps a
  non-streaming TTS in), fed each text a word at a time as an LLM's tokens, then ``end_input()``.
- ``recognize``: ``openai.STT(...).recognize(buffer)`` for each file.
- ``stream``: ``openai.STT(...).stream()`` fed the files' audio in 20 ms frames in real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from agent_io import RATE, Microphone, converse, read_job, read_wav, write_pcm, write_result
from livekit import rtc
from livekit.agents import stt as agents_stt
from livekit.agents import tts as agents_tts
from livekit.agents import utils
from livekit.plugins import openai

API_KEY = "sk-voxserve"  # voxserve runs without a key by default; the plugins want one anyway
OPTION_KEYS = ("model", "voice", "response_format", "use_realtime")


def options(job: dict[str, Any], *allowed: str) -> dict[str, Any]:
    return {k: job[k] for k in allowed if k in job}


def frame(pcm: bytes) -> rtc.AudioFrame:
    return rtc.AudioFrame(pcm, RATE, 1, len(pcm) // 2)


class Collected:
    """The audio of several synthesis requests: their PCM, sample rates and channel counts, and per
    request its text, time to the first frame and bytes."""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self.rates: set[int] = set()
        self.channels: set[int] = set()
        self.requests: list[dict[str, Any]] = []

    async def take(self, text: str, events: AsyncIterable[Any], t0: float) -> None:
        first = None
        n = 0
        async for ev in events:
            first = first if first is not None else time.monotonic() - t0
            self.rates.add(ev.frame.sample_rate)
            self.channels.add(ev.frame.num_channels)
            data = ev.frame.data.tobytes()
            self.pcm += data
            n += len(data)
        self.requests.append({"text": text, "first_audio": first, "bytes": n})

    def report(self, result: dict[str, Any], out: Path) -> None:
        result.update(
            requests=self.requests, sample_rates=sorted(self.rates), num_channels=sorted(self.channels)
        )
        result["pcm_file"] = write_pcm(out, bytes(self.pcm))


async def synthesize(job: dict[str, Any], result: dict[str, Any], out: Path) -> None:
    tts = openai.TTS(base_url=job["base_url"] + "/v1", api_key=API_KEY, **options(job, *OPTION_KEYS))
    collected = Collected()
    try:
        for text in job["texts"]:
            await collected.take(text, tts.synthesize(text), time.monotonic())
    finally:
        await tts.aclose()
    collected.report(result, out)


async def synthesize_stream(job: dict[str, Any], result: dict[str, Any], out: Path) -> None:
    adapter = agents_tts.StreamAdapter(
        tts=openai.TTS(base_url=job["base_url"] + "/v1", api_key=API_KEY, **options(job, *OPTION_KEYS))
    )
    collected = Collected()
    try:
        for text in job["texts"]:
            stream = adapter.stream()
            t0 = time.monotonic()

            async def feed(stream: agents_tts.SynthesizeStream = stream, text: str = text) -> None:
                # An LLM's tokens: a word at a time, 30 ms apart.
                for i, word in enumerate(text.split(" ")):
                    stream.push_text(word if i == 0 else " " + word)
                    await asyncio.sleep(0.03)
                stream.end_input()

            feeder = asyncio.create_task(feed())
            await collected.take(text, stream, t0)
            await feeder
            await stream.aclose()
    finally:
        await adapter.aclose()
    collected.report(result, out)


async def recognize(job: dict[str, Any], result: dict[str, Any]) -> None:
    stt = openai.STT(base_url=job["base_url"] + "/v1", api_key=API_KEY, **options(job, *OPTION_KEYS))
    finals = []
    try:
        for f in job["files"]:
            pcm = read_wav(f).tobytes()
            t0 = time.monotonic()
            ev = await stt.recognize(frame(pcm))
            finals.append(
                {"t": time.monotonic() - t0, "text": " ".join(a.text for a in ev.alternatives), "file": f}
            )
    finally:
        await stt.aclose()
    result["finals"] = finals


async def stream(job: dict[str, Any], result: dict[str, Any]) -> None:
    stt = openai.STT(base_url=job["base_url"] + "/v1", api_key=API_KEY, **options(job, *OPTION_KEYS))
    errors: list[str] = result.setdefault("errors", [])

    @stt.on("error")
    def on_error(err: agents_stt.STTError) -> None:
        errors.append(f"t={mic.now():.2f} recoverable={err.recoverable} {err.error!r}")

    finals: list[dict[str, Any]] = []
    interims: list[dict[str, Any]] = []
    speech: list[dict[str, Any]] = []
    spans: list[tuple[float, float]] = []
    speech_stream = stt.stream()

    async def send(pcm: bytes) -> None:
        speech_stream.push_frame(frame(pcm))

    mic = Microphone(send)

    async def read() -> None:
        async for ev in speech_stream:
            now = mic.now()
            text = " ".join(a.text for a in ev.alternatives)
            if ev.type == agents_stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append({"t": now, "text": text})
            elif ev.type == agents_stt.SpeechEventType.INTERIM_TRANSCRIPT:
                interims.append({"t": now, "text": text})
            elif ev.type in (
                agents_stt.SpeechEventType.START_OF_SPEECH,
                agents_stt.SpeechEventType.END_OF_SPEECH,
            ):
                speech.append({"t": now, "event": ev.type.value})

    def answered() -> bool:
        """Not speaking, and a final for every turn that ended (the plugin's VAD or the server's)."""
        started = sum(s["event"] == "start_of_speech" for s in speech)
        ended = sum(s["event"] == "end_of_speech" for s in speech)
        return reader.done() or (started == ended and len(finals) >= ended)

    reader = asyncio.create_task(read())
    try:
        spans.extend(await converse(mic, job["files"], job["gap_s"], job["wait_s"], answered))
        # As an agent leaving the room: the stream is closed, not drained (the socket stays open
        # after end_input() until the server closes it, as OpenAI's does).
        if reader.done():
            reader.result()
    except Exception as exc:
        errors.append(f"t={mic.now():.2f} {exc!r}")
    finally:
        reader.cancel()
        await speech_stream.aclose()
        await stt.aclose()
    # t0 is on time.monotonic(), one clock for every process (agents_bench's wire tap).
    result.update(spans=spans, finals=finals, interims=interims, speech=speech, t0=mic.t0)


async def main() -> None:
    command, job, result_path = read_job()
    result: dict[str, Any] = {"command": command, "errors": []}
    try:
        async with utils.http_context.open():
            if command == "tts":
                await synthesize(job, result, result_path.with_suffix(".pcm"))
            elif command == "tts-stream":
                await synthesize_stream(job, result, result_path.with_suffix(".pcm"))
            elif command == "recognize":
                await recognize(job, result)
            elif command == "stream":
                await stream(job, result)
            else:
                raise SystemExit(f"unknown command {command!r}")
    except Exception as exc:
        result["errors"].append(repr(exc))
        raise
    finally:
        write_result(result_path, result)


if __name__ == "__main__":
    asyncio.run(main())
