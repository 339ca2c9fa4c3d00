"""The Hypothesis settings shared by the fuzz tests: few examples, fixed seed, no deadline.

CI runs a short, reproducible pass (``derandomize``: the same examples every run, no example database);
raise ``VOXSERVE_FUZZ_EXAMPLES`` for a longer local or nightly hunt.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["fuzz_settings"]

_SCALE = int(os.environ.get("VOXSERVE_FUZZ_EXAMPLES", "0"))


def fuzz_settings(max_examples: int) -> settings:
    """Settings for one fuzz test: ``max_examples`` in CI, or ``VOXSERVE_FUZZ_EXAMPLES`` when set."""
    return settings(
        max_examples=_SCALE or max_examples,
        deadline=None,
        derandomize=not _SCALE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
