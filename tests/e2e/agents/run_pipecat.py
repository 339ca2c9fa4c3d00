"""Drive pipecat's OpenAI services against a voxserve server, as a pipecat app does.

Run with ``.venv-agents/bin/python`` (see agent_io.py): ``run_pipecat.py COMMAND JOB.json RESULT.json``.

Each command builds a pipeline the way pipecat's docs and examples do, with the services configured
as their users configure them for OpenAI (only ``base_url`` and ``api_key`` changed), and feeds it
what its transport would: ``InputAudioRawFrame`` s of 20 ms at 16 kHz, in real time, through a
``VADProcessor`` with Silero VAD (pipecat's "local VAD" mode, its default for OpenAI Realtime STT);
or a ``TTSSpeakFrame`` for text to speech. A sink at the end of the pipeline records what reaches it.

- ``realtime-stt``: ``OpenAIRealtimeSTTService(base_url="ws://…/v1/realtime")``, defaults; job key
  ``stop_secs`` (Silero's VADParams).
- ``stt``: ``OpenAISTTService(base_url="http://…/v1")``, defaults (model ``gpt-transcribe``).
- ``tts``: ``OpenAITTSService(base_url="http://…/v1")``, defaults or job keys ``voice``; job key
  ``texts``: one ``TTSSpeakFrame`` each, one after another.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from agent_io import RATE, Microphone, converse, read_job, write_pcm, write_result
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.stt import OpenAIRealtimeSTTService, OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

API_KEY = "sk-voxserve"  # voxserve runs without a key by default; the services want one anyway


class Recorder(FrameProcessor):
    """The end of the pipeline: notes when each frame of interest arrives (seconds since ``t0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()
        self.finals: list[dict[str, Any]] = []
        self.interims: list[dict[str, Any]] = []
        self.vad: list[dict[str, Any]] = []
        self.audio: list[dict[str, Any]] = []
        self.pcm = bytearray()
        self.tts_stopped = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            if isinstance(frame, TranscriptionFrame):
                self.finals.append({"t": self.now(), "text": frame.text})
            elif isinstance(frame, InterimTranscriptionFrame):
                self.interims.append({"t": self.now(), "text": frame.text})
            elif isinstance(frame, VADUserStartedSpeakingFrame):
                self.vad.append({"t": self.now(), "event": "started"})
            elif isinstance(frame, VADUserStoppedSpeakingFrame):
                self.vad.append({"t": self.now(), "event": "stopped"})
            elif isinstance(frame, TTSAudioRawFrame):
                self.audio.append(
                    {
                        "t": self.now(),
                        "bytes": len(frame.audio),
                        "sample_rate": frame.sample_rate,
                        "num_channels": frame.num_channels,
                    }
                )
                self.pcm += frame.audio
            elif isinstance(frame, TTSStoppedFrame):
                self.tts_stopped.set()
        await self.push_frame(frame, direction)


async def run_pipeline(
    processors: list[FrameProcessor], recorder: Recorder, drive: Any, result: dict[str, Any]
) -> None:
    """Run ``processors + [recorder]`` as a pipecat app does, call ``drive(worker)``, then end it."""
    worker = PipelineWorker(
        Pipeline([*processors, recorder]),
        params=PipelineParams(audio_in_sample_rate=RATE),
        idle_timeout_secs=None,
    )
    errors: list[str] = result.setdefault("errors", [])

    @worker.event_handler("on_pipeline_error")
    async def on_pipeline_error(_worker: PipelineWorker, frame: ErrorFrame) -> None:
        errors.append(f"t={recorder.now():.2f} {frame.error}")

    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_pipeline_started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(started.wait(), 60)
        await drive(worker)
        await worker.stop_when_done()
        await asyncio.wait_for(run, 60)
    finally:
        if not run.done():
            await worker.cancel()
            await asyncio.wait_for(run, 30)


async def listen(job: dict[str, Any], stt: FrameProcessor, result: dict[str, Any]) -> None:
    """Say the job's files through Silero VAD and ``stt``, pausing after each for its final."""
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=job["stop_secs"])))
    recorder = Recorder()
    connects: list[float] = []
    spans: list[tuple[float, float]] = []
    if isinstance(stt, OpenAIRealtimeSTTService):

        @stt.event_handler("on_connected")
        async def on_connected(_service: object) -> None:
            connects.append(recorder.now())

    def answered() -> bool:
        """Not speaking, and a final for every turn the VAD ended."""
        started = sum(v["event"] == "started" for v in recorder.vad)
        stopped = sum(v["event"] == "stopped" for v in recorder.vad)
        return started == stopped and len(recorder.finals) >= stopped

    async def drive(worker: PipelineWorker) -> None:
        async def send(pcm: bytes) -> None:
            await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=RATE, num_channels=1))

        mic = Microphone(send)
        recorder.t0 = mic.t0
        spans.extend(await converse(mic, job["files"], job["gap_s"], job["wait_s"], answered))

    await run_pipeline([vad, stt], recorder, drive, result)
    result.update(
        spans=spans,
        finals=recorder.finals,
        interims=recorder.interims,
        vad=recorder.vad,
        connects=connects,
        t0=recorder.t0,  # on time.monotonic(), one clock for every process (agents_bench's wire tap)
    )


async def speak(job: dict[str, Any], tts: OpenAITTSService, result: dict[str, Any], out: Path) -> None:
    recorder = Recorder()
    requests: list[dict[str, Any]] = []

    async def drive(worker: PipelineWorker) -> None:
        recorder.t0 = time.monotonic()
        for text in job["texts"]:
            recorder.tts_stopped.clear()
            first = len(recorder.audio)
            sent = recorder.now()
            await worker.queue_frame(TTSSpeakFrame(text))
            await asyncio.wait_for(recorder.tts_stopped.wait(), job["wait_s"])
            audio = recorder.audio[first:]
            requests.append(
                {
                    "text": text,
                    "sent": sent,
                    "first_audio": audio[0]["t"] if audio else None,
                    "bytes": sum(a["bytes"] for a in audio),
                }
            )

    await run_pipeline([tts], recorder, drive, result)
    result.update(
        requests=requests,
        sample_rates=sorted({a["sample_rate"] for a in recorder.audio}),
        num_channels=sorted({a["num_channels"] for a in recorder.audio}),
        pcm_file=write_pcm(out, bytes(recorder.pcm)),
    )


async def main() -> None:
    command, job, result_path = read_job()
    base = job["base_url"]  # http://127.0.0.1:PORT
    result: dict[str, Any] = {"command": command}
    try:
        if command == "realtime-stt":
            ws = base.replace("http://", "ws://", 1) + "/v1/realtime"
            await listen(job, OpenAIRealtimeSTTService(api_key=API_KEY, base_url=ws), result)
        elif command == "stt":
            await listen(job, OpenAISTTService(api_key=API_KEY, base_url=base + "/v1"), result)
        elif command == "tts":
            kwargs: dict[str, Any] = {}
            if "voice" in job:
                kwargs["settings"] = OpenAITTSService.Settings(voice=job["voice"])
            tts = OpenAITTSService(api_key=API_KEY, base_url=base + "/v1", **kwargs)
            await speak(job, tts, result, result_path.with_suffix(".pcm"))
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        write_result(result_path, result)


if __name__ == "__main__":
    asyncio.run(main())
