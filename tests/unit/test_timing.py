"""The test suite's clock (tests/timing.py): one scale factor, bounded waits that say what they waited for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests import timing
from tests.timing import WaitTimeout, cpu_seconds, holds_for, holds_for_async, scaled, until, until_async

ROOT = Path(__file__).resolve().parents[2]


def test_scale_comes_from_one_environment_variable() -> None:
    code = "from tests.timing import TIME_SCALE, scaled; print(TIME_SCALE, scaled(10))"
    env = {**os.environ, timing.SCALE_ENV: "2.5"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["2.5", "25.0"], out.stderr
    env[timing.SCALE_ENV] = "fast"
    bad = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "VOXSERVE_TEST_TIME_SCALE='fast'" in bad.stderr


def test_until_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "", "ready"])
    assert until(lambda: next(calls), 5, 0) == "ready"


def test_until_fails_naming_the_condition_and_its_last_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "TIME_SCALE", 2.0)
    with pytest.raises(WaitTimeout) as info:
        until(lambda: [], 0.01, 0.001, message="the queue fills")
    text = str(info.value)
    assert "the queue fills" in text and "last value: []" in text
    assert "0.02 s (0.01 s x VOXSERVE_TEST_TIME_SCALE=2)" in text
    assert isinstance(info.value, AssertionError)  # a test failure, not an error


def test_until_treats_ignored_errors_as_not_yet_and_others_as_failures() -> None:
    attempts = iter([ConnectionError("not listening"), ConnectionError("not yet"), True])

    def probe() -> bool:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert until(probe, 5, 0, ignore=(ConnectionError,)) is True
    with pytest.raises(WaitTimeout, match="last error: ConnectionError"):
        until(lambda: (_ for _ in ()).throw(ConnectionError("down")), 0.01, 0, ignore=(ConnectionError,))
    with pytest.raises(ValueError, match="bug"):
        until(lambda: (_ for _ in ()).throw(ValueError("bug")), 5, 0, ignore=(ConnectionError,))


async def test_until_async_takes_plain_and_async_predicates() -> None:
    values = iter([False, False, 7])

    async def later() -> int:
        return next(values)

    assert await until_async(later, 5, 0) == 7
    assert await until_async(lambda: "now", 5, 0) == "now"
    with pytest.raises(WaitTimeout, match="never"):
        await until_async(lambda: False, 0.01, 0.001, message="never")


def test_holds_for_checks_a_whole_window() -> None:
    holds_for(lambda: True, 0.02, 0.005)
    ticks = iter(range(100))
    with pytest.raises(AssertionError, match="stopped holding.*count stays low"):
        holds_for(lambda: next(ticks) < 2, 5, 0, message="count stays low")


async def test_holds_for_async_checks_a_whole_window() -> None:
    await holds_for_async(lambda: True, 0.02, 0.005)
    with pytest.raises(AssertionError, match="stopped holding"):
        await holds_for_async(lambda: False, 5)


def test_cpu_seconds_counts_work_not_waiting() -> None:
    import time

    assert cpu_seconds(lambda: time.sleep(0.05)) < 0.04  # sleeping costs no CPU
    assert cpu_seconds(lambda: sum(range(200_000)), repeats=2) > 0


def test_scaled_multiplies_by_the_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    assert scaled(3) == 3 * timing.TIME_SCALE
    monkeypatch.setattr(timing, "TIME_SCALE", 4.0)
    assert scaled(3) == 12
