"""The child-process side of a worker: one engine, one job at a time.

Started by :class:`voxserve.runtime.pool.WorkerHandle` with the ``spawn`` start method. The worker
builds its engine, answers :class:`Ready` (the handshake), then serves jobs from its pipe. During a
synthesis it polls the pipe between audio pieces, so a :class:`Cancel` stops the work at the next
fragment boundary; a worker that ignores a cancel is killed by the parent after a grace period.

A piece can be a whole sentence, one inference of up to a second, and a parallel job's helpers are
each in one when its client hangs up: the next request waited for them (time to first audio 370 ms
back to back after a hang-up, against 196 ms after a pause). So the parent also writes the cancelled
job's id to a second pipe, ``interrupts``, which a thread here reads: if that job is running and the
engine is :class:`~voxserve.engines.base.Interruptible`, the inference stops at once, and the job
ends as cancelled.

Audio is resampled and encoded here, not in the server, so the server's event loop only moves bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from voxserve.errors import EngineFailure, InvalidValue, OutputError, VoxserveError

__all__ = ["worker_main"]

_log = logging.getLogger("voxserve.worker")

_SILENT_PEAK = 1e-4
"""A fragment whose loudest sample is below this (about 3 steps of 16-bit PCM) is silent."""

_TRIM_AFTER_IDLE_S = 0.5
"""How long a worker waits after a job, with nothing to do, before it hands its free heap back."""

_ALLOWED_CALLS = frozenset({"check_voice", "phonemize", "voices"})
_STREAM_CALLS = frozenset({"transcribe", "transcribe_upload", "generate"})


def _then(pieces: Iterator[Any], after: Callable[[], None]) -> Iterator[Any]:
    """``pieces``, then ``after()`` once they are exhausted or abandoned."""
    try:
        yield from pieces
    finally:
        after()


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc only; elsewhere a no-op).

    glibc keeps the memory a job freed (decoded audio, CTranslate2's and onnxruntime's scratch
    outside their arenas) for the process's next allocations, so an idle worker held what its largest
    job needed: a Whisper worker 188 MB after one transcription, 158 MB once trimmed."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _prepare_environment(threads: int) -> None:
    # Set before onnxruntime/ctranslate2 are imported in this process: no telemetry, no hub,
    # and no thread pools bigger than this worker's share of the cores.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def worker_main(spec: Any, conn: Connection, interrupts: Connection | None = None, busy: Any = None) -> None:
    """Entry point of a worker process (``spec`` is an :class:`EngineSpec`; ``interrupts`` carries
    the ids of cancelled jobs, see the module docstring; ``busy`` is the server's shared count of busy
    workers, see :meth:`Serve.alone`)."""
    _prepare_environment(spec.threads)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{os.getpid()}] %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per decode is noise
    from voxserve.engines.catalog import build_engine
    from voxserve.runtime import messages as m

    try:
        engine = build_engine(spec)
        voices = engine.voices() if hasattr(engine, "voices") else []
        warm_up = getattr(engine, "warm_up", None)
        if callable(warm_up):
            # Before the handshake: a worker is Ready only once its first request costs what later
            # ones do (onnxruntime sizes its buffers on the first runs: 3.2 s against 1.8 s).
            t0 = time.perf_counter()
            warm_up()
            _log.info("%s engine warmed up in %.2f s", spec.engine, time.perf_counter() - t0)
        release_free_memory()
    except Exception as exc:  # report any start-up failure through the handshake
        _log.error("engine %s failed to start:\n%s", spec.engine, traceback.format_exc())
        conn.send(m.StartFailed(f"{spec.engine} engine failed to start: {type(exc).__name__}"))
        return
    try:
        conn.send(m.Ready(pid=os.getpid(), voices=voices))
    except OSError:
        return  # the server stopped while this worker was starting
    Serve(engine, conn, interrupts, busy).run()


class Serve:
    """The worker's message loop."""

    def __init__(
        self, engine: Any, conn: Connection, interrupts: Connection | None = None, busy: Any = None
    ) -> None:
        from voxserve.engines.base import Interruptible

        self.engine = engine
        self.conn = conn
        self._busy = busy
        self._interruptible = isinstance(engine, Interruptible)
        self._job_lock = threading.Lock()
        self._current_job: int | None = None
        self._interrupted: int | None = None
        # Interrupts read before their job (the two pipes race): the job is stopped as it starts.
        self._early_interrupts: deque[int] = deque(maxlen=16)
        if interrupts is not None:
            # Started even for an engine that cannot be interrupted: it drains the pipe, which would
            # otherwise fill and block the parent's event loop.
            threading.Thread(
                target=self._watch_interrupts, args=(interrupts,), name="interrupts", daemon=True
            ).start()
        # Messages read while a job was running that are not for it (there should be none, but a
        # Call sent right after a cancel must not be lost).
        self.backlog: deque[Any] = deque()
        self._rates: dict[str, int] | None = None
        # A parallel job's fragments rendered by helpers, by (job id, fragment index), and the
        # answer to its pending Claim.
        self._delivered: dict[tuple[int, int], Any] = {}
        self._assigned: dict[int, int] = {}
        # While a primary waiting for its Assign renders a fragment of an older request (a RenderJob
        # as the answer to its Claim), the job it waits for, and cancels of it read meanwhile.
        self._outer: int | None = None
        self._cancels: set[int] = set()
        self._worked = False
        """A job ran since the heap was last trimmed."""

    def alone(self) -> bool:
        """Whether this worker's job is still the only work of the server (a job marked lone asks just
        before its inference; without the shared count it trusts the mark)."""
        return self._busy is None or int(self._busy.value) <= 1

    def _next(self) -> Any:
        if self.backlog:
            return self.backlog.popleft()
        if self._worked and not self.conn.poll(_TRIM_AFTER_IDLE_S):
            # Idle after a job: trim now, not after each job, so back-to-back requests never wait.
            release_free_memory()
            self._worked = False
        return self.conn.recv()

    def run(self) -> None:
        from voxserve.runtime import messages as m

        while True:
            try:
                msg = self._next()
            except (EOFError, OSError):
                return  # the server went away: nothing left to serve
            if isinstance(msg, m.Shutdown):
                return
            if isinstance(msg, m.Ping):
                self.conn.send(m.Pong(msg.nonce))
            elif isinstance(msg, m.SynthJob):
                self._guard(msg.job_id, self._synth, msg)
            elif isinstance(msg, m.RenderJob):
                self._guard(msg.job_id, self._render, msg)
            elif isinstance(msg, m.Call):
                self._guard(msg.job_id, self._call, msg)
            elif isinstance(msg, m.StreamCall):
                self._guard(msg.job_id, self._stream_call, msg)
            elif isinstance(msg, m.Delivered) and msg.path is not None:
                _unlink(msg.path)  # a helper's audio for a job that is over
            # A Cancel (or an Assign) for a job that already finished is harmless: ignore it.

    def _watch_interrupts(self, interrupts: Connection) -> None:
        while True:
            try:
                job_id = interrupts.recv()
            except (EOFError, OSError):
                return  # the parent closed it: the worker is being stopped
            with self._job_lock:
                if job_id != self._current_job:
                    self._early_interrupts.append(job_id)
                elif self._interruptible:
                    self._interrupted = job_id
                    self.engine.interrupt()

    def _guard(self, job_id: int, fn: Any, msg: Any) -> None:
        from voxserve.runtime import messages as m

        t0 = time.perf_counter()
        self._worked = True
        with self._job_lock:
            self._current_job, self._interrupted = job_id, None
            if self._interruptible:
                if job_id in self._early_interrupts:
                    self._interrupted = job_id
                    self.engine.interrupt()
                else:
                    self.engine.rearm()  # an interrupt that came after the last job's final run
        try:
            fn(msg)
        except Exception as exc:
            with self._job_lock:
                interrupted = self._interrupted == job_id
            if interrupted:  # the engine was stopped mid-run: this job is cancelled, not failed
                self.conn.send(m.Done(job_id, 0.0, time.perf_counter() - t0, cancelled=True))
            elif isinstance(exc, VoxserveError):
                self.conn.send(m.JobError(job_id, exc))
            else:
                _log.error("job %d failed:\n%s", job_id, traceback.format_exc())
                self.conn.send(m.JobError(job_id, EngineFailure("the engine failed to synthesize this text")))
        finally:
            with self._job_lock:
                self._current_job = None

    def _call(self, msg: Any) -> None:
        from voxserve.runtime import messages as m

        if msg.method not in _ALLOWED_CALLS:
            raise EngineFailure(f"unknown worker call {msg.method}")
        value = getattr(self.engine, msg.method)(*msg.args)
        self.conn.send(m.Result(msg.job_id, value))

    def _stream_call(self, msg: Any) -> None:
        from voxserve.runtime import messages as m

        if msg.method not in _STREAM_CALLS:
            raise EngineFailure(f"unknown worker call {msg.method}")
        t0 = time.perf_counter()
        *args, options = msg.args  # each takes its options (Transcribe-, GenerateOptions) last
        options = dataclasses.replace(options, lone=msg.lone and self.alone())
        if msg.method == "transcribe_upload":
            data, max_seconds = args
            info, items = self._transcribe_upload(data, max_seconds, options)
        else:
            info, items = getattr(self.engine, msg.method)(*args, options)
        self.conn.send(m.Item(msg.job_id, info))
        for item in items:
            if self._cancelled(msg.job_id):
                self.conn.send(m.Done(msg.job_id, 0.0, time.perf_counter() - t0, cancelled=True))
                return
            self.conn.send(m.Item(msg.job_id, item))
        audio_s = float(getattr(info, "duration_s", 0.0))
        self.conn.send(m.Done(msg.job_id, audio_s, time.perf_counter() - t0))

    def _transcribe_upload(self, data: bytes, max_seconds: float, options: Any) -> tuple[Any, Any]:
        """An uploaded file (any container), decoded here rather than in the server: what a hostile
        upload costs (bounded by ``decode_audio``'s work limit) falls on this admitted worker, never on
        the server's process or memory; then transcribed, its silence skipped (a whole file has had no
        VAD in front of it, unlike a stream). Bad files raise the decoder's 4xx errors."""
        from voxserve.audio.decode import decode_audio

        audio = decode_audio(data, max_seconds=max_seconds)
        del data
        options = dataclasses.replace(options, skip_silence=True)  # every caller sends TranscribeOptions
        result: tuple[Any, Any] = self.engine.transcribe(audio, options)
        return result

    def _cancelled(self, job_id: int) -> bool:
        """Drain pending messages; True if one of them cancels ``job_id``."""
        cancelled = job_id in self._cancels
        while self.conn.poll():
            cancelled = self._take(self.conn.recv(), job_id) or cancelled
        return cancelled

    def _take(self, msg: Any, job_id: int) -> bool:
        """File one message read during job ``job_id``; True if it cancels that job."""
        from voxserve.runtime import messages as m

        live = (job_id, self._outer)
        if isinstance(msg, m.Cancel):
            if msg.job_id == self._outer:
                self._cancels.add(msg.job_id)  # seen by the outer job once the lent render is over
            return msg.job_id == job_id
        if isinstance(msg, m.Ping):
            self.conn.send(m.Pong(msg.nonce))
        elif isinstance(msg, m.Delivered):
            if msg.job_id in live:
                self._delivered[(msg.job_id, msg.index)] = msg
            elif msg.path is not None:  # for a job that is over: nobody will read it
                _unlink(msg.path)
        elif isinstance(msg, m.Assign):
            if msg.job_id in live:
                self._assigned[msg.job_id] = msg.index
        else:
            self.backlog.append(msg)
        return False

    def _wait(self, job_id: int, ready: Any) -> bool:
        """Block until ``ready()`` is true, serving pings and rendering the fragments of older requests
        the pool lends this worker meanwhile; False if ``job_id`` is cancelled first."""
        from voxserve.runtime import messages as m

        while not ready():
            if job_id in self._cancels:
                return False
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                raise EngineFailure("the server went away") from None
            if isinstance(msg, m.RenderJob):
                self._lent(job_id, msg)
            elif self._take(msg, job_id):
                return False
        return job_id not in self._cancels

    def _lent(self, outer: int, msg: Any) -> None:
        """Render ``msg``, a fragment of an older request, inside job ``outer`` (which waits for its
        next fragment): as a job of its own (its own cancel and interrupt), then back to ``outer``."""
        self._outer = outer
        try:
            self._guard(msg.job_id, self._render, msg)
        finally:
            self._outer = None
            with self._job_lock:
                self._current_job = outer

    def _native_rate(self, voice: str, fallback: int) -> int:
        """The engine's output rate for ``voice`` (pauses before any audio are made at this rate)."""
        if self._rates is None:
            infos = self.engine.voices() if hasattr(self.engine, "voices") else []
            self._rates = {info.name: int(info.sample_rate) for info in infos}
        # A Kokoro blend is not listed by name; every voice of one engine shares its rate.
        return self._rates.get(voice) or next(iter(self._rates.values()), fallback)

    def _sources(self, job: Any) -> list[tuple[int, str, Any]]:
        """``(fragment index, text, make pieces)`` for each fragment of ``job``, validated up front."""
        import numpy as np

        from voxserve.engines.base import AudioPiece, WordTiming
        from voxserve.text.markup import Pause, PhonemeOverride

        engine = self.engine
        if job.phonemes is not None:
            return [(0, job.phonemes, lambda: engine.synthesize_phonemes(job.phonemes, job.voice, job.speed))]
        # IPA overrides are checked before any audio is made, so bad phonemes are a 4xx before the
        # response starts rather than a stream that breaks off at the override.
        for item in job.fragments:
            if isinstance(item, PhonemeOverride):
                try:
                    engine.check_phonemes(item.phonemes, job.voice)
                except InvalidValue as exc:
                    raise InvalidValue(
                        f"the IPA override for {item.text!r}: {exc.message}", code=exc.code, param="input"
                    ) from None

        def pause(seconds: float) -> Any:
            rate = self._native_rate(job.voice, job.sample_rate)
            yield AudioPiece(audio=np.zeros(round(seconds * rate), np.float32), sample_rate=rate)

        def override(item: PhonemeOverride) -> Any:
            for piece in engine.synthesize_phonemes(item.phonemes, job.voice, job.speed):
                if not piece.words:
                    # Engines give no word times for raw phonemes: the override is one "word".
                    piece.words = [WordTiming(item.text, 0.0, round(len(piece.audio) / piece.sample_rate, 3))]
                piece.text = item.text
                yield piece

        sources: list[tuple[int, str, Any]] = []
        for i, item in enumerate(job.fragments):
            if isinstance(item, Pause):
                sources.append((i, "", lambda s=item.seconds: pause(s)))
            elif isinstance(item, PhonemeOverride):
                sources.append((i, item.text, lambda o=item: override(o)))
            else:
                sources.append((i, item, lambda t=item: engine.synthesize(t, job.voice, job.speed)))
        return sources

    def _synth(self, job: Any) -> None:
        import numpy as np

        from voxserve.audio.encode import make_encoder
        from voxserve.runtime import messages as m

        t0 = time.perf_counter()
        self.engine.check_voice(job.voice)
        sources = self._sources(job)
        out = _Output(self, job, make_encoder(job.fmt, job.sample_rate, streaming=job.streaming))
        parallel = getattr(job, "parallel", False) and len(sources) > 1
        use_lone = getattr(self.engine, "use_lone", None)
        if getattr(job, "lone", False) and callable(use_lone):
            # Alone on the server: the first fragment (the first audio) on every core, if no other job
            # started since the dispatch. In a parallel job the helpers take the later fragments on
            # their own cores, so the lone session stops there; otherwise the job keeps it.
            index, text, make = sources[0]

            def first(make: Any = make) -> Any:
                use_lone(self.alone())
                return _then(make(), lambda: use_lone(False)) if parallel else make()

            sources[0] = (index, text, first)
        try:
            if parallel:
                finished = self._assemble(job, sources, out)
            else:
                finished = all(out.fragment(index, text, make()) for index, text, make in sources)
        finally:
            if callable(use_lone):
                use_lone(False)
        if not finished:
            self.conn.send(m.Done(job.job_id, out.samples / job.sample_rate, 0.0, cancelled=True))
            return
        tail = out.resampler.flush() if out.resampler is not None else np.zeros(0, np.float32)
        if job.trailing_silence_s > 0:
            tail = np.concatenate([tail, np.zeros(int(job.trailing_silence_s * job.sample_rate), np.float32)])
        out.samples += len(tail)
        data = out.encoder.encode(tail) + out.encoder.finish()
        if data:
            self.conn.send(m.Chunk(job.job_id, data))
        self.conn.send(m.Done(job.job_id, out.samples / job.sample_rate, time.perf_counter() - t0))

    def _assemble(self, job: Any, sources: list[tuple[int, str, Any]], out: _Output) -> bool:
        """Speak a parallel job's fragments in order: render the first at once, then each one the pool
        assigns (streamed when it is next, else buffered), and take the others from the helpers.
        False if the job is cancelled."""
        from voxserve.runtime import messages as m

        job_id = job.job_id
        ahead: dict[int, list[Any]] = {}  # rendered here before their turn
        next_out = 0
        own: int | None = 0  # the first fragment is always this worker's
        exhausted = False
        try:
            while next_out < len(sources):
                if own is None:
                    if next_out in ahead:
                        if not out.fragment(next_out, sources[next_out][1], ahead.pop(next_out)):
                            return False
                        next_out += 1
                        continue
                    delivered = self._delivered.pop((job_id, next_out), None)
                    if delivered is not None:
                        if delivered.path is None:
                            own = next_out  # the helper failed: render it here (its one retry)
                            continue
                        pieces = _load_pieces(delivered)
                        if not out.fragment(next_out, sources[next_out][1], pieces):
                            return False
                        next_out += 1
                        continue
                    if exhausted:
                        if not self._wait(job_id, lambda key=(job_id, next_out): key in self._delivered):
                            return False
                        continue
                    self.conn.send(m.Claim(job_id, out.samples / job.sample_rate))
                    if not self._wait(job_id, lambda: job_id in self._assigned):
                        return False
                    index = self._assigned.pop(job_id)
                    if index < 0:
                        exhausted = True
                        continue
                    own = index
                index, text, make = sources[own]
                own = None
                if index == next_out:
                    if not out.fragment(index, text, make()):
                        return False
                    next_out += 1
                    continue
                pieces = []
                for piece in make():
                    if self._cancelled(job_id):
                        return False
                    pieces.append(piece)
                ahead[index] = pieces
            return True
        finally:
            self._assigned.pop(job_id, None)
            self._cancels.discard(job_id)
            for key in [k for k in self._delivered if k[0] == job_id]:
                path = self._delivered.pop(key).path
                if path is not None:
                    _unlink(path)

    def _render(self, msg: Any) -> None:
        """A helper's part of a parallel job: one fragment to float32 audio in ``msg.path``."""
        import numpy as np

        from voxserve.runtime import messages as m

        t0 = time.perf_counter()
        self.engine.check_voice(msg.voice)
        request = m.SynthJob(
            voice=msg.voice,
            speed=msg.speed,
            fmt="pcm",
            sample_rate=msg.sample_rate,
            fragments=(msg.fragment,),
        )
        ((_, _, make),) = self._sources(request)
        audio: list[Any] = []
        pieces: list[m.RenderedPiece] = []
        for piece in make():
            if self._cancelled(msg.job_id):
                self.conn.send(m.Done(msg.job_id, 0.0, time.perf_counter() - t0, cancelled=True))
                return
            samples = np.asarray(piece.audio, dtype=np.float32)
            audio.append(samples)
            pieces.append(m.RenderedPiece(len(samples), piece.sample_rate, piece.text, tuple(piece.words)))
        joined = np.concatenate(audio) if audio else np.zeros(0, np.float32)
        with open(msg.path, "wb") as f:
            np.save(f, joined, allow_pickle=False)
        self.conn.send(m.Result(msg.job_id, tuple(pieces)))


