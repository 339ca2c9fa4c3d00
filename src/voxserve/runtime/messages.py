"""Typed messages that cross the pipe between the server and a worker process.

Parent → worker: :class:`SynthJob`, :class:`Call`, :class:`StreamCall`, :class:`Cancel`, :class:`Ping`,
:class:`Shutdown`. Worker → parent: :class:`Ready`, :class:`StartFailed`, :class:`Chunk`, :class:`Item`,
:class:`Done`, :class:`Result`,
:class:`JobError`, :class:`Pong`. All are small picklable dataclasses; audio travels already encoded,
so the event loop only moves bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxserve.engines.base import EngineSpec, VoiceInfo, WordTiming
from voxserve.errors import VoxserveError
from voxserve.text.markup import Fragment

__all__ = [
    "Call",
    "Cancel",
    "Chunk",
    "Done",
    "EngineSpec",
    "Item",
    "JobError",
    "Ping",
    "Pong",
    "Ready",
    "Result",
    "Shutdown",
    "StartFailed",
    "StreamCall",
    "SynthJob",
    "SynthRequest",
    "Terminal",
]


@dataclass(frozen=True)
class SynthRequest:
    """What to synthesize: ``fragments`` (or ``phonemes``) with ``voice``, as encoded audio.

    The typed request :meth:`voxserve.runtime.pool.EnginePool.synth` takes; the pool gives it a job id
    (:class:`SynthJob`) when a worker is free."""

    voice: str
    speed: float
    fmt: str
    """One of :data:`voxserve.audio.encode.FORMATS`."""
    sample_rate: int
    """Output rate; the worker resamples the engine's native rate to it."""
    fragments: tuple[Fragment, ...] = ()
    """Text fragments, pauses and IPA overrides (:data:`voxserve.text.markup.Fragment`), in order."""
    phonemes: str | None = None
    streaming: bool = True
    """False buffers container metadata (exact WAV sizes) until the end."""
    volume: float = 1.0
    trailing_silence_s: float = 0.0
    """Silence appended after the last sample (players that stop early lose this, not words)."""


@dataclass(frozen=True)
class SynthJob(SynthRequest):
    """A :class:`SynthRequest` on its way to a worker, with the id its messages carry."""

    job_id: int = 0


@dataclass(frozen=True)
class Call:
    """A short synchronous request to the engine: ``method(*args)``."""

    job_id: int
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class StreamCall:
    """An engine method whose results stream back as :class:`Item` messages, then :class:`Done`.

    ``transcribe`` is the one such method: the first item is the ``TranscriptInfo``, then each
    ``Segment`` as the engine produces it (the worker checks for a cancel between segments).
    """

    job_id: int
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Cancel:
    job_id: int


@dataclass(frozen=True)
class Ping:
    nonce: int


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Ready:
    pid: int
    voices: list[VoiceInfo]


@dataclass(frozen=True)
class StartFailed:
    message: str


@dataclass(frozen=True)
class Chunk:
    """Encoded audio for one job; ``text``/``words`` describe the fragment it starts, if any."""

    job_id: int
    data: bytes
    fragment: int = -1
    text: str = ""
    start_s: float = 0.0
    """Where this fragment starts in the output audio, in seconds."""
    words: tuple[WordTiming, ...] = ()
    """Word timings relative to the start of the output audio."""


@dataclass(frozen=True)
class Item:
    """One result of a :class:`StreamCall`."""

    job_id: int
    value: Any


@dataclass(frozen=True)
class Done:
    job_id: int
    audio_s: float
    compute_s: float
    cancelled: bool = False


@dataclass(frozen=True)
class Result:
    job_id: int
    value: Any


@dataclass(frozen=True)
class JobError:
    job_id: int
    error: VoxserveError


@dataclass(frozen=True)
class Pong:
    nonce: int


Terminal = Done | Result | JobError
