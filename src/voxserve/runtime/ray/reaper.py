"""``python -m voxserve.runtime.ray.reaper PID``: stop a local Ray instance's processes once PID is gone.

A front end that starts a local Ray instance (``--backend ray`` without ``--ray-address``) starts this
watcher too. Ray's node agents (dashboard agent, runtime-env agent) are children of its raylet and
outlive it, and a driver process that Ray itself ends (it exits when it is used after shutdown), or
that is killed, never runs its cleanup. The watcher remembers every process below PID, each by its PID
and start time, while PID lives; when PID is gone it stops the ones still running (SIGTERM, then
SIGKILL) and exits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from voxserve.runtime.ray.cluster import _start_time, _zombie, descendants, stop_processes

__all__ = ["watch"]


def watch(
    pid: int,
    *,
    interval_s: float = 0.5,
    grace_s: float = 2.0,
    on_scan: Callable[[int], None] | None = None,
) -> None:
    """Remember PID's process tree until PID ends, then stop what is left of it. ``on_scan(n)`` is
    called after each look at the tree with the number of processes remembered (for tests)."""
    started = _start_time(pid)
    seen: dict[int, str] = {}
    me = os.getpid()
    while started is not None and _start_time(pid) == started and not _zombie(pid):
        for child, child_started in descendants(pid):
            if child != me:
                seen[child] = child_started
        if on_scan is not None:
            on_scan(len(seen))
        time.sleep(interval_s)
    stop_processes(list(seen.items()), grace_s=grace_s)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
