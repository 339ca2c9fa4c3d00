"""Checks every TTS engine's tests make the same way."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.timing import scaled
from voxserve.engines.base import Interruptible, WarmUp


def assert_warm_up_leaves_engine_usable(engine: Any) -> None:
    """``warm_up()`` (what the worker runs before its ready handshake) runs, and the engine speaks after."""
    assert isinstance(engine, WarmUp)
    engine.warm_up()
    voice = engine.voices()[0].name
    pieces = list(engine.synthesize("Still speaking.", voice, 1.0))
    assert sum(len(p.audio) for p in pieces) > 0


LONG_SENTENCE = (
    "This sentence is long enough that one inference of it takes most of a second on one core, "
    "which is what a worker's cancel has to cut short when the client hangs up."
)


def assert_interrupt_stops_synthesis(engine: Any) -> None:
    """``interrupt()`` (the worker's interrupt thread) makes the run in progress, or the next, fail;
    after ``rearm()`` the engine speaks again."""
    assert isinstance(engine, Interruptible)
    voice = engine.voices()[0].name
    engine.interrupt()
    with pytest.raises(Exception, match="terminate|failed to synthesize"):
        list(engine.synthesize(LONG_SENTENCE, voice, 1.0))
    engine.rearm()
    assert sum(len(p.audio) for p in engine.synthesize("Speaking again.", voice, 1.0)) > 0

    # From another thread while the synthesis runs (or is about to: then its run fails all the same).
    errors: list[BaseException] = []
    started = threading.Event()

    def speak() -> None:
        started.set()
        try:
            list(engine.synthesize(LONG_SENTENCE, voice, 1.0))
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=speak)
    thread.start()
    started.wait()
    engine.interrupt()
    thread.join(scaled(30))
    engine.rearm()
    assert not thread.is_alive() and len(errors) == 1
    assert sum(len(p.audio) for p in engine.synthesize("Speaking again.", voice, 1.0)) > 0
