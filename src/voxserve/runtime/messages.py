"""Typed messages that cross the pipe between the server and a worker process.

Parent → worker: :class:`SynthJob`, :class:`RenderJob`, :class:`Assign`, :class:`Delivered`,
:class:`Call`, :class:`StreamCall`, :class:`Cancel`, :class:`Ping`, :class:`Shutdown`. Worker → parent:
:class:`Ready`, :class:`StartFailed`, :class:`Chunk`, :class:`Claim`, :class:`Item`, :class:`Done`,
:class:`Result`, :class:`JobError`, :class:`Pong`.

A parallel synthesis (``SynthJob.parallel``) is assembled by one worker, its *primary*: it speaks the
first fragment at once, then asks (:class:`Claim`) which fragment to render next (:class:`Assign`);
fragments the pool gave to idle helper workers (:class:`RenderJob`, answered by a :class:`Result` with
:class:`RenderedPiece` s, the audio in a scratch file) reach it as :class:`Delivered`, and it encodes
everything in order as one stream. All are small picklable dataclasses; audio travels already encoded,
so the event loop only moves bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxserve.engines.base import EngineSpec, VoiceInfo, WordTiming
from voxserve.errors import VoxserveError
from voxserve.text.markup import Fragment

__all__ = [
    "Assign",
    "Call",
    "Cancel",
    "Chunk",
    "Claim",
    "Delivered",
    "Done",
    "EngineSpec",
    "Item",
    "JobError",
    "Ping",
    "Pong",
    "Ready",
    "RenderJob",
    "RenderedPiece",
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
    parallel: bool = False
    """Let idle workers of the pool render later fragments ahead (delivered in order): one request
    on an idle server uses every worker; a busy server gives each request its own worker only."""
    background: bool = False
    """Nobody listens as it is made (a speech job's section): a parallel one is never lent another
    request's worker, and its own worker renders the fragments of live requests before its own."""


@dataclass(frozen=True)
class SynthJob(SynthRequest):
    """A :class:`SynthRequest` on its way to a worker, with the id its messages carry."""

    job_id: int = 0
    lone: bool = False
    """No other worker of the server was busy when the pool sent it: the first fragment may be
    rendered on every core (the engine's lone-request session)."""


@dataclass(frozen=True)
class RenderJob:
    """Render one fragment of another worker's parallel job to float32 audio in ``path``
    (a ``.npy`` file); answered by :class:`Result` whose value is a tuple of :class:`RenderedPiece`."""

    job_id: int
    voice: str
    speed: float
    sample_rate: int
    fragment: Fragment
    path: str


@dataclass(frozen=True)
class RenderedPiece:
    """One engine piece of a rendered fragment: its samples are the next ``samples`` of the file."""

    samples: int
    sample_rate: int
    text: str
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A parallel job's primary is free: which fragment should it render next? ``audio_s``: the
    seconds of audio it has sent so far (how far its client's playback is from running dry).

    The answer is an :class:`Assign`, or a :class:`RenderJob` for a fragment of another request (an
    older one; any live one for a background job), rendered at once while the primary keeps waiting
    for its own answer."""

    job_id: int
    audio_s: float = 0.0


@dataclass(frozen=True)
class Assign:
    """The answer to :class:`Claim`: render fragment ``index`` (``-1``: none is left to claim; wait for
    the delivered ones)."""

    job_id: int
    index: int


@dataclass(frozen=True)
class Delivered:
    """Fragment ``index`` of a parallel job, rendered by a helper into ``path`` (``None``: the helper
    failed or died; render it yourself)."""

    job_id: int
    index: int
    path: str | None = None
    pieces: tuple[RenderedPiece, ...] = ()


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
    lone: bool = False
    """No other worker of the server was busy when the pool sent it: the worker decodes with the
    engine's lone-request threads (``TranscribeOptions.lone``)."""


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
