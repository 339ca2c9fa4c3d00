"""The one clock of the test suite: time bounds scaled for a busy machine, and bounded polling.

Every time bound a test waits on (how long to wait for a server, an event, a state) is written in
nominal seconds, as measured on an idle 2-core machine with room to spare, and goes through
:func:`scaled`. A busy CI runner sets ``VOXSERVE_TEST_TIME_SCALE`` (for example ``3``) and every bound
in the suite grows by that factor; nothing else reads the environment for timing.

Rules (docs: tests never assert how fast something is; benchmarks/ print the numbers):

- wait for a condition with :func:`until` (or :func:`until_async`), never with a hand-written loop;
- a bound is only ever a "give up" bound: a test that passes on a fast machine passes on a slow one;
- a negative check ("nothing happened") needs a positive sync point after which the thing would have
  happened; where none exists, :func:`holds_for` observes for an explicit, scaled window;
- a test of how work grows with its input (linear, not quadratic; refused before decoding) measures
  :func:`cpu_seconds`, the process's own CPU time, which other load on the machine does not inflate.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

SCALE_ENV = "VOXSERVE_TEST_TIME_SCALE"


def _read_scale() -> float:
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"{SCALE_ENV}={raw!r}: expected a number such as 1 or 2.5") from None
    if not value > 0:
        raise RuntimeError(f"{SCALE_ENV}={raw!r}: expected a number > 0")
    return value


TIME_SCALE: float = _read_scale()
"""The factor every time bound of the suite is multiplied by (``VOXSERVE_TEST_TIME_SCALE``, default 1)."""


def scaled(seconds: float) -> float:
    """``seconds`` (a nominal bound) times the suite's time scale."""
    return seconds * TIME_SCALE


class WaitTimeout(AssertionError):
    """:func:`until` gave up: the condition did not hold within its (scaled) bound."""


def _describe(predicate: Callable[..., object], message: str | Callable[[], str] | None) -> str:
    if message is None:
        return getattr(predicate, "__qualname__", None) or repr(predicate)
    return message() if callable(message) else message


def _timeout_error(
    predicate: Callable[..., object],
    message: str | Callable[[], str] | None,
    timeout: float,
    last: object,
    error: BaseException | None,
) -> WaitTimeout:
    what = _describe(predicate, message)
    bound = f"{scaled(timeout):g} s"
    if TIME_SCALE != 1:
        bound += f" ({timeout:g} s x {SCALE_ENV}={TIME_SCALE:g})"
    detail = f"last error: {error!r}" if error is not None else f"last value: {last!r}"
    return WaitTimeout(f"not true within {bound}: {what}; {detail}")


def until(
    predicate: Callable[[], T],
    timeout: float = 30,
    interval: float = 0.05,
    *,
    message: str | Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    ``timeout`` is nominal seconds (scaled by :func:`scaled`); past it, fail with :class:`WaitTimeout`
    naming ``message`` (or the predicate) and its last value. Exceptions of the ``ignore`` types count
    as "not yet" (a server not listening yet); any other exception fails at once.
    """
    deadline = time.monotonic() + scaled(timeout)
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            error = exc
        else:
            if value:
                return value
            last, error = value, None
        if time.monotonic() >= deadline:
            raise _timeout_error(predicate, message, timeout, last, error)
        time.sleep(interval)


async def until_async(
    predicate: Callable[[], T | Awaitable[T]],
    # Same signature as until(): a scaled bound whose failure names the condition, which an
    # asyncio.timeout() around the call would not.
    timeout: float = 30,  # noqa: ASYNC109
    interval: float = 0.02,
    *,
    message: str | Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """:func:`until` for async tests: ``predicate`` may be a plain or an async callable; the wait
    between calls yields to the event loop."""
    deadline = time.monotonic() + scaled(timeout)
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            error = exc
        else:
            if value:
                return value  # type: ignore[return-value]
            last, error = value, None
        if time.monotonic() >= deadline:
            raise _timeout_error(predicate, message, timeout, last, error)
        await asyncio.sleep(interval)


def cpu_seconds(func: Callable[[], object], repeats: int = 1) -> float:
    """The least CPU time (this process, all its threads) that ``func()`` took over ``repeats`` calls.

    For complexity checks: unlike wall-clock time, it does not grow when other processes share the
    cores. Bounds on it are still written in nominal seconds and scaled (a slower CPU)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        func()
        best = min(best, time.process_time() - start)
    return best


def grows_linearly(
    small: Callable[[], object], big: Callable[[], object], factor: int, repeats: int = 3
) -> bool:
    """Whether ``big`` (``factor`` times ``small``'s input) costs at most ``2.5 * factor`` times
    ``small``'s CPU time, each the least of ``repeats`` runs.

    For "linear, not quadratic" checks: a quadratic pass costs ``factor**2`` times as much, so with
    ``factor`` >= 8 the margin between the two (20x against 64x) survives a busy machine. A 4x input
    with an 8x bound did not: a clean-clone CI run measured 9x for a linear pass."""
    assert factor >= 8, "a smaller factor leaves linear and quadratic too close to tell apart"
    small_s = cpu_seconds(small, repeats)
    big_s = cpu_seconds(big, repeats)
    return big_s < 2.5 * factor * small_s + 0.05


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value), at least 10 ms: for a blocking
    call with a timeout inside a bounded loop."""
    return max(0.01, deadline - time.monotonic())


def deadline_in(timeout: float) -> float:
    """The ``time.monotonic()`` value ``timeout`` nominal seconds (scaled) from now."""
    return time.monotonic() + scaled(timeout)


def holds_for(
    predicate: Callable[[], object],
    window: float,
    interval: float = 0.05,
    *,
    message: str | Callable[[], str] | None = None,
) -> None:
    """Check that ``predicate`` stays true for a whole observation window (nominal seconds, scaled).

    Only for a negative check that has no positive sync point (no request whose answer proves the
    thing would have happened by now): the caller says in a comment why the window is long enough.
    """
    end = time.monotonic() + scaled(window)
    while True:
        value = predicate()
        if not value:
            raise AssertionError(
                f"stopped holding within the {scaled(window):g} s window: "
                f"{_describe(predicate, message)}; value: {value!r}"
            )
        if time.monotonic() >= end:
            return
        time.sleep(interval)


async def holds_for_async(
    predicate: Callable[[], object],
    window: float,
    interval: float = 0.01,
    *,
    message: str | Callable[[], str] | None = None,
) -> None:
    """:func:`holds_for` for async tests: the checks between yield to the event loop, so the code
    under test runs during the window."""
    end = time.monotonic() + scaled(window)
    while True:
        value = predicate()
        if not value:
            raise AssertionError(
                f"stopped holding within the {scaled(window):g} s window: "
                f"{_describe(predicate, message)}; value: {value!r}"
            )
        if time.monotonic() >= end:
            return
        await asyncio.sleep(interval)
