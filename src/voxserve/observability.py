"""Prometheus metrics and the event-loop lag probe.

Each app gets its own :class:`CollectorRegistry`, so several apps in one process (tests) do not clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "LOG_FORMAT",
    "HeapTrimmer",
    "LoopLagProbe",
    "Metrics",
    "RepeatLimiter",
    "configure_logging",
    "trim_heap",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "info", stream: Any = None) -> logging.Handler | None:
    """Send the ``voxserve.*`` loggers' lines at ``level`` and above to ``stream`` (stderr), as a
    server's log. uvicorn configures only its own loggers, so without this the server's INFO lines
    (a WebSocket's error events, a client's model_not_found) are dropped and its warnings come out
    bare. Does nothing when the ``voxserve`` or the root logger already has a handler (the embedding
    application configured logging); returns the handler added, if any."""
    logger = logging.getLogger("voxserve")
    logger.setLevel(level.upper())
    if logger.handlers or logging.getLogger().handlers:
        return None
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    return handler


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The server's metrics; names start with ``voxserve_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "voxserve_requests_total", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.ttfb = Histogram(
            "voxserve_tts_first_audio_seconds",
            "From request arrival to the first audio byte ready to send.",
            ["format"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "voxserve_tts_rtf",
            "Worker compute time divided by audio duration, per finished job.",
            ["engine"],
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.audio_seconds = Counter(
            "voxserve_tts_audio_seconds_total", "Seconds of audio synthesized.", ["engine"], registry=r
        )
        self.cancelled = Counter(
            "voxserve_tts_jobs_cancelled_total",
            "Synthesis jobs stopped early because the client went away.",
            ["engine"],
            registry=r,
        )
        self.stream_errors = Counter(
            "voxserve_tts_stream_errors_total",
            "Streams that failed after the first byte.",
            ["code"],
            registry=r,
        )
        self.restarts = Counter(
            "voxserve_worker_restarts_total",
            "Worker processes replaced after a crash.",
            ["engine"],
            registry=r,
        )
        self.active_streams = Gauge("voxserve_active_streams", "Responses now streaming.", registry=r)
        self.loop_lag = Histogram(
            "voxserve_event_loop_lag_seconds",
            "How late the loop-lag probe wakes up.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "voxserve_queue_depth", "Requests waiting for a worker.", ["engine"], registry=r
        )
        self.busy_workers = Gauge("voxserve_busy_workers", "Workers serving a job.", ["engine"], registry=r)
        self.speech_jobs = Gauge(
            "voxserve_speech_jobs",
            "Speech jobs held, by state (queued, running, finished).",
            ["state"],
            registry=r,
        )
        self.early_finals = Counter(
            "voxserve_stt_early_finals_total",
            "Speculative final decodes of streaming transcription (started in a pause, before the "
            "utterance is known to end), by outcome: used (it became the final: no decode after the end) "
            "or dropped (speech went on).",
            ["outcome"],
            registry=r,
        )
        self.ws_errors = Counter(
            "voxserve_ws_errors_total",
            "WebSocket error events sent, and closes with an error code (a close that follows an error "
            "event counts once, under the event's code; a bare close counts as close_<code> or its "
            "reason), by code and route.",
            ["code", "route"],
            registry=r,
        )
        self.http_errors = Counter(
            "voxserve_http_errors_total",
            "HTTP error responses (status 400 and above) by error code, route template and status.",
            ["code", "route", "status"],
            registry=r,
        )
        self.speech_job_bytes = Gauge(
            "voxserve_speech_job_bytes",
            "Bytes in speech job files (bounded by max_job_storage_bytes).",
            registry=r,
        )

    def render(self, stats: dict[str, Any], jobs: dict[str, int] | None = None, job_bytes: int = 0) -> bytes:
        for engine, s in stats.items():
            self.queue_depth.labels(engine).set(s["queued"])
            self.busy_workers.labels(engine).set(s["busy"])
        for name, count in (jobs or {}).items():
            self.speech_jobs.labels(name).set(count)
        self.speech_job_bytes.set(job_bytes)
        return bytes(generate_latest(self.registry))


class RepeatLimiter:
    """Logs a line per key at most once per ``interval_s``: the lines held back in between are counted
    and named on the next line that goes out (``(3 more)``), or by :meth:`flush`. Counting metrics is
    the caller's job: a metric always counts, only the log is limited. At most ``max_keys`` keys are
    remembered (the oldest is forgotten first), so a flood of distinct keys cannot grow it."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, tuple[int, int, str]] = {}
        """Per key: how many lines were held back, the highest level and the text of the last one."""

    def log(self, key: Hashable, level: int, message: str) -> bool:
        """Log ``message`` unless a line with ``key`` went out less than ``interval_s`` ago; return
        whether it was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            count, top, _ = self._held.get(key, (0, level, message))
            self._held[key] = (count + 1, max(top, level), message)
            return False
        held = self._held.pop(key, None)
        if held is not None:
            message = f"{message} ({held[0]} more)"
        self._last.pop(key, None)
        self._last[key] = now
        while len(self._last) > self.max_keys:
            oldest = next(iter(self._last))
            del self._last[oldest]
            self._held.pop(oldest, None)
        self.logger.log(level, "%s", message)
        return True

    def flush(self) -> None:
        """Log the lines still held back, one per key (at the end of what they belong to)."""
        for count, level, message in self._held.values():
            suffix = "" if count == 1 else f" ({count - 1} more)"
            self.logger.log(level, "%s%s", message, suffix)
        self._held.clear()


class _Periodic:
    """A task of the server's own that runs until :meth:`stop` (started by the app's lifespan)."""

    name = "periodic"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class LoopLagProbe(_Periodic):
    """A task that sleeps ``interval_s`` and records how late it wakes up: the loop's lag."""

    name = "loop-lag-probe"

    def __init__(self, observe: Callable[[float], None], interval_s: float = 0.005) -> None:
        super().__init__()
        self.observe = observe
        self.interval_s = interval_s
        self.recent: deque[float] = deque(maxlen=2000)

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - t0 - self.interval_s)
            self.recent.append(lag)
            self.observe(lag)

    def percentile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        values = sorted(self.recent)
        return values[min(len(values) - 1, int(q * len(values)))]


def trim_heap() -> bool:
    """Give the C heap's free pages back to the operating system (glibc's ``malloc_trim``).

    Blocking (a few milliseconds): call it from a thread. False where there is no glibc. Without it
    the memory a burst of large requests used (uploads, long texts: freed, but kept by the allocator
    for reuse) stays in the server's RSS for good.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


class HeapTrimmer(_Periodic):
    """Every ``interval_s``, :func:`trim_heap` in a thread (``memory_trim_interval_s``)."""

    name = "heap-trimmer"

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.trims = 0

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not await asyncio.to_thread(trim_heap):
                return  # not glibc: nothing to do, ever
            self.trims += 1
