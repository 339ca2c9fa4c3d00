"""Pieces shared by the streaming STT adapters: admission, PCM conversion, session settings, VAD."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import WebSocket

from voxserve.audio.decode import decode_pcm
from voxserve.audio.resample import Resampler
from voxserve.config import Settings
from voxserve.engines.base import STT_SAMPLE_RATE
from voxserve.errors import InvalidValue
from voxserve.stt.session import SessionConfig

__all__ = [
    "StreamAdmission",
    "admitted",
    "close_websockets",
    "parse_audio_config",
    "pcm_converter",
    "session_config",
    "vad_for",
]


class StreamAdmission:
    """A counter of live streaming sessions with a hard cap (the caller closes with 1013 when full)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


@contextlib.asynccontextmanager
async def admitted(ws: WebSocket, admission: StreamAdmission | None = None) -> AsyncIterator[bool]:
    """Accept the WebSocket; yield False (after closing it with 1013) when ``admission`` (by default
    the streaming STT sessions' cap) is full."""
    if admission is None:
        admission = ws.app.state.stt_admission
    await ws.accept()
    if not admission.try_enter():
        # Accept first so the client sees the close code, not a bare handshake refusal.
        await ws.close(code=1013, reason="at capacity; try again later")
        yield False
        return
    # Tracked so that shutdown can close every stream with 1001 (going away): see close_websockets.
    sockets: set[WebSocket] = ws.app.state.open_sockets
    sockets.add(ws)
    try:
        yield True
    finally:
        sockets.discard(ws)
        admission.leave()


async def close_websockets(app: Any, code: int = 1001, reason: str = "server shutting down") -> int:
    """Close every admitted WebSocket of ``app`` (at shutdown); return how many were open."""
    sockets: set[WebSocket] = app.state.open_sockets
    open_now = list(sockets)

    async def close(ws: WebSocket) -> None:
        with contextlib.suppress(Exception):  # a socket may be closing on its own at the same time
            async with asyncio.timeout(2.0):
                await ws.close(code=code, reason=reason)

    await asyncio.gather(*(close(ws) for ws in open_now))
    return len(open_now)


def parse_audio_config(cfg: dict[str, Any], state: Any) -> dict[str, Any]:
    """The audio fields of a streaming config message (``sample_rate_hz``, ``encoding``,
    ``language``, ``interim_results``, ``model``); raises :class:`InvalidValue` ``invalid_config``."""

    def bad(message: str) -> InvalidValue:
        return InvalidValue(message, code="invalid_config")

    rate = cfg.get("sample_rate_hz", 16000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise bad("sample_rate_hz must be an integer from 8000 to 48000")
    if cfg.get("encoding", "linear16") not in ("linear16", "float32"):
        raise bad("encoding must be linear16 or float32")
    language = cfg.get("language", "en")
    if not isinstance(language, str) or len(language) > 16:
        raise bad("language must be a language code such as en")
    model = cfg.get("model", state.settings.stt_default_model)
    if not isinstance(model, str) or model not in state.registry.stt_pools:
        raise bad(f"unknown model {model!r}")
    return {
        "rate": rate,
        "encoding": cfg.get("encoding", "linear16"),
        "language": language.split("-")[0].lower(),
        "interim": bool(cfg.get("interim_results", True)),
        "model": model,
    }


def pcm_converter(encoding: str, sample_rate: int) -> Callable[[bytes], npt.NDArray[np.float32]]:
    """Bytes of ``encoding`` at ``sample_rate`` → 16 kHz float32, with one stateful resampler per stream."""
    resampler = Resampler(sample_rate, STT_SAMPLE_RATE)

    def convert(data: bytes) -> npt.NDArray[np.float32]:
        audio = decode_pcm(data, encoding=encoding, sample_rate=sample_rate, target_rate=sample_rate)
        out: npt.NDArray[np.float32] = resampler.process(audio)
        return out

    return convert


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
    )


async def vad_for(app: Any) -> Any:
    """A fresh per-stream VAD on the app's shared Silero model (loaded once, off the loop)."""
    from voxserve.engines.vad import SileroVadModel, VadStream

    lock: asyncio.Lock = app.state.vad_lock
    async with lock:
        if app.state.vad_model is None:
            app.state.vad_model = await asyncio.to_thread(SileroVadModel, 1)
    return _FrameVad(VadStream(app.state.vad_model))


class _FrameVad:
    """Adapts a Silero :class:`VadStream` to the session's ``VadProtocol`` (512-sample frames)."""

    frame_samples = 512

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def process(self, frame: npt.NDArray[np.float32]) -> float:
        p: float = self._stream.process(frame)
        return p
