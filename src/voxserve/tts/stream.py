"""Text that arrives in pieces (an LLM's tokens) spoken as soon as each fragment is complete.

:class:`SpeakSession` is the one implementation behind ``WS /v1/stream/speak``, the voice chat and
:class:`voxserve.SpeechStream`: text goes in with :meth:`~SpeakSession.push`, is cut into fragments
by :class:`~voxserve.text.sentences.IncrementalSplitter` (a short first fragment, then sentences),
normalised, and synthesised one fragment at a time by a ``synthesize`` callable (a worker pool in the
server). Events come out through an ``emit`` callback, in order: :class:`SentenceStarted` before a
fragment's audio, :class:`AudioData` (one continuous stream in the session's format, whatever happens
between fragments), :class:`Cancelled` after a barge-in, :class:`Finished` at the end.

Synthesis runs in a single runner task, so fragments are spoken in order and a barge-in
(:meth:`~SpeakSession.cancel`) is a task cancellation: no audio is emitted after it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from voxserve.audio.encode import StreamEncoder, make_encoder
from voxserve.audio.pcm import s16_to_float
from voxserve.engines.base import WordTiming
from voxserve.errors import InvalidValue, TextTooLong, VoxserveError
from voxserve.runtime.messages import Chunk
from voxserve.text.markup import Fragment, Pause
from voxserve.text.normalize import NormalizationOptions
from voxserve.text.sentences import IncrementalSplitter
from voxserve.tts.plan import SpeechPlan, plan_piece

__all__ = [
    "STREAM_FORMATS",
    "AudioData",
    "Cancelled",
    "ChunkStream",
    "Failed",
    "Finished",
    "SentenceStarted",
    "SpeakEvent",
    "SpeakSession",
    "Synthesize",
]

_log = logging.getLogger("voxserve.tts.stream")

STREAM_FORMATS = ("pcm", "wav", "mp3", "opus")
"""Formats a speak session can stream as one continuous file across fragments."""


@dataclass(frozen=True)
class SentenceStarted:
    """A fragment's audio starts next; times are seconds of this session's audio.

    ``text`` is the fragment as it was pushed; the engine spoke its normalised form (``$5`` →
    "five dollars"), which is what ``words`` name. ``sources`` gives, per word, its ``(start, end)``
    range of characters in all the text pushed to the session so far (``None`` where unknown)."""

    text: str
    start_s: float
    words: tuple[WordTiming, ...] = ()
    sources: tuple[tuple[int, int] | None, ...] = ()


@dataclass(frozen=True)
class AudioData:
    """Encoded audio, in order (one continuous stream in the session's format)."""

    data: bytes


@dataclass(frozen=True)
class Cancelled:
    """A barge-in took effect: no audio of the dropped text follows."""

    dropped_fragments: int


@dataclass(frozen=True)
class Failed:
    """A fragment could not be spoken; the session goes on with the next one."""

    error: VoxserveError
    text: str


@dataclass(frozen=True)
class Finished:
    """Everything pushed before :meth:`SpeakSession.end` has been spoken."""

    audio_s: float
    samples: int = 0
    """Exactly how many samples the session's audio holds (``audio_s`` is rounded)."""


SpeakEvent = SentenceStarted | AudioData | Cancelled | Failed | Finished


class ChunkStream(Protocol):
    """A running synthesis of one fragment (:class:`voxserve.runtime.pool.SynthStream` is one)."""

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    def abort(self) -> None: ...


Synthesize = Callable[[tuple[Fragment, ...]], Awaitable[ChunkStream]]
"""Start speaking one planned fragment (normalised text, pauses, IPA overrides); the stream yields
s16le PCM at the session's rate."""

_END = object()


class SpeakSession:
    """Speak a stream of text; see the module docstring for the events."""

    def __init__(
        self,
        synthesize: Synthesize,
        emit: Callable[[SpeakEvent], Awaitable[None]],
        *,
        fmt: str = "pcm",
        sample_rate: int = 24000,
        first_fragment_max_chars: int = 60,
        max_fragment_chars: int = 300,
        max_text_chars: int = 4096,
        max_pending_chars: int = 16384,
        normalize: bool = True,
    ) -> None:
        if fmt not in STREAM_FORMATS:
            raise InvalidValue(
                f"response_format must be one of {', '.join(STREAM_FORMATS)}",
                code="unsupported_format",
                param="response_format",
            )
        self._synthesize = synthesize
        self._emit = emit
        self.fmt = fmt
        self.sample_rate = sample_rate
        self._splitter = IncrementalSplitter(first_fragment_max_chars, max_fragment_chars)
        self._max_fragment = max_fragment_chars
        # Text pushed but not yet matched to a fragment, and its offset in everything pushed: so word
        # timestamps can name characters of the client's own text.
        self._raw = ""
        self._raw_base = 0
        self._max_text = max_text_chars
        self._max_pending = max_pending_chars
        self._normalize = normalize
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._pending_chars = 0
        self._encoder: StreamEncoder = make_encoder(fmt, sample_rate, streaming=True)
        # Codecs run off the loop, on one thread per session so calls into the encoder never overlap
        # (a cancelled runner may leave a call in flight).
        self._codec = (
            ThreadPoolExecutor(1, thread_name_prefix="voxserve-codec") if fmt in ("mp3", "opus") else None
        )
        self._samples_out = 0
        self._runner: asyncio.Task[None] | None = None
        self._ended = False
        self.finished = asyncio.Event()
        self.fragments_spoken = 0
        self._speaking = False
        self.drained = asyncio.Event()
        """Set while nothing is queued or being spoken (all accepted text has been heard)."""
        self.drained.set()

    @property
    def audio_s(self) -> float:
        """Seconds of audio emitted so far."""
        return self._samples_out / self.sample_rate

    @property
    def pending_chars(self) -> int:
        """Text accepted but not yet spoken (buffered or queued)."""
        return self._pending_chars + self._splitter.buffered_chars

    def start(self) -> None:
        """Start the runner task (call from a running loop)."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="voxserve-speak")

    def push(self, text: str) -> None:
        """Add text (any piece: a token, a word, paragraphs); complete fragments are queued at once.

        Raises :class:`TextTooLong` (``text_too_long``) for one piece over ``max_text_chars`` and
        (``backlog_full``) when more than ``max_pending_chars`` would wait to be spoken; the text is
        then not accepted.
        """
        self._check_open()
        if len(text) > self._max_text:
            raise TextTooLong(
                f"a text message may hold at most {self._max_text} characters", code="text_too_long"
            )
        if self.pending_chars + len(text) > self._max_pending:
            raise TextTooLong(
                f"more than {self._max_pending} characters are waiting to be spoken; wait or cancel",
                code="backlog_full",
            )
        self._raw += text
        self._enqueue(self._splitter.feed(text))

    def flush(self) -> None:
        """Speak what is buffered now, even without a sentence end (the next fragment is short again)."""
        self._check_open()
        self._enqueue(self._splitter.flush())

    def end(self) -> None:
        """No more text: speak the rest, then emit :class:`Finished`."""
        if self._ended:
            return
        self.flush()
        self._ended = True
        self._queue.put_nowait(_END)

    async def cancel(self) -> int:
        """Barge-in: stop the audio now and drop all text not yet spoken; return how many fragments
        were dropped. After an :meth:`end`, the session then finishes at once."""
        dropped = sum(1 for item in self._drain() if item is not _END)
        self._splitter.flush()
        self._pending_chars = 0
        self._raw_base += len(self._raw)
        self._raw = ""
        if self._runner is not None and not self._runner.done():
            if self._speaking:
                dropped += 1
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._runner = None
        self._speaking = False
        self.drained.set()
        await self._emit(Cancelled(dropped))
        if self._ended:
            self._queue.put_nowait(_END)
        self.start()
        return dropped

    async def close(self) -> None:
        """Stop everything (the client went away); safe to call more than once."""
        self._drain()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._codec is not None:
            self._codec.shutdown(wait=False, cancel_futures=True)

    # --- internals ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise InvalidValue("the text stream has ended", code="ended")

    def _drain(self) -> list[object]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    @property
    def idle(self) -> bool:
        """Nothing buffered, queued or being spoken."""
        return self.drained.is_set() and self._splitter.buffered_chars == 0

    def _enqueue(self, fragments: list[str]) -> None:
        if fragments:
            self.drained.clear()
        for fragment in fragments:
            self._pending_chars += len(fragment)
            self._queue.put_nowait((fragment, self._locate(fragment)))

    def _locate(self, fragment: str) -> int | None:
        """Where ``fragment`` starts in all pushed text (fragments are slices of it, in order)."""
        at = self._raw.find(fragment)
        if at < 0:
            return None  # a hard-cut word: its pieces are not found as they are
        offset = self._raw_base + at
        self._raw_base = offset + len(fragment)
        self._raw = self._raw[at + len(fragment) :]
        return offset

    def _plan(self, fragment: str) -> SpeechPlan:
        """The fragment's markup read and its text normalised (a pause alone is kept)."""
        return plan_piece(
            fragment,
            max_fragment_chars=self._max_fragment,
            options=None if self._normalize else NormalizationOptions(normalize=False),
        )

    async def _encode(self, pcm: bytes) -> bytes:
        audio = s16_to_float(pcm)
        if self._codec is None:
            return self._encoder.encode(audio)
        return await asyncio.get_running_loop().run_in_executor(self._codec, self._encoder.encode, audio)

    async def _finish_encoder(self) -> bytes:
        if self._codec is None:
            return self._encoder.finish()
        return await asyncio.get_running_loop().run_in_executor(self._codec, self._encoder.finish)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _END:
                tail = await self._finish_encoder()
                if tail:
                    await self._emit(AudioData(tail))
                await self._emit(Finished(self.audio_s, self._samples_out))
                self.finished.set()
                return
            assert isinstance(item, tuple)
            fragment, offset = item
            self._speaking = True
            self._pending_chars = max(0, self._pending_chars - len(fragment))
            try:
                # Normalisation (numbers, dates, markup) is text work of unbounded cost: off the loop.
                plan = await asyncio.to_thread(self._plan, fragment)
                if not plan.fragments:
                    continue
                await self._speak(fragment, plan, offset)
            except VoxserveError as exc:
                _log.warning("fragment failed: %s", exc.message)
                await self._emit(Failed(exc, fragment))
            finally:
                self._speaking = False
                if self._queue.empty():
                    self.drained.set()

    async def _speak(self, fragment: str, plan: SpeechPlan, offset: int | None) -> None:
        stream = await self._synthesize(plan.fragments)
        start_s = self.audio_s
        locator = plan.locator()
        spoken = [f for f in plan.fragments if not isinstance(f, Pause)]
        try:
            async for chunk in stream:
                if 0 <= chunk.fragment < len(plan.fragments) and not isinstance(
                    plan.fragments[chunk.fragment], Pause
                ):
                    # One event per spoken part (a pause tag or IPA override splits a fragment).
                    sources = tuple(
                        None if span is None or offset is None else (offset + span[0], offset + span[1])
                        for span in locator.locate(chunk.fragment, chunk.words)
                    )
                    words = tuple(
                        WordTiming(w.word, round(start_s + w.start_s, 3), round(start_s + w.end_s, 3))
                        for w in chunk.words
                    )
                    text = fragment if len(spoken) == 1 else chunk.text
                    await self._emit(SentenceStarted(text, round(start_s + chunk.start_s, 3), words, sources))
                if not chunk.data:
                    continue
                data = await self._encode(chunk.data)
                self._samples_out += len(chunk.data) // 2
                if data:
                    await self._emit(AudioData(data))
            self.fragments_spoken += 1
        finally:
            stream.abort()
