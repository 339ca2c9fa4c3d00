"""Checks every TTS engine's tests make the same way."""

from __future__ import annotations

from typing import Any

from voxserve.engines.base import WarmUp


def assert_warm_up_leaves_engine_usable(engine: Any) -> None:
    """``warm_up()`` (what the worker runs before its ready handshake) runs, and the engine speaks after."""
    assert isinstance(engine, WarmUp)
    engine.warm_up()
    voice = engine.voices()[0].name
    pieces = list(engine.synthesize("Still speaking.", voice, 1.0))
    assert sum(len(p.audio) for p in pieces) > 0
