"""The FastAPI application factory and its lifespan.

``create_app()`` builds the app and starts nothing; the lifespan starts the worker processes of the
preloaded engines and of the default STT model (warm when it returns) and stops them all on shutdown.
The other engines start on the first request that needs them (``engine_start``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxserve import __version__
from voxserve.api import (
    chat_completions,
    chat_ws,
    dev,
    realtime,
    speak_ws,
    speech,
    speech_jobs,
    stream_ws,
    system,
    transcriptions,
)
from voxserve.api.errors import count_http_error, count_request, install_error_handlers
from voxserve.api.security import install_security
from voxserve.api.state import AppState
from voxserve.api.transport import (
    TransportMiddleware,
    apply_server_settings,
    install_handshake_log_filter,
    server_config,
)
from voxserve.config import Settings
from voxserve.errors import InvalidRequest, RequestTimeout, TextTooLong, VoxserveError
from voxserve.observability import HeapTrimmer, LoopLagProbe, Metrics
from voxserve.runtime.registry import EngineRegistry
from voxserve.tts.jobs import JobEngine, SpeechJobs
from voxserve.ui import UI_PATH

__all__ = ["create_app"]

_log = logging.getLogger("voxserve")


class BodyLimitMiddleware:
    """413 for bodies over ``max_body_bytes`` before they are read; X-Request-ID on every response.

    Uploads get ``max_upload_bytes``; ``path_limits`` gives other paths their own limit (the speech
    jobs route takes texts of up to ``max_job_chars``). A body that stalls for ``body_timeout_s``, or
    that after that long arrives slower than ``body_min_bytes_per_s`` on average, is cut with 408
    ``request_timeout`` (uvicorn has no body deadline: a slow upload would hold its request forever).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_upload_bytes: int,
        max_header_bytes: int = 32768,
        max_headers: int = 100,
        path_limits: dict[str, int] | None = None,
        body_timeout_s: float = 30.0,
        body_min_bytes_per_s: int = 16384,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.path_limits = dict(path_limits or {})
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.body_timeout_s = body_timeout_s
        self.body_min_bytes_per_s = body_min_bytes_per_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # for the 500 handler (request.state)
        headers = scope["headers"]
        if (
            len(headers) > self.max_headers
            or sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes
        ):
            # The HTTP server parsed them already (it has no limit of its own): refuse before any work.
            err = InvalidRequest(
                f"request headers are over {self.max_headers} fields or {self.max_header_bytes} bytes",
                code="headers_too_large",
            )
            await self._send_error(scope, send, request_id, 431, err)
            return
        upload = scope["path"] in _UPLOAD_PATHS
        limit = self.max_upload_bytes if upload else self.path_limits.get(scope["path"], self.max_body_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, request_id, _BodyTooLarge, limit, upload)
            return
        seen = 0
        started = False
        exceeded: type[_BodyRefused] | None = None
        replaced = False
        body_done = False
        loop = asyncio.get_running_loop()
        body_started = loop.time()

        async def limited_receive() -> Message:
            nonlocal seen, exceeded, body_done
            if body_done:
                return await receive()  # after the body: waiting for a disconnect is not timed
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                exceeded = _BodyTooSlow
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    exceeded = _BodyTooLarge
                    raise _BodyTooLarge
                elapsed = loop.time() - body_started
                if (
                    not body_done
                    and elapsed > self.body_timeout_s
                    and seen < self.body_min_bytes_per_s * elapsed
                ):
                    exceeded = _BodyTooSlow
                    raise _BodyTooSlow
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal started, replaced
            if replaced or (exceeded is not None and not started):
                # The app caught the error and answered itself (FastAPI turns any failure while it
                # parses a multipart form into a 400): the answer is still the 413 (or 408), and the
                # app's own response is dropped.
                if message["type"] == "http.response.start" and not replaced:
                    started = replaced = True
                    await self._refuse(scope, send, request_id, exceeded or _BodyTooLarge, limit, upload)
                return
            if message["type"] == "http.response.start":
                started = True
                count_request(scope, message["status"])
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyRefused as exc:
            if not started:
                await self._refuse(scope, send, request_id, type(exc), limit, upload)

    async def _refuse(
        self, scope: Scope, send: Send, request_id: str, why: type[_BodyRefused], limit: int, upload: bool
    ) -> None:
        if why is _BodyTooSlow:
            err: VoxserveError = RequestTimeout(
                f"the request body stalled for {self.body_timeout_s:g} s or arrived slower than "
                f"{self.body_min_bytes_per_s} bytes/s",
            )
        else:
            code = "file_too_large" if upload else "body_too_large"
            err = TextTooLong(f"request body is over {limit} bytes", code=code)
        await self._send_error(scope, send, request_id, err.status, err)

    @staticmethod
    async def _send_error(scope: Scope, send: Send, request_id: str, status: int, err: VoxserveError) -> None:
        import json

        count_request(scope, status)
        count_http_error(scope, status, err.code)
        body = json.dumps(err.to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_UPLOAD_PATHS = frozenset(
    {"/v1/audio/transcriptions", "/v1/audio/translations", "/ui/gradio_api/upload"}  # + the UI's uploads
)


class _BodyRefused(Exception):
    """Raised from ``receive`` to stop the app reading a body it must not get."""


class _BodyTooLarge(_BodyRefused):
    pass


class _BodyTooSlow(_BodyRefused):
    pass


class _App(FastAPI):
    """FastAPI, plus one thing at lifespan start-up: the server's own per-connection limits (header
    deadline, WebSocket cap and keepalive) are set from the app's settings, so that ``uvicorn --factory``
    enforces what ``voxserve serve`` does (api/transport.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            config = server_config(receive)
            if config is not None:
                apply_server_settings(config, self.state.vox.settings)
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the voxserve ASGI app (no process or model starts until the lifespan runs)."""
    settings = settings or Settings()
    metrics = Metrics()

    def on_restart(engine: str) -> None:
        metrics.restarts.labels(engine).inc()

    def on_done(engine: str, done: object) -> None:
        audio_s = getattr(done, "audio_s", 0.0)
        metrics.audio_seconds.labels(engine).inc(audio_s)
        if getattr(done, "cancelled", False):
            metrics.cancelled.labels(engine).inc()
        elif audio_s > 0:
            metrics.rtf.labels(engine).observe(getattr(done, "compute_s", 0.0) / audio_s)

    # How long each engine took to start, and what started it (start-up, a first request, background):
    # a lazily started engine's first request waits this long.
    start_seconds = Gauge(
        "voxserve_engine_start_seconds",
        "Seconds the last start of an engine's workers took (spawn, model load, warm-up, handshake)",
        ["engine", "trigger"],
        registry=metrics.registry,
    )

    def on_engine_started(engine: str, trigger: str, seconds: float) -> None:
        start_seconds.labels(engine, trigger).set(seconds)

    registry = EngineRegistry(
        settings, on_restart=on_restart, on_done=on_done, on_engine_started=on_engine_started
    )
    probe = LoopLagProbe(metrics.loop_lag.observe)
    trimmer = HeapTrimmer(settings.memory_trim_interval_s) if settings.memory_trim_interval_s > 0 else None

    async def build_job_engine(stored: Mapping[str, Any]) -> JobEngine:
        return await speech_jobs.job_engine_builder(state)(stored)

    jobs = SpeechJobs(
        directory=settings.jobs_folder,
        builder=build_job_engine,
        max_restarts=settings.max_job_restarts,
        sample_rate=settings.output_sample_rate,
        max_jobs=settings.max_jobs,
        max_storage_bytes=settings.max_job_storage_bytes,
        max_jobs_per_key=settings.max_jobs_per_key,
        max_storage_bytes_per_key=settings.max_job_storage_bytes_per_key,
        concurrency=settings.job_concurrency,
        ttl_s=settings.job_ttl_s,
    )
    state = AppState(settings=settings, registry=registry, metrics=metrics, probe=probe, jobs=jobs)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        probe.start()
        if trimmer is not None:
            trimmer.start()
        wyoming: Any = None
        try:
            await registry.start()
            await jobs.start()
            if settings.wyoming_uri:
                from voxserve.wyoming import start_wyoming  # the wyoming package only when used

                wyoming = await start_wyoming(state)
            _log.info("voxserve %s ready on %s:%d", __version__, settings.host, settings.port)
            yield
        finally:
            if wyoming is not None:
                await wyoming.stop()
            # Jobs first: their cancelled worker calls need live pools to answer them.
            await jobs.stop()
            await registry.stop()
            await probe.stop()
            if trimmer is not None:
                await trimmer.stop()

    app = _App(
        title="voxserve",
        version=__version__,
        summary="Streaming text-to-speech and speech-to-text, offline.",
        lifespan=lifespan,
    )
    app.state.vox = state
    app.state.open_sockets = set()
    install_error_handlers(app)
    app.include_router(speech.router)
    app.include_router(speech_jobs.router)
    app.include_router(dev.router)
    app.include_router(transcriptions.router)
    app.include_router(stream_ws.router)
    app.include_router(speak_ws.router)
    app.include_router(chat_ws.router)
    app.include_router(chat_completions.router)
    app.include_router(realtime.router)
    app.include_router(system.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        path_limits={speech_jobs.JOBS_PATH: settings.max_job_body_bytes},
        body_timeout_s=settings.body_timeout_s,
        body_min_bytes_per_s=settings.body_min_bytes_per_s,
    )
    # Outside the body limit: API keys (every route, WebSocket and the UI), WebSocket Origin, CORS.
    install_security(app, settings, ui_path=UI_PATH if settings.ui_enabled else None)
    # Outermost: records each WebSocket's connection for the limits ASGI cannot reach (api/transport.py).
    app.add_middleware(TransportMiddleware)
    install_handshake_log_filter()
    if settings.ui_enabled:  # the Gradio web UI at /ui (Gradio is imported on its first visit)
        from voxserve.ui import mount_ui

        mount_ui(app)
    return app
