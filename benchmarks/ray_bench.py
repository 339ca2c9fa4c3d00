"""Local worker processes against the Ray Serve backend, on the same machine (docs/scaling.md).

For each size (1 and 2 workers or replicas per engine) it starts two ``voxserve serve`` on free
loopback ports, Piper and Whisper tiny.en only: the local backend, and ``--backend ray`` (a local Ray
instance on 127.0.0.1, started by that server). Both run side by side and are measured alternately,
request by request and batch by batch, so that other load on a shared machine weighs on both alike
(the 1-minute load average is printed with the results). It measures (medians):

- TTS first audio: time to the first byte of ``POST /v1/audio/speech`` (pcm), one request at a time;
- STT final: time from the ``end`` message of a ``/v1/stream/transcribe`` session (its 2.75 s of
  speech sent before it at real-time pace, as a microphone does; no interim results) to its last
  final result, one session at a time;
- throughput: ``--concurrency`` TTS requests (a 4-sentence text) at once, and as many REST
  transcriptions of a 5.7 s clip at once: requests per second over the batch.

What Ray adds is the median difference ray - local at the same size (goal: <= 15 ms on first audio
and on the STT final). Run it alone (the numbers are CPU-bound):
``flock /tmp/coord/bench.lock python benchmarks/ray_bench.py [--runs 10] [--concurrency 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import Server, start_server, stop_server  # noqa: E402
from tests.e2e.ws_helpers import pcm16  # noqa: E402
from tests.speech_dev import by_name  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

SHORT = "Good morning, the kitchen lights are now turned off."
PARAGRAPH = (
    "The weather today is mild, with a light breeze from the west. "
    "In the afternoon, clouds will gather over the hills and bring a little rain. "
    "Tomorrow looks brighter, so plan the walk for the morning. "
    "Remember to bring a jacket, since the evenings are still cool."
)
STREAM_CLIP = "speech_recognition_english_123.wav"  # 2.75 s
BATCH_CLIP = "fsdd_string_george_a.wav"  # 5.65 s


def start(tmp: Path, backend: str, size: int) -> Server:
    env = {
        "VOXSERVE_ENGINES": '["piper"]',
        "VOXSERVE_STT_MODELS": '["tiny.en"]',
        "VOXSERVE_WORKERS_PER_ENGINE": str(size),
        "VOXSERVE_STT_WORKERS": str(size),
        "VOXSERVE_UI_ENABLED": "false",
        "VOXSERVE_MAX_QUEUED_REQUESTS": "64",
        "VOXSERVE_QUEUE_TIMEOUT_S": "120",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    args: tuple[str, ...] = ()
    if backend == "ray":
        # Logical CPUs: one per replica of each engine, as a local pool has one process per worker.
        env["VOXSERVE_RAY_NUM_CPUS"] = str(2 * size)
        env["VOXSERVE_RAY_LOG_TO_DRIVER"] = "false"
        args = ("--backend", "ray")
    return start_server(tmp, *args, env=env, ready_timeout_s=300)


def first_audio_ms(url: str) -> float:
    body = {"model": "tts-1", "voice": "alloy", "input": SHORT, "response_format": "pcm"}
    with httpx.Client(timeout=60) as client:
        t0 = time.perf_counter()
        with client.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
            r.raise_for_status()
            chunks = r.iter_raw()
            next(chunks)
            elapsed = (time.perf_counter() - t0) * 1000
            for _ in chunks:
                pass
    return elapsed


def stt_final_ms(url: str) -> float:
    pcm = pcm16(by_name(STREAM_CLIP).path)
    ws_url = url.replace("http://", "ws://") + "/v1/stream/transcribe"
    with connect(ws_url) as ws:
        # No interim results: a partial decode in flight at the end would add its own remaining time,
        # a random share of a decode, to the final (the medians then measure scheduling, not Ray).
        config = {"type": "config", "sample_rate_hz": 16000, "encoding": "linear16", "interim_results": False}
        ws.send(json.dumps(config))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(pcm), 3200)):  # 100 ms frames at real-time pace
            time.sleep(max(0.0, start + n * 0.1 - time.perf_counter()))
            ws.send(pcm[i : i + 3200])
        t0 = time.perf_counter()
        ws.send(json.dumps({"type": "end"}))
        last = t0
        try:
            while True:
                event = json.loads(ws.recv(timeout=60))
                if event.get("type") == "result" and event["results"][0]["is_final"]:
                    last = time.perf_counter()
        except Exception:  # the server closes the session after its last final
            pass
    return (last - t0) * 1000


def throughput(url: str, concurrency: int, kind: str) -> float:
    """Requests per second for ``concurrency`` requests started together."""
    clip = by_name(BATCH_CLIP).path.read_bytes()
    errors: list[str] = []

    def one() -> None:
        with httpx.Client(timeout=300) as client:
            if kind == "tts":
                body = {"model": "tts-1", "voice": "alloy", "input": PARAGRAPH, "response_format": "pcm"}
                r = client.post(f"{url}/v1/audio/speech", json=body)
            else:
                files = {"file": ("clip.wav", clip, "audio/wav")}
                r = client.post(f"{url}/v1/audio/transcriptions", files=files, data={"model": "whisper-1"})
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=one) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{kind}: {errors}")
    return concurrency / elapsed


def measure(size: int, runs: int, concurrency: int, rounds: int) -> list[dict[str, Any]]:
    """Both backends at one size, running side by side and measured alternately (request by request,
    batch by batch), so that other load on the machine weighs on both alike."""
    servers: dict[str, Server] = {}
    start_s: dict[str, float] = {}
    try:
        for backend in ("local", "ray"):
            t0 = time.perf_counter()
            servers[backend] = start(Path(tempfile.mkdtemp()), backend, size)
            start_s[backend] = time.perf_counter() - t0
        samples: dict[str, dict[str, list[float]]] = {b: {} for b in servers}

        def record(metric: str, fn: Any, *args: Any) -> None:
            for backend, server in servers.items():
                samples[backend].setdefault(metric, []).append(fn(server.url, *args))

        for server in servers.values():  # warm the routes and every worker or replica
            first_audio_ms(server.url)
            stt_final_ms(server.url)
            throughput(server.url, concurrency, "tts")
            throughput(server.url, concurrency, "stt")
        load = os.getloadavg()[0]
        for _ in range(runs):
            record("first_audio_ms", first_audio_ms)
        for _ in range(runs):
            record("stt_final_ms", stt_final_ms)
        for _ in range(rounds):
            record("tts_rps", throughput, concurrency, "tts")
            record("stt_rps", throughput, concurrency, "stt")
        load = max(load, os.getloadavg()[0])
    finally:
        for server in servers.values():
            stop_server(server)
    rows = []
    for backend, metrics in samples.items():
        row: dict[str, Any] = {"backend": backend, "size": size, "start_s": round(start_s[backend], 1)}
        for metric, values in metrics.items():
            row[metric] = round(statistics.median(values), 3 if metric.endswith("rps") else 1)
        row["load_avg"] = round(load, 1)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="throughput batches per backend")
    parser.add_argument("--sizes", default="1,2", help="workers / replicas per engine to try")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for row in measure(size, args.runs, args.concurrency, args.rounds):
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        f"{'backend':8} {'size':>4} {'start s':>8} {'first audio ms':>15} {'STT final ms':>13} "
        f"{'TTS req/s':>10} {'STT req/s':>10} {'load':>5}"
    )
    for r in rows:
        print(
            f"{r['backend']:8} {r['size']:>4} {r['start_s']:>8} {r['first_audio_ms']:>15} "
            f"{r['stt_final_ms']:>13} {r['tts_rps']:>10} {r['stt_rps']:>10} {r['load_avg']:>5}"
        )
    by = {(r["backend"], r["size"]): r for r in rows}
    for size in sorted({r["size"] for r in rows}):
        local, ray = by.get(("local", size)), by.get(("ray", size))
        if local and ray:
            print(
                f"size {size}: Ray adds {ray['first_audio_ms'] - local['first_audio_ms']:+.1f} ms to first "
                f"audio, {ray['stt_final_ms'] - local['stt_final_ms']:+.1f} ms to the STT final; "
                f"throughput ray/local TTS {ray['tts_rps'] / local['tts_rps']:.2f}x, "
                f"STT {ray['stt_rps'] / local['stt_rps']:.2f}x"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
