"""Memory benchmark: what ``voxserve serve`` holds, per process, idle and after use.

Starts ``voxserve serve`` as a user would (``python -m voxserve.cli serve`` on 127.0.0.1 and a free
port, the default settings plus any ``--env`` given), waits for ``/ready`` and for the process tree to
settle, then reads the RSS (``/proc/<pid>/status``) and the PSS (``/proc/<pid>/smaps_rollup``: shared
pages split fairly between the processes that map them) of every process of the server's tree:

1. idle after start-up;
2. after one speech request per engine that the default voice and the OpenAI voice names use, and one
   transcription (of that speech);
3. after a burst: ``--burst`` speech requests and half as many transcriptions at once.

Each process is named by its role: the server, a worker by the engine pool that ``/ready`` lists its
pid under, or its command line (multiprocessing's resource tracker). It prints one table (MB) and the
totals, and stops everything by PID.

Usage: python benchmarks/memory_bench.py [--settle-s 10] [--burst 4] [--env VOXSERVE_X=y ...] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procmem import pss_mb, rss_mb, tree  # noqa: E402
from tests.e2e.conftest import start_server, stop_server  # noqa: E402

SHORT = "The quick brown fox jumps over the lazy dog."
LONG = (
    "Memory is a cost as well. Many of the people who run this server do so on small boards, "
    "where every megabyte held by an idle process is one that the rest of the house cannot use. "
    "So the server should hold little while it waits, and give it back when it can."
)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def roles(url: str, server_pid: int) -> dict[int, str]:
    """pid -> role, from ``/ready`` (the worker pids of each engine pool)."""
    out = {server_pid: "server"}
    body = httpx.get(f"{url}/ready", timeout=30).json()
    for engine, stats in body.get("engines", {}).items():
        for i, pid in enumerate(stats.get("pids") or []):
            if pid is not None:
                out[int(pid)] = f"{engine} worker {i + 1}"
    return out


def snapshot(url: str, server_pid: int) -> dict[str, dict[str, float]]:
    """role -> {rss_mb, pss_mb, pid} for every process of the server's tree."""
    named = roles(url, server_pid)
    out: dict[str, dict[str, float]] = {}
    for pid in tree(server_pid):
        role = named.get(pid)
        if role is None:
            cmd = cmdline(pid)
            role = "resource tracker" if "resource_tracker" in cmd else f"other: {cmd[:60]}"
        key = role if role not in out else f"{role} (pid {pid})"
        out[key] = {
            "pid": float(pid),
            "rss_mb": rss_mb(pid),
            "pss_mb": pss_mb(pid),
        }
    return out


def settle(url: str, server_pid: int, settle_s: float, timeout_s: float = 300) -> float:
    """Wait until the tree's process count and RSS have been steady for ``settle_s``."""
    t0 = time.monotonic()
    last: tuple[int, int] | None = None
    steady_since = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        snap = snapshot(url, server_pid)
        now = (len(snap), int(sum(p["rss_mb"] for p in snap.values()) / 8))  # 8 MB buckets
        if now != last:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= settle_s:
            break
        time.sleep(0.5)
    return time.monotonic() - t0


def default_engines() -> list[str]:
    """The engines behind the default voice and the OpenAI voice names (with this environment)."""
    from voxserve.config import Settings

    settings = Settings()
    targets = [settings.default_voice, *settings.voice_aliases.values()]
    return list(dict.fromkeys(t.partition("/")[0] for t in targets))


def default_voice(engine: str) -> str:
    from voxserve.config import Settings

    settings = Settings()
    for target in [settings.default_voice, *settings.voice_aliases.values()]:
        if target.startswith(f"{engine}/"):
            return target
    raise KeyError(engine)


async def speech(client: httpx.AsyncClient, text: str, voice: str, fmt: str = "wav") -> bytes:
    r = await client.post(
        "/v1/audio/speech", json={"model": "tts-1", "input": text, "voice": voice, "response_format": fmt}
    )
    r.raise_for_status()
    return r.content


