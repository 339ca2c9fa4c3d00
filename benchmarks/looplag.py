"""The server's event-loop lag over a stretch of a benchmark, from its ``/metrics`` histogram
(``voxserve_event_loop_lag_seconds``): read the buckets before and after, and take the p99 of what
happened in between (a bucket bound: the histogram does not know finer)."""

from __future__ import annotations

import re

import httpx

__all__ = ["lag_buckets", "lag_p99"]


def lag_buckets(url: str) -> dict[float, float]:
    """The cumulative bucket counts of the loop-lag histogram now, by upper bound in seconds."""
    text = httpx.get(f"{url}/metrics").text
    return {
        float("inf") if le == "+Inf" else float(le): float(v)
        for le, v in re.findall(r'voxserve_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    }


def lag_p99(before: dict[float, float], after: dict[float, float]) -> float:
    """The p99 loop lag (seconds, a bucket bound) of the samples taken between two readings."""
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    return next(le for le in sorted(delta) if delta[le] >= 0.99 * total)
