"""Speech job benchmark: what a crash costs a job, and job throughput with and without live traffic.

Starts ``voxserve serve`` (Piper, the default 2 workers) on a free loopback port with its own
``jobs_dir`` and measures, on one text of ``--chars`` characters (sections of ``job_batch_chars``):

1. **idle**: one job alone: wall time, audio seconds per wall second (x real time), characters/s.
2. **live**: the same job while one client sends live ``POST /v1/audio/speech`` requests back to back
   (a sentence each, streamed): the job's wall time against idle, and the live requests' time to
   first audio against live requests on an idle server (measured first).
3. **crash**: the job again; after ``--crash-after`` sections plus part of the next, the server is
   killed with SIGKILL (its workers too) and started again on the same folder. Reported: the
   synthesis thrown away (from the last durable section to the kill: at most one section), the
   restart time (start to ``/ready``), the time from ready to the job running again, and the job's
   total work (wall time without the restart) against idle.

No peer keeps jobs across a crash (Kokoro-FastAPI, speaches, wyoming-piper have no job API), so the
comparison is with voxserve's own uninterrupted job in the same run.

Usage: python benchmarks/jobs_bench.py [--chars 8000] [--crash-after 3] [--live-requests 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import Server, kill_server, start_server, stop_server  # noqa: E402

JOBS = "/v1/audio/speech/jobs"
ENV = {
    "VOXSERVE_ENGINES": '["piper"]',
    "VOXSERVE_STT_MODELS": '["tiny.en"]',
    "VOXSERVE_STT_WORKERS": "1",
    "VOXSERVE_UI_ENABLED": "false",
}
PARAGRAPH = (
    "Chapter {n}. The river ran slowly past the old mill, and the miller's daughter watched the boats "
    "go by. In the evening the lamps were lit along the quay, and the sailors sang songs of distant "
    "harbours while the town went quietly to sleep. "
)
LIVE = "The quick brown fox jumps over the lazy dog."


def book(chars: int) -> str:
    parts: list[str] = []
    n = 0
    while sum(map(len, parts)) < chars:
        n += 1
        parts.append(PARAGRAPH.format(n=n) * 2)
    return "\n\n".join(parts)[:chars].rsplit(" ", 1)[0] + "."


def submit(server: Server, text: str) -> str:
    r = httpx.post(
        f"{server.url}{JOBS}",
        json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "mp3"},
        timeout=60,
    )
    r.raise_for_status()
    job_id: str = r.json()["id"]
    return job_id


def job(server: Server, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}{JOBS}/{job_id}", timeout=30)
    r.raise_for_status()
    out: dict[str, Any] = r.json()
    return out


def wait_done(server: Server, job_id: str, timeout_s: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = job(server, job_id)
        if now["status"] not in ("queued", "running"):
            if now["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} ended {now['status']}: {now['error']}")
            return now
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not end within {timeout_s} s")


def live_first_audio(url: str, stop: threading.Event, out: list[float], limit: int) -> None:
    """Live speech requests back to back until ``stop`` (or ``limit`` requests): time to first audio."""
    with httpx.Client(timeout=60) as client:
        while not stop.is_set() and len(out) < limit:
            start = time.perf_counter()
            with client.stream(
                "POST",
                f"{url}/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": LIVE, "response_format": "pcm"},
            ) as r:
                r.raise_for_status()
                first = None
                for chunk in r.iter_bytes():
                    if chunk and first is None:
                        first = time.perf_counter() - start
                out.append(first if first is not None else float("nan"))


def timed_job(server: Server, text: str) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    done = wait_done(server, submit(server, text))
    return time.perf_counter() - start, done


def serve(tmp: Path, jobs_dir: Path, section_chars: int) -> Server:
    return start_server(
        tmp, env={**ENV, "VOXSERVE_JOBS_DIR": str(jobs_dir), "VOXSERVE_JOB_BATCH_CHARS": str(section_chars)}
    )


def crash_run(tmp: Path, jobs_dir: Path, text: str, crash_after: int, section_chars: int) -> dict[str, float]:
    server = serve(tmp, jobs_dir, section_chars)
    started = time.perf_counter()
    job_id = submit(server, text)
    changes: list[tuple[float, int]] = [(started, 0)]
    try:
        while True:
            now = job(server, job_id)
            if now["chars_done"] != changes[-1][1]:
                changes.append((time.perf_counter(), now["chars_done"]))
            if now["chars_done"] >= crash_after * section_chars * 0.9:
                break
            if now["status"] not in ("queued", "running"):
                raise RuntimeError("the job ended before the crash; use a longer --chars")
            time.sleep(0.02)
        sections = [b[0] - a[0] for a, b in zip(changes[1:], changes[2:], strict=False)]
        section_s = statistics.median(sections) if sections else changes[-1][0] - started
        time.sleep(section_s * 0.6)  # most of the way through the next section
        killed = time.perf_counter()
        lost = killed - changes[-1][0]
        durable = changes[-1][1]
    finally:
        kill_server(server)
    restart = time.perf_counter()
    server = serve(tmp, jobs_dir, section_chars)
    ready = time.perf_counter()
    try:
        now = job(server, job_id)
        resumed_at = now["chars_done"]
        while job(server, job_id)["chars_done"] == resumed_at:
            time.sleep(0.02)
        first_section = time.perf_counter() - ready
        wait_done(server, job_id)
        ended = time.perf_counter()
    finally:
        stop_server(server)
    return {
        "section_s": section_s,
        "lost_s": lost,
        "durable_chars": float(durable),
        "resumed_chars": float(resumed_at),
        "restart_s": ready - restart,
        "first_section_after_ready_s": first_section,
        "work_s": (killed - started) + (ended - ready),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chars", type=int, default=8000, help="characters in the job's text")
    parser.add_argument("--crash-after", type=int, default=3, help="sections done before the kill")
    parser.add_argument("--section-chars", type=int, default=1000, help="job_batch_chars")
    parser.add_argument("--live-requests", type=int, default=30, help="live requests measured alone")
    args = parser.parse_args()
    text = book(args.chars)
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as folder:
        tmp = Path(folder)
        server = serve(tmp, tmp / "jobs-a", args.section_chars)
        try:
            alone: list[float] = []
            live_first_audio(server.url, threading.Event(), alone, args.live_requests)
            idle_s, done = timed_job(server, text)
            beside: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=live_first_audio, args=(server.url, stop, beside, 10**6))
            thread.start()
            try:
                live_s, _ = timed_job(server, text)
            finally:
                stop.set()
                thread.join()
        finally:
            stop_server(server)
        crash = crash_run(tmp, tmp / "jobs-b", text, args.crash_after, args.section_chars)

    report(text, args.section_chars, done["audio_seconds"], idle_s, live_s, alone, beside, crash)


def report(
    text: str,
    section_chars: int,
    audio_s: float,
    idle_s: float,
    live_s: float,
    alone: list[float],
    beside: list[float],
    crash: dict[str, float],
) -> None:
    work_s = crash["work_s"]
    print(f"text: {len(text)} characters, {audio_s:.0f} s of audio, sections of {section_chars} characters")
    print("| run | job wall s | x real time | chars/s | vs idle |")
    print("|---|---|---|---|---|")
    rows = [("idle", idle_s), ("with live requests", live_s), ("crash + resume (restart excluded)", work_s)]
    for name, wall in rows:
        print(
            f"| {name} | {wall:.1f} | {audio_s / wall:.1f} | {len(text) / wall:.0f} | {wall / idle_s:.2f} |"
        )
    p50 = statistics.median
    print(
        f"live first audio: alone p50 {p50(alone) * 1000:.0f} ms, beside the job p50 "
        f"{p50(beside) * 1000:.0f} ms ({p50(beside) / p50(alone):.2f}x, {len(beside)} requests)"
    )
    lost, section = crash["lost_s"], crash["section_s"]
    print(
        f"crash: synthesis thrown away {lost:.2f} s (a section takes {section:.2f} s: {lost / section:.2f} "
        f"of one); durable {crash['durable_chars']:.0f} chars, resumed at {crash['resumed_chars']:.0f}; "
        f"restart to /ready {crash['restart_s']:.1f} s; ready to the next section "
        f"{crash['first_section_after_ready_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
