"""What the framework drivers (run_pipecat.py, run_livekit.py) share: their job and result files,
and recorded speech said to a framework as a speaker at an open microphone would.

The drivers run with ``.venv-agents/bin/python`` (the frameworks pin packages that clash with
voxserve's own pins, so they live in a venv of their own); this module uses only the standard
library and NumPy, so the test side (voxserve's venv) imports it too.

A job is a JSON file: ``{"base_url", "files": [wav paths], "gap_s", "wait_s", ...}`` plus what the
command needs. The driver writes a JSON result file: every time in it is seconds since ``t0``, the
moment the first audio frame went to the framework. Audio goes in at real-time pace, 20 ms frames on
a schedule that does not drift, so a frame sent at second ``x`` holds second ``x`` of the
conversation.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16000  # speech_dev is 16 kHz mono s16le; so is the audio the drivers say
FRAME_S = 0.02  # a 20 ms frame, as a WebRTC transport delivers it
LEAD_S = 0.5  # silence before the first utterance


def read_wav(path: str | Path) -> np.ndarray:
    """A speech_dev file as int16 samples (16 kHz mono)."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


class Microphone:
    """An open microphone: 20 ms frames, speech or silence, on a real-time schedule from ``t0``."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self.send = send
        self.t0 = time.monotonic()
        self.frames = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def _frame(self, pcm: bytes) -> None:
        await self.send(pcm)
        self.frames += 1
        await asyncio.sleep(max(0.0, self.t0 + self.frames * FRAME_S - time.monotonic()))

    async def speak(self, audio: np.ndarray) -> None:
        step = int(RATE * FRAME_S)
        for i in range(0, len(audio), step):
            await self._frame(audio[i : i + step].tobytes())

    async def silence_until(self, done: Callable[[], bool], at_least_s: float, at_most_s: float) -> None:
        """Silence for ``at_least_s``, then on until ``done()`` (checked every frame) or ``at_most_s``."""
        start = self.now()
        quiet = np.zeros(int(RATE * FRAME_S), dtype="<i2").tobytes()
        while self.now() - start < at_least_s or (not done() and self.now() - start < at_most_s):
            await self._frame(quiet)


async def converse(
    mic: Microphone, files: list[str], gap_s: float, wait_s: float, answered: Callable[[], bool]
) -> list[tuple[float, float]]:
    """Say each file, then stay silent as a speaker waiting for an answer does: at least ``gap_s``, and
    on until ``answered()`` (the framework has a final for every turn it ended), at most ``wait_s``.

    Returns each file's (start_s, end_s) since ``mic.t0``. A final that arrives after the next file
    started would be counted for that file; waiting for ``answered()`` keeps a slow final in its turn.
    """
    spans = []
    await mic.silence_until(lambda: True, LEAD_S, LEAD_S)
    for f in files:
        start = mic.now()
        await mic.speak(read_wav(f))
        spans.append((start, mic.now()))
        await mic.silence_until(answered, gap_s, wait_s)
    return spans


def read_job() -> tuple[str, dict[str, Any], Path]:
    """``driver.py COMMAND JOB.json RESULT.json``."""
    if len(sys.argv) != 4:
        raise SystemExit(f"usage: {sys.argv[0]} COMMAND JOB.json RESULT.json")
    return sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=1))


def write_pcm(path: Path, pcm: bytes) -> str:
    path.write_bytes(pcm)
    return str(path)
