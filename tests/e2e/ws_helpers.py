"""Small helpers for WebSocket e2e tests (websockets' sync client, bounded waits)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from tests.audio_helpers import decode
from tests.timing import deadline_in, remaining
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
    """Read JSON events until the server closes; return them and the close code (None if it did not
    close within ``timeout_s``, nominal seconds, scaled)."""
    events: list[dict[str, Any]] = []
    deadline = deadline_in(timeout_s)
    while True:
        try:
            message = ws.recv(timeout=remaining(deadline))
        except (ConnectionClosed, TimeoutError):
            break
        events.append(json.loads(message))
    return events, ws.close_code


def collect_until(ws: ClientConnection, predicate: Any, timeout_s: float = 30) -> list[dict[str, Any]]:
    """Read JSON events until one satisfies ``predicate`` (within ``timeout_s``, nominal, scaled)."""
    events: list[dict[str, Any]] = []
    deadline = deadline_in(timeout_s)
    while True:
        try:
            event = json.loads(ws.recv(timeout=remaining(deadline)))
        except TimeoutError:
            raise AssertionError(
                f"condition not met in {timeout_s} s (scaled); got {[e.get('type') for e in events]}"
            ) from None
        events.append(event)
        if predicate(event):
            return events
