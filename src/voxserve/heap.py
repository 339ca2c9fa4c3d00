"""Giving freed C-heap memory back to the operating system: :func:`trim_heap`.

Its own module, with nothing but the standard library, so that worker processes can call it without
importing the server's metrics.
"""

from __future__ import annotations

import ctypes

__all__ = ["trim_heap"]


def trim_heap() -> bool:
    """Give the C heap's free pages back to the operating system (glibc's ``malloc_trim``).

    Blocking (a few milliseconds): the server calls it from a thread. False where there is no glibc.
    Without it the memory a burst of large requests used (uploads, long texts: freed, but kept by the
    allocator for reuse) stays in the process's RSS for good.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True
