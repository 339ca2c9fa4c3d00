"""Text-to-speech benchmark: prints the numbers of README's performance table.

Starts ``voxserve serve`` on a free loopback port (Piper only, 2 workers × 1 thread) and measures:

1. time to first audio byte over HTTP for a 3-sentence paragraph (wav and mp3), against the Piper
   engine called directly in this process for the paragraph's first sentence (same thread count);
2. aggregate throughput of two concurrent long requests against one;
3. event-loop lag p99 (the server's own probe, from /metrics histogram deltas) and /health p99 while
   4 requests stream;
4. server RSS growth over N sequential requests;
5. Kokoro called directly (first fragment of a short phrase and of the first sentence): the bundled
   int8 model against the float32 model dequantised from it, at the configured threads per worker.

Usage: python benchmarks/tts_bench.py [--runs 10] [--rss-requests 500] [--skip-rss] [--kokoro-only]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import start_server, stop_server  # noqa: E402

PARAGRAPH = (
    "Streaming speech should start quickly, even when the first sentence of a paragraph is long and winding. "
    "The second sentence is short. The third one ends the paragraph."
)
FIRST_SENTENCE = PARAGRAPH.split(". ")[0] + "."
LONG = " ".join(
    f"Paragraph {i} tells a long story about a traveller who walks through the quiet hills at dawn."
    for i in range(25)
)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def direct_engine_s(text: str, runs: int) -> float:
    """Median time for the Piper engine, called directly in this process, to speak ``text``."""
    from voxserve.engines.piper import PiperEngine

    engine = PiperEngine(threads=1)
    for _ in range(3):
        list(engine.synthesize(text, "en_US-joe-medium", 1.0))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        list(engine.synthesize(text, "en_US-joe-medium", 1.0))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


SHORT_PHRASE = "Hello there, how are you today?"


def kokoro_direct_ms(texts: dict[str, str], runs: int, threads: int) -> dict[tuple[str, str], float]:
    """Median first-fragment time of Kokoro, int8 and dequantised float32, per text (ms).

    The two models take turns run by run, so a busy moment slows both alike.
    """
    from voxserve.engines.kokoro import KokoroEngine

    engines = {
        "int8": KokoroEngine(threads=threads),
        "float32": KokoroEngine(threads=threads, dequantize=True),
    }
    assert "fp32" in engines["float32"].model_file.name, (
        "the float model could not be built (is onnx installed?)"
    )
    out: dict[tuple[str, str], float] = {}
    for label, text in texts.items():
        times: dict[str, list[float]] = {kind: [] for kind in engines}
        for i in range(runs + 2):
            for kind, engine in engines.items():
                t0 = time.perf_counter()
                next(iter(engine.synthesize(text, "jf_alpha", 1.0)))
                if i >= 2:  # two warm-ups
                    times[kind].append(time.perf_counter() - t0)
        for kind in engines:
            out[(label, kind)] = statistics.median(times[kind]) * 1000
    return out


def kokoro_rows(runs: int, piper_ms: float) -> list[tuple[str, str, str]]:
    from voxserve.config import Settings

    threads = Settings().threads_per_worker
    texts = {"short phrase": SHORT_PHRASE, "first sentence": FIRST_SENTENCE}
    ms = kokoro_direct_ms(texts, runs, threads)
    rows = []
    for label in texts:
        int8, fp32 = ms[(label, "int8")], ms[(label, "float32")]
        rows.append((f"Kokoro int8 direct, {label} ({threads} thread)", f"{int8:.0f} ms", "1.00"))
        rows.append(
            (
                f"Kokoro float32 (dequantised) direct, {label}",
                f"{fp32:.0f} ms",
                f"{fp32 / int8:.2f} × int8",
            )
        )
    first = ms[("first sentence", "float32")]
    rows.append(("Kokoro float32 vs Piper, first sentence", "", f"{first / piper_ms:.2f} × Piper"))
    return rows


def ttfb(url: str, fmt: str, runs: int) -> float:
    times = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(runs + 2):
            t0 = time.perf_counter()
            with c.stream(
                "POST",
                "/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": PARAGRAPH, "response_format": fmt},
            ) as r:
                for chunk in r.iter_bytes():
                    if chunk:
                        break
                if i >= 2:  # two warm-ups
                    times.append(time.perf_counter() - t0)
    return statistics.median(times)


def long_request(url: str, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=300) as c:
        r = c.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"},
        )
        r.raise_for_status()
        out.append(len(r.content) / 2 / 24000)


def throughput(url: str, n: int) -> float:
    audio: list[float] = []
    threads = [threading.Thread(target=long_request, args=(url, audio)) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(audio) / (time.perf_counter() - t0)


def lag_buckets(url: str) -> dict[float, float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        float("inf") if le == "+Inf" else float(le): float(v)
        for le, v in re.findall(r'voxserve_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    }


def load_lag(url: str) -> tuple[float, float, float]:
    """(loop lag p99 upper bound in s, /health p99 in s, requests streamed) with 4 concurrent streams."""
    before = lag_buckets(url)
    stop = threading.Event()
    done: list[float] = []

    def streamer() -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            while not stop.is_set():
                with c.stream(
                    "POST",
                    "/v1/audio/speech",
                    json={"model": "tts-1", "voice": "alloy", "input": LONG[:1500], "response_format": "mp3"},
                ) as r:
                    for _ in r.iter_bytes():
                        pass
                done.append(1)

    threads = [threading.Thread(target=streamer) for _ in range(4)]
    for t in threads:
        t.start()
    health: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as c:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            t0 = time.perf_counter()
            c.get("/health")
            health.append(time.perf_counter() - t0)
            time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    after = lag_buckets(url)
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    total = delta[float("inf")]
    p99 = next(le for le in sorted(delta) if delta[le] >= 0.99 * total)
    return p99, pct(health, 0.99), float(len(done))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def rss_growth(url: str, pid: int, n: int) -> tuple[float, float]:
    with httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(20):
            c.post(
                "/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": "Warm up.", "response_format": "mp3"},
            )
        start = rss_mb(pid)
        for i in range(n):
            fmt = ("mp3", "wav", "opus", "pcm")[i % 4]
            c.post(
                "/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": f"Request {i}.", "response_format": fmt},
            )
        return start, rss_mb(pid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rss-requests", type=int, default=500)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--kokoro-only", action="store_true", help="only the direct engine rows")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    direct = direct_engine_s(FIRST_SENTENCE, args.runs)
    if args.kokoro_only:
        rows = [("Piper direct, first sentence", f"{direct * 1000:.0f} ms", "1.00")]
        rows += kokoro_rows(args.runs, direct * 1000)
        print_rows(rows)
        return
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="voxserve-bench-"))
    server = start_server(
        tmp,
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "2",
            "VOXSERVE_THREADS_PER_WORKER": "1",
        },
    )
    try:
        rows = [("Piper direct, first sentence", f"{direct * 1000:.0f} ms", "1.00")]
        for fmt in ("wav", "mp3"):
            t = ttfb(server.url, fmt, args.runs)
            rows.append(
                (f"HTTP time to first byte, {fmt}", f"{t * 1000:.0f} ms", f"{t / direct:.2f} × direct")
            )
        one = throughput(server.url, 1)
        two = throughput(server.url, 2)
        rows.append(("Throughput, 1 request", f"{one:.1f} s audio/s", "1.00"))
        rows.append(("Throughput, 2 concurrent", f"{two:.1f} s audio/s", f"{two / one:.2f} × one"))
        lag, health, streamed = load_lag(server.url)
        rows.append(
            ("Loop lag p99, 4 streams (bucket bound)", f"≤ {lag * 1000:.1f} ms", f"{streamed:.0f} requests")
        )
        rows.append(("/health p99, 4 streams", f"{health * 1000:.1f} ms", ""))
        if not args.skip_rss:
            start, end = rss_growth(server.url, server.process.pid, args.rss_requests)
            rows.append(
                (
                    f"Server RSS over {args.rss_requests} requests",
                    f"{start:.0f} → {end:.0f} MB",
                    f"+{end - start:.1f} MB",
                )
            )
    finally:
        stop_server(server)
    rows += kokoro_rows(args.runs, direct * 1000)
    print_rows(rows)


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    print("\n| measure | value | ratio |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main()
