"""Memory of a process tree from /proc, for the benchmarks (no psutil in the venv).

RSS counts shared pages in every process that maps them; PSS (``smaps_rollup``) splits them between
the processes, so PSS sums honestly over a tree of workers started from one parent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

__all__ = ["memory", "pss_mb", "rss_mb", "tree"]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree(pid: int) -> Iterator[int]:
    """``pid`` and every descendant."""
    kids = _children()
    todo = [pid]
    while todo:
        p = todo.pop()
        yield p
        todo.extend(kids.get(p, []))


def _field_kb(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Resident set size of one process, MB (0 once it has gone)."""
    return _field_kb(Path(f"/proc/{pid}/status"), "VmRSS:") / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size of one process, MB (0 once it has gone)."""
    return _field_kb(Path(f"/proc/{pid}/smaps_rollup"), "Pss:") / 1024


def memory(pid: int) -> dict[str, float]:
    """RSS and PSS (MB) of ``pid`` and its descendants, and how many processes."""
    pids = list(tree(pid))
    return {
        "rss_mb": sum(rss_mb(p) for p in pids),
        "pss_mb": sum(pss_mb(p) for p in pids),
        "processes": float(len(pids)),
    }
