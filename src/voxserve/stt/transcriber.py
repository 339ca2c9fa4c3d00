"""The async driver of a streaming transcription session.

:class:`voxserve.stt.session.StreamingSession` is sans-I/O: it asks for decodes with ``DecodeRequest``
events and is told their results. This driver runs the session's VAD work in a thread, sends each decode
to a Whisper worker, feeds the result back, and hands every other event to the adapter's ``emit``
callback (WebSocket protocols, the CLI, the UI). One driver per client; drivers share no state but the
worker pool and the (thread-safe) VAD model.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from voxserve.audio.pcm import FloatAudio
from voxserve.config import Settings
from voxserve.engines.base import Segment, TranscribeOptions
from voxserve.runtime.pool import EnginePool
from voxserve.stt.session import DecodeRequest, SessionConfig, SpeechStopped, StreamingSession

__all__ = ["Transcriber", "VadFactory", "session_config"]

_log = logging.getLogger("voxserve.stt")

VadFactory = Callable[[], Any]
"""Returns a fresh per-stream VAD (``frame_samples`` and ``process(frame) -> float``)."""


def session_config(
    settings: Settings,
    *,
    interim: bool = True,
    threshold: float | None = None,
    silence_ms: int | None = None,
    prefix_ms: int | None = None,
) -> SessionConfig:
    """The session settings: server defaults, overridden per session where the protocol allows."""
    return SessionConfig(
        vad_threshold=settings.vad_threshold if threshold is None else threshold,
        min_silence_ms=settings.vad_min_silence_ms if silence_ms is None else silence_ms,
        prefix_padding_ms=settings.vad_prefix_padding_ms if prefix_ms is None else prefix_ms,
        partial_interval_ms=settings.partial_interval_ms if interim else 0,
        interim_results=interim,
        commit_speculation_ms=settings.stt_commit_speculation_ms,
        commit_speculation_threshold=settings.vad_threshold,
        context_audio_s=settings.stt_context_audio_s,
        context_audio_gap_s=settings.stt_context_audio_gap_s,
        context_audio_below_s=settings.stt_context_audio_below_s,
    )


class Transcriber:
    """Drive one :class:`StreamingSession` against a Whisper pool."""

    def __init__(
        self,
        pool: EnginePool,
        config: SessionConfig,
        vad: Any,
        emit: Callable[[Any], Awaitable[None]],
        *,
        options: TranscribeOptions,
        count_early_finals: Callable[[str, int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.session = StreamingSession(config, vad)
        self.emit = emit
        self.options = options
        self._lock = asyncio.Lock()
        # At most one partial and one final decode run at once (the session guarantees it).
        self._decodes: set[asyncio.Task[None]] = set()
        self._closed = False
        self.samples_in = 0
        self.skipped_partials = 0
        # Called with ("used" | "dropped", how many) as the session's speculative finals turn out.
        self._count_early = count_early_finals
        self._early_seen = (0, 0)

    async def feed(self, pcm: npt.NDArray[np.float32]) -> None:
        """Feed 16 kHz float32 audio (VAD runs in a thread; the loop only moves bytes).

        Raises ``transcription_backlog`` when the session is too far behind (nothing of ``pcm`` is kept
        then: it may be fed again after :meth:`wait_decodes`)."""
        async with self._lock:
            events = await asyncio.to_thread(self.session.feed, pcm)
        self.samples_in += len(pcm)
        await self._handle(events)

    async def feed_encoded(self, data: bytes, convert: Callable[[bytes], FloatAudio]) -> int:
        """Decode a client's audio frame with ``convert`` (a stateful
        :class:`~voxserve.audio.decode.PcmConverter`) and feed it; decoding, resampling and VAD all
        run in one worker thread, so the loop only moves bytes. Returns the 16 kHz samples fed.

        Raises what ``convert`` raises for bad audio, and ``transcription_backlog`` when the session
        is too far behind (nothing of ``data`` is kept then)."""

        def work() -> tuple[int, list[Any]]:
            pcm = convert(data)
            return len(pcm), self.session.feed(pcm)

        async with self._lock:
            samples, events = await asyncio.to_thread(work)
        self.samples_in += samples
        await self._handle(events)
        return samples

    async def commit(self) -> bool:
        """End the current utterance now (OpenAI ``input_audio_buffer.commit``); False when there
        was none (between utterances, with VAD: nothing is sent then)."""
        async with self._lock:
            events = self.session.commit()
        await self._handle(events)
        return any(isinstance(e, SpeechStopped) for e in events)

    @property
    def speech_pending(self) -> bool:
        """Whether audio fed so far would make an utterance on :meth:`commit` (with VAD: speech has
        begun and not yet ended)."""
        return self.session.buffered_s > 0

    async def configure(self, options: TranscribeOptions, prompt: str) -> None:
        """Use ``options`` and ``prompt`` from the next decode on; the audio fed so far stays."""
        async with self._lock:
            self.options = options
            self.session.set_prompt(prompt)

    async def clear(self) -> None:
        """Drop the current utterance's audio; results of its pending decodes are ignored."""
        async with self._lock:
            events = self.session.clear()
        await self._handle(events)

    async def finish(self, timeout_s: float = 30.0) -> None:
        """End the stream and wait until every final has been emitted (or ``timeout_s``)."""
        async with self._lock:
            events = self.session.finish()
        await self._handle(events)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.session.idle and loop.time() < deadline and self._decodes:
            await asyncio.wait(
                set(self._decodes),
                timeout=max(0.01, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )

    @property
    def decoding(self) -> bool:
        """Whether a decode is in flight (a final, a partial, or a partial whose result the session no
        longer wants)."""
        return bool(self._decodes)

    async def wait_decodes(self, timeout_s: float, *, one: bool = False) -> bool:
        """Wait, at most ``timeout_s``, until no decode is in flight (decodes started meanwhile
        included); with ``one``, only until one of those in flight has ended. True if that happened
        (also when none was in flight), False at the timeout. Nothing is cancelled (:meth:`close`
        does that).

        Two uses: after :meth:`finish`, to let a partial still running end before :meth:`close` (a
        decode cancelled mid-way may cost the pool its worker); and, when :meth:`feed` raises
        ``transcription_backlog``, to wait for a decode to take its audio before feeding again
        (back-pressure instead of an error, for a client that sends faster than real time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._decodes:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            done, _ = await asyncio.wait(
                set(self._decodes), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if one and done:
                return True
        return True

    async def close(self) -> None:
        """Stop: cancel the decode in flight (its worker is told to stop)."""
        self._closed = True
        tasks = list(self._decodes)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def lag_s(self) -> float:
        lag: float = self.session.lag_s
        return lag

    async def _handle(self, events: list[Any]) -> None:
        self._report_early_finals()
        for event in events:
            if isinstance(event, DecodeRequest):
                self._start_decode(event)
            else:
                await self.emit(event)

    def _report_early_finals(self) -> None:
        if self._count_early is None:
            return
        now, seen = self.session.early_finals, self._early_seen
        if now != seen:
            self._early_seen = now
            for outcome, n in (("used", now[0] - seen[0]), ("dropped", now[1] - seen[1])):
                if n:
                    self._count_early(outcome, n)

    def _start_decode(self, request: DecodeRequest) -> None:
        if self._closed:
            return
        task = asyncio.create_task(self._run_decode(request), name=f"decode-{request.request_id}")
        self._decodes.add(task)
        task.add_done_callback(self._decodes.discard)

    async def _run_decode(self, request: DecodeRequest) -> None:
        options = self.options
        if request.prompt:
            options = dataclasses.replace(options, prompt=request.prompt)
        if request.keep_from_s is not None:
            # Earlier speech heard again: the session keeps the words after it, by their times.
            options = dataclasses.replace(options, word_timestamps=True)
        if request.kind == "partial":
            # Partials carry no words, and a poor one is soon replaced: no temperature fallback.
            options = dataclasses.replace(options, word_timestamps=False, temperature_fallback=False)
        stream = None
        # One worker of a pool of several is kept for finals: a partial only starts when another worker
        # is idle too, so a final never waits behind other streams' partials.
        reserve = 1 if self.pool.size > 1 else 0
        if request.kind == "partial" and self.pool.idle_workers <= reserve:
            # Under load, partials are skipped rather than queued, so finals (never skipped) get the
            # next free worker; the session asks for a fresh partial after its interval.
            self.skipped_partials += 1
            async with self._lock:
                events = self.session.on_decode_failed(request.request_id)
            await self._handle(events)
            return
        try:
            stream = await self.pool.stream_call("transcribe", request.audio, options)
            values = [v async for v in stream]
            segments: list[Segment] = values[1:]
        except asyncio.CancelledError:
            if stream is not None:
                stream.abort()
            raise
        except Exception as exc:
            _log.warning("decode %d failed: %s", request.request_id, exc)
            async with self._lock:
                events = self.session.on_decode_failed(request.request_id)
            await self._handle(events)
            return
        async with self._lock:
            events = self.session.on_decode_result(request.request_id, segments)
        await self._handle(events)
