"""Local worker processes against the Ray Serve backend, on the same machine (docs/scaling.md).

Starts ``voxserve serve`` four times on a free loopback port, Piper and Whisper tiny.en only: the local
backend with 1 and with 2 workers per engine, and ``--backend ray`` (a local Ray instance on
127.0.0.1, started by the server) with 1 and with 2 replicas per engine. For each it measures:

- TTS first audio: time to the first byte of ``POST /v1/audio/speech`` (pcm), one request at a time;
- STT final: time from the ``end`` message of a ``/v1/stream/transcribe`` session (the audio sent at
  once before it) to its last final result, one session at a time;
- throughput: ``--concurrency`` TTS requests (a 4-sentence text) at once, and as many REST
  transcriptions of a 5.7 s clip at once: requests per second over the batch.

What Ray adds is the median difference ray - local at the same size (goal: <= 15 ms on first audio
and on the STT final). Run it alone (the numbers are CPU-bound):
``flock /tmp/coord/bench.lock python benchmarks/ray_bench.py [--runs 10] [--concurrency 4]``.
"""

from __future__ import annotations

import argparse
import json
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


def first_audio_ms(url: str, runs: int) -> list[float]:
    body = {"model": "tts-1", "voice": "alloy", "input": SHORT, "response_format": "pcm"}
    out = []
    with httpx.Client(timeout=60) as client:
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            with client.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
                r.raise_for_status()
                chunks = r.iter_raw()
                next(chunks)
                out.append((time.perf_counter() - t0) * 1000)
                for _ in chunks:
                    pass
    return out[1:]  # the first request warms the route


def stt_final_ms(url: str, runs: int) -> list[float]:
    pcm = pcm16(by_name(STREAM_CLIP).path)
    ws_url = url.replace("http://", "ws://") + "/v1/stream/transcribe"
    out = []
    for _ in range(runs + 1):
        with connect(ws_url) as ws:
            ws.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
            for i in range(0, len(pcm), 3200):
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
            out.append((last - t0) * 1000)
    return out[1:]


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


def measure(backend: str, size: int, runs: int, concurrency: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    server = start(Path(tempfile.mkdtemp()), backend, size)
    start_s = time.perf_counter() - t0
    try:
        first = first_audio_ms(server.url, runs)
        final = stt_final_ms(server.url, runs)
        throughput(server.url, concurrency, "tts")  # warm every worker or replica
        tts_rps = throughput(server.url, concurrency, "tts")
        throughput(server.url, concurrency, "stt")
        stt_rps = throughput(server.url, concurrency, "stt")
    finally:
        stop_server(server)
    return {
        "backend": backend,
        "size": size,
        "start_s": round(start_s, 1),
        "first_audio_ms": round(statistics.median(first), 1),
        "stt_final_ms": round(statistics.median(final), 1),
        "tts_rps": round(tts_rps, 3),
        "stt_rps": round(stt_rps, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sizes", default="1,2", help="workers / replicas per engine to try")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for backend in ("local", "ray"):
            row = measure(backend, size, args.runs, args.concurrency)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        f"{'backend':8} {'size':>4} {'start s':>8} {'first audio ms':>15} {'STT final ms':>13} "
        f"{'TTS req/s':>10} {'STT req/s':>10}"
    )
    for r in rows:
        print(
            f"{r['backend']:8} {r['size']:>4} {r['start_s']:>8} {r['first_audio_ms']:>15} "
            f"{r['stt_final_ms']:>13} {r['tts_rps']:>10} {r['stt_rps']:>10}"
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