async def transcribe(client: httpx.AsyncClient, wav: bytes) -> str:
    r = await client.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1", "response_format": "json"},
        files={"file": ("speech.wav", wav, "audio/wav")},
    )
    r.raise_for_status()
    text: str = r.json()["text"]
    return text


async def use_once(url: str, engines: list[str]) -> dict[str, float]:
    """One speech request per engine, one transcription; seconds each took."""
    took: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        wav = b""
        for engine in engines:
            t0 = time.perf_counter()
            data = await speech(client, SHORT, default_voice(engine))
            took[f"speech {engine}"] = time.perf_counter() - t0
            wav = wav or data
        t0 = time.perf_counter()
        text = await transcribe(client, wav)
        took["transcription"] = time.perf_counter() - t0
        print(f"  transcribed: {text!r}", file=sys.stderr)
    return took


async def burst(url: str, engines: list[str], n: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        wav = await speech(client, SHORT, default_voice(engines[0]))
        t0 = time.perf_counter()
        jobs: list[Coroutine[Any, Any, object]] = [
            speech(client, LONG, default_voice(engines[i % len(engines)]), "mp3") for i in range(n)
        ]
        jobs += [transcribe(client, wav) for _ in range(max(1, n // 2))]
        await asyncio.gather(*jobs)
        return time.perf_counter() - t0


PHASES = ("idle", "after use", "after burst")


def table(snaps: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    rows: list[str] = list(dict.fromkeys(r for phase in PHASES for r in snaps.get(phase, {})))
    rows.sort(key=lambda r: (r != "server", r))
    head = "| process | " + " | ".join(f"{p} RSS / PSS" for p in PHASES) + " |"
    lines = [head, "|---|" + "---|" * len(PHASES)]
    for row in rows:
        cells = []
        for phase in PHASES:
            p = snaps.get(phase, {}).get(row)
            cells.append(f"{p['rss_mb']:.0f} / {p['pss_mb']:.0f}" if p else "–")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    totals = []
    for phase in PHASES:
        snap = snaps.get(phase, {})
        rss = sum(p["rss_mb"] for p in snap.values())
        pss = sum(p["pss_mb"] for p in snap.values())
        totals.append(f"**{rss:.0f} / {pss:.0f}** ({len(snap)} proc.)")
    lines.append("| **total** | " + " | ".join(totals) + " |")
    return lines


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--settle-s", type=float, default=10.0, help="steady this long before measuring")
    parser.add_argument("--burst", type=int, default=4, help="speech requests at once in the burst")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    os.environ.update(env)  # default_engines() reads the same settings as the server
    engines = default_engines()
    snaps: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="voxserve-memory-") as tmp:
        t0 = time.perf_counter()
        server = start_server(Path(tmp), env=env)
        timings["ready_s"] = time.perf_counter() - t0
        pid = server.process.pid
        try:
            timings["settle_s"] = settle(server.url, pid, args.settle_s)
            snaps["idle"] = snapshot(server.url, pid)
            timings |= asyncio.run(use_once(server.url, engines))
            settle(server.url, pid, min(args.settle_s, 3.0))
            snaps["after use"] = snapshot(server.url, pid)
            timings["burst_s"] = asyncio.run(burst(server.url, engines, args.burst))
            settle(server.url, pid, min(args.settle_s, 3.0))
            snaps["after burst"] = snapshot(server.url, pid)
        finally:
            code = stop_server(server)
            log = server.log_text()
        leftovers = [p for p in tree(pid) if p != pid]
    print(f"voxserve serve, default engines for speech: {', '.join(engines)}; env {env or 'defaults'}")
    print(
        f"/ready after {timings['ready_s']:.1f} s; "
        + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items() if k != "ready_s")
    )
    print("\n".join(table(snaps)))
    print("RSS counts shared pages in every process that maps them; PSS splits them (sums fairly).")
    print(f"server exit code {code}; processes left after stop: {leftovers or 'none'}")
    started = [line for line in log.splitlines() if "worker(s) ready" in line or "started on first" in line]
    if started:
        print("\n".join(["start-up lines from the server log:", *started]))
    if args.json:
        args.json.write_text(json.dumps({"env": env, "timings": timings, "snapshots": snaps}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
