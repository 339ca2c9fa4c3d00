"""The child-process side of a worker: one engine, one job at a time.

Started by :class:`voxserve.runtime.pool.WorkerHandle` with the ``spawn`` start method. The worker
builds its engine, answers :class:`Ready` (the handshake), then serves jobs from its pipe. During a
synthesis it polls the pipe between audio pieces, so a :class:`Cancel` stops the work at the next
fragment boundary; a worker that ignores a cancel is killed by the parent after a grace period.

Audio is resampled and encoded here, not in the server, so the server's event loop only moves bytes.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from voxserve.errors import EngineFailure, InvalidValue, OutputError, VoxserveError

__all__ = ["worker_main"]

_log = logging.getLogger("voxserve.worker")

_SILENT_PEAK = 1e-4
"""A fragment whose loudest sample is below this (about 3 steps of 16-bit PCM) is silent."""

_ALLOWED_CALLS = frozenset({"check_voice", "phonemize", "voices"})
_STREAM_CALLS = frozenset({"transcribe"})


def _prepare_environment(threads: int) -> None:
    # Set before onnxruntime/ctranslate2 are imported in this process: no telemetry, no hub,
    # and no thread pools bigger than this worker's share of the cores.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def worker_main(spec: Any, conn: Connection) -> None:
    """Entry point of a worker process (``spec`` is an :class:`EngineSpec`)."""
    _prepare_environment(spec.threads)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{os.getpid()}] %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per decode is noise
    from voxserve.engines.catalog import build_engine
    from voxserve.runtime import messages as m

    try:
        engine = build_engine(spec)
        voices = engine.voices() if hasattr(engine, "voices") else []
    except Exception as exc:  # report any start-up failure through the handshake
        _log.error("engine %s failed to start:\n%s", spec.engine, traceback.format_exc())
        conn.send(m.StartFailed(f"{spec.engine} engine failed to start: {type(exc).__name__}"))
        return
    try:
        conn.send(m.Ready(pid=os.getpid(), voices=voices))
    except OSError:
        return  # the server stopped while this worker was starting
    Serve(engine, conn).run()


class Serve:
    """The worker's message loop."""

    def __init__(self, engine: Any, conn: Connection) -> None:
        self.engine = engine
        self.conn = conn
        # Messages read while a job was running that are not for it (there should be none, but a
        # Call sent right after a cancel must not be lost).
        self.backlog: deque[Any] = deque()
        self._rates: dict[str, int] | None = None

    def _next(self) -> Any:
        return self.backlog.popleft() if self.backlog else self.conn.recv()

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
            elif isinstance(msg, m.Call):
                self._guard(msg.job_id, self._call, msg)
            elif isinstance(msg, m.StreamCall):
                self._guard(msg.job_id, self._stream_call, msg)
            # A Cancel for a job that already finished is harmless: ignore it.

    def _guard(self, job_id: int, fn: Any, msg: Any) -> None:
        from voxserve.runtime import messages as m

        try:
            fn(msg)
        except VoxserveError as exc:
            self.conn.send(m.JobError(job_id, exc))
        except Exception:
            _log.error("job %d failed:\n%s", job_id, traceback.format_exc())
            self.conn.send(m.JobError(job_id, EngineFailure("the engine failed to synthesize this text")))

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
        info, items = getattr(self.engine, msg.method)(*msg.args)
        self.conn.send(m.Item(msg.job_id, info))
        for item in items:
            if self._cancelled(msg.job_id):
                self.conn.send(m.Done(msg.job_id, 0.0, time.perf_counter() - t0, cancelled=True))
                return
            self.conn.send(m.Item(msg.job_id, item))
        audio_s = float(getattr(info, "duration_s", 0.0))
        self.conn.send(m.Done(msg.job_id, audio_s, time.perf_counter() - t0))

    def _cancelled(self, job_id: int) -> bool:
        """Drain pending messages; True if one of them cancels ``job_id``."""
        from voxserve.runtime import messages as m

        cancelled = False
        while self.conn.poll():
            msg = self.conn.recv()
            if isinstance(msg, m.Cancel):
                cancelled = cancelled or msg.job_id == job_id
            elif isinstance(msg, m.Ping):
                self.conn.send(m.Pong(msg.nonce))
            else:
                self.backlog.append(msg)
        return cancelled

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
        from voxserve.audio.resample import Resampler
        from voxserve.engines.base import WordTiming
        from voxserve.runtime import messages as m
        from voxserve.text.markup import Pause

        t0 = time.perf_counter()
        self.engine.check_voice(job.voice)
        sources = self._sources(job)
        encoder = make_encoder(job.fmt, job.sample_rate, streaming=job.streaming)
        resampler: Resampler | None = None
        out_samples = 0
        for index, text, make_pieces in sources:
            first_piece = True
            peak = 0.0
            for piece in make_pieces():
                if self._cancelled(job.job_id):
                    self.conn.send(m.Done(job.job_id, out_samples / job.sample_rate, 0.0, cancelled=True))
                    return
                if resampler is None:
                    resampler = Resampler(piece.sample_rate, job.sample_rate)
                if piece.audio.size:
                    peak = max(peak, float(np.abs(piece.audio).max()))
                audio = piece.audio if job.volume == 1.0 else np.clip(piece.audio * job.volume, -1, 1)
                out = resampler.process(audio.astype(np.float32, copy=False))
                start_s = out_samples / job.sample_rate
                words = tuple(
                    WordTiming(w.word, round(start_s + w.start_s, 3), round(start_s + w.end_s, 3))
                    for w in piece.words
                )
                out_samples += len(out)
                data = encoder.encode(out)
                self.conn.send(
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
        tail = resampler.flush() if resampler is not None else np.zeros(0, np.float32)
        if job.trailing_silence_s > 0:
            tail = np.concatenate([tail, np.zeros(int(job.trailing_silence_s * job.sample_rate), np.float32)])
        out_samples += len(tail)
        data = encoder.encode(tail) + encoder.finish()
        if data:
            self.conn.send(m.Chunk(job.job_id, data))
        self.conn.send(m.Done(job.job_id, out_samples / job.sample_rate, time.perf_counter() - t0))
