"""Small helpers for WebSocket e2e tests (websockets' sync client, bounded waits)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from tests.audio_helpers import decode
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection


def pcm16(path: object, rate: int = 16000) -> bytes:
    from pathlib import Path

    import soxr

    samples, sr = decode(Path(str(path)).read_bytes(), "wav")
    if sr != rate:
        samples = soxr.resample(samples, sr, rate)
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def drain(ws: ClientConnection, timeout_s: float = 60) -> tuple[list[dict[str, Any]], int | None]:
    """Read JSON events until the server closes; return them and the close code."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed:
            break
        except TimeoutError:
            break
        events.append(json.loads(message))
    return events, ws.close_code


def collect_until(ws: ClientConnection, predicate: Any, timeout_s: float = 30) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        event = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        events.append(event)
        if predicate(event):
            return events
    raise AssertionError(f"condition not met; got {[e.get('type') for e in events]}")