class _Output:
    """One job's output: resampled, scaled and encoded in order, sent as :class:`Chunk` s."""

    def __init__(self, serve: Serve, job: Any, encoder: Any) -> None:
        self.serve = serve
        self.job = job
        self.encoder = encoder
        self.resampler: Any = None
        self.samples = 0

    def fragment(self, index: int, text: str, pieces: Any) -> bool:
        """Send fragment ``index``'s pieces (checking for a cancel between them); False if cancelled."""
        import numpy as np

        from voxserve.audio.resample import Resampler
        from voxserve.engines.base import WordTiming
        from voxserve.runtime import messages as m
        from voxserve.text.markup import Pause

        job, serve = self.job, self.serve
        first_piece = True
        peak = 0.0
        for piece in pieces:
            if serve._cancelled(job.job_id):
                return False
            if self.resampler is None:
                self.resampler = Resampler(piece.sample_rate, job.sample_rate)
            if piece.audio.size:
                peak = max(peak, float(np.abs(piece.audio).max()))
            audio = piece.audio if job.volume == 1.0 else np.clip(piece.audio * job.volume, -1, 1)
            out = self.resampler.process(audio.astype(np.float32, copy=False))
            start_s = self.samples / job.sample_rate
            words = tuple(
                WordTiming(w.word, round(start_s + w.start_s, 3), round(start_s + w.end_s, 3))
                for w in piece.words
            )
            self.samples += len(out)
            data = self.encoder.encode(out)
            serve.conn.send(
                m.Chunk(
                    job.job_id,
                    data,
                    fragment=index if first_piece else -1,
                    text=text if first_piece else "",
                    start_s=start_s,
                    words=words,
                )
            )
            first_piece = False
        is_pause = job.phonemes is None and isinstance(job.fragments[index], Pause)
        if peak < _SILENT_PEAK and not is_pause:
            # An engine that returns silence for speakable text has failed: say so instead of
            # passing silence off as speech (before the headers when it is the first fragment).
            raise OutputError(f"the engine produced silent audio for fragment {index + 1}")
        return True


def _load_pieces(delivered: Any) -> list[Any]:
    """The :class:`AudioPiece` s of a fragment a helper rendered (its file is deleted)."""
    import numpy as np

    from voxserve.engines.base import AudioPiece

    try:
        with open(delivered.path, "rb") as f:
            audio = np.load(f, allow_pickle=False)
    finally:
        _unlink(delivered.path)
    pieces = []
    at = 0
    for p in delivered.pieces:
        pieces.append(AudioPiece(audio[at : at + p.samples], p.sample_rate, p.text, list(p.words)))
        at += p.samples
    return pieces


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
