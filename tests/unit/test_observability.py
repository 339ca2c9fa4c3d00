"""The server's own background tasks: the loop-lag probe and the heap trimmer."""

from __future__ import annotations

import asyncio
import ctypes
from pathlib import Path

import pytest
from tests.timing import until_async

from voxserve import observability
from voxserve.observability import HeapTrimmer, LoopLagProbe, trim_heap


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_trim_heap_gives_freed_memory_back() -> None:
    # 128 MB in 64 kB blocks (below malloc's mmap threshold: on the heap); every other one freed leaves
    # 64 MB of holes that glibc keeps (nothing at the top of the heap to give back) until trimmed.
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 1024 - 64
    blocks = [libc.malloc(size) for _ in range(2048)]
    try:
        for block in blocks:
            ctypes.memset(block, 1, size)
        full = rss_kb()
        for block in blocks[::2]:
            libc.free(block)
        # (Compared with the RSS before the frees: an app's own trimmer in another test's thread may
        # trim first.)
        assert trim_heap() is True
        assert rss_kb() < full - 32 * 1024
    finally:
        for block in blocks[1::2]:
            libc.free(block)


def test_no_glibc_means_no_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> object:
        raise OSError(name)

    monkeypatch.setattr(observability.ctypes, "CDLL", missing)
    assert trim_heap() is False


async def test_the_trimmer_runs_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(observability, "trim_heap", lambda: calls.append(1) or True)
    trimmer = HeapTrimmer(0.01)
    trimmer.start()
    await until_async(lambda: trimmer.trims >= 3)
    await trimmer.stop()
    seen = len(calls)
    await asyncio.sleep(0.05)  # an observation window: a stopped trimmer trims no more
    assert len(calls) == seen


async def test_the_probe_records_the_loop_lag() -> None:
    seen: list[float] = []
    probe = LoopLagProbe(seen.append, interval_s=0.001)
    probe.start()
    await until_async(lambda: len(seen) >= 5)
    await probe.stop()
    assert all(lag >= 0 for lag in seen) and probe.percentile(0.99) >= 0
