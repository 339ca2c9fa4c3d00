"""Text-to-speech benchmark: prints the numbers of README's performance table.

Starts ``voxserve serve`` on a free loopback port (Piper only, 2 workers × 1 thread) and measures:

0. first audio and total time of ``POST /v1/audio/speech`` (pcm) for the 4 texts of
   ``benchmarks/peers_bench.py`` (1 client) and its 4-sentence text with 1, 2 and 4 clients at once,
   against the Piper engine called directly in this process on ALL cores (intra-op threads = cores):
   issue 11's rule is to judge a lone request against the engine on every core, not on one thread;
   and the first request after start-up (a cold worker);
1. time to first audio byte over HTTP for a 3-sentence paragraph (wav and mp3), against the Piper
   engine called directly in this process for the paragraph's first sentence (same thread count);
2. aggregate throughput of two concurrent long requests against one;
3. event-loop lag p99 (the server's own probe, from /metrics histogram deltas) and /health p99 while
   4 requests stream;
4. server RSS growth over N sequential requests;
5. Kokoro called directly (first fragment of a short phrase and of the first sentence): the bundled
   int8 model against the float32 model dequantised from it, at the configured threads per worker.

Usage: python benchmarks/tts_bench.py [--runs 10] [--rss-requests 500] [--skip-rss] [--kokoro-only]
       [--latency-only] [--rounds 3]
       [--baseline CHECKOUT]  (e.g. ``git worktree add /tmp/base HEAD~1``: its server runs beside this
       one and the two take turns round by round, so the ratios compare them under the same load)
"""

from __future__ import annotations

import argparse
import asyncio
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


TEXTS = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Good morning, the kitchen lights are now turned off. The front door is locked and the alarm is set.",
    PARAGRAPH,
    "Tomorrow will be cloudy in the morning, with a chance of light rain after lunch. "
    "Temperatures reach about eighteen degrees in the afternoon. "
    "The wind comes from the west at twenty kilometres per hour. "
    "In the evening, the sky clears and the stars come out.",
)
"""The texts of benchmarks/peers_bench.py (1 to 4 sentences)."""
CORES = os.cpu_count() or 1


def direct_all_cores(texts: tuple[str, ...], runs: int) -> dict[str, tuple[float, float]]:
    """Per text, the median (first sentence's audio, whole text) seconds of Piper called directly
    with one intra-op thread per core: the engine's best for one request on this machine."""
    from voxserve.engines.piper import PiperEngine

    engine = PiperEngine(threads=CORES)
    out = {}
    for text in texts:
        firsts, totals = [], []
        for i in range(runs + 2):
            t0 = time.perf_counter()
            first = None
            for _ in engine.synthesize(text, "en_US-joe-medium", 1.0):
                first = first or time.perf_counter() - t0
            if i >= 2:  # two warm-ups
                firsts.append(first or 0.0)
                totals.append(time.perf_counter() - t0)
        out[text] = (statistics.median(firsts), statistics.median(totals))
    return out


async def http_speech(client: httpx.AsyncClient, text: str) -> tuple[float, float]:
    """(first audio, total) seconds of one pcm request."""
    t0 = time.perf_counter()
    first = None
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    async with client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        async for chunk in r.aiter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0


async def measure_servers(urls: dict[str, str], rounds: int) -> dict[tuple[str, str], tuple[float, float]]:
    """Medians of (first audio, total) per (server label, case), the servers taking turns round by
    round so that a busy moment of the machine slows them alike. Cases: ``text<i>`` (1 client, text i)
    and ``clients<n>`` (n clients at once, the 4-sentence text)."""
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    clients = {label: httpx.AsyncClient(base_url=url, timeout=120) for label, url in urls.items()}
    try:
        for client in clients.values():  # warm the connections (and the engine's buffers)
            for text in TEXTS:
                await http_speech(client, text)
        for _ in range(rounds):
            for label, client in clients.items():
                for i, text in enumerate(TEXTS):
                    samples.setdefault((label, f"text{i}"), []).append(await http_speech(client, text))
            for n in (1, 2, 4):
                for label, client in clients.items():
                    results = await asyncio.gather(*(http_speech(client, TEXTS[-1]) for _ in range(n)))
                    samples.setdefault((label, f"clients{n}"), []).extend(results)
    finally:
        for client in clients.values():
            await client.aclose()
    return {
        key: (statistics.median(f for f, _ in values), statistics.median(t for _, t in values))
        for key, values in samples.items()
    }


def latency_rows(
    urls: dict[str, str], runs: int, rounds: int, colds: dict[str, tuple[float, float]]
) -> list[tuple[str, str, str]]:
    direct = direct_all_cores(TEXTS, runs)
    measured = measure_servers(urls, rounds)
    m = asyncio.run(measured)
    rows = []

    def ms(pair: tuple[float, float]) -> str:
        return f"{pair[0] * 1000:.0f} / {pair[1] * 1000:.0f} ms"

    def ratio(pair: tuple[float, float], ref: tuple[float, float], what: str) -> str:
        return f"{pair[0] / ref[0]:.2f} / {pair[1] / ref[1]:.2f} × {what}"

    d_all = (
        statistics.median(direct[t][0] for t in TEXTS),
        statistics.median(direct[t][1] for t in TEXTS),
    )
    rows.append(
        (f"Piper direct, {CORES} threads (all cores), 4 texts: first audio / total", ms(d_all), "1.00")
    )
    labels = list(urls)
    for label in labels:
        one = (
            statistics.median(m[(label, f"text{i}")][0] for i in range(len(TEXTS))),
            statistics.median(m[(label, f"text{i}")][1] for i in range(len(TEXTS))),
        )
        m[(label, "texts")] = one
        extra = "" if label == labels[0] else "; " + ratio(one, m[(labels[0], "texts")], labels[0])
        rows.append((f"{label}: HTTP pcm, 1 client, 4 texts", ms(one), ratio(one, d_all, "direct") + extra))
    d_long = direct[TEXTS[-1]]
    rows.append((f"Piper direct, {CORES} threads, 4-sentence text", ms(d_long), "1.00"))
    for n in (1, 2, 4):
        for label in labels:
            pair = m[(label, f"clients{n}")]
            extra = "" if label == labels[0] else "; " + ratio(pair, m[(labels[0], f"clients{n}")], labels[0])
            rows.append(
                (
                    f"{label}: HTTP pcm, {n} client(s) at once, 4-sentence text",
                    ms(pair),
                    ratio(pair, d_long, "direct") + extra,
                )
            )
    for label in labels:
        rows.append(
            (
                f"{label}: first request after start-up (4 sentences)",
                ms(colds[label]),
                ratio(colds[label], d_long, "direct"),
            )
        )
    return rows


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def direct_engine_s(text: str, runs: int) -> float:
    """Median time for the Piper engine, called directly in this process on all cores, to speak
    ``text``."""
    from voxserve.engines.piper import PiperEngine

    engine = PiperEngine(threads=os.cpu_count() or 1)
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
    parser.add_argument("--latency-only", action="store_true", help="only the first-audio/total rows")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the first-audio/total rows")
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also serve another checkout (a git worktree of an older commit) and compare, taking turns",
    )
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the baseline server (e.g. VOXSERVE_WORKERS_PER_ENGINE=1 with "
        "VOXSERVE_THREADS_PER_WORKER=2 and --baseline . to compare threads with parallel fragments)",
    )
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
    env = {
        "VOXSERVE_ENGINES": '["piper"]',
        "VOXSERVE_WORKERS_PER_ENGINE": "2",
        "VOXSERVE_THREADS_PER_WORKER": "1",
    }

    async def cold_request(url: str) -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await http_speech(client, TEXTS[-1])

    baseline = None
    colds = {}
    if args.baseline:
        # The other checkout's server runs first, alone, for its cold request; then both stay up.
        src = str(Path(args.baseline).resolve() / "src")
        extra = dict(item.split("=", 1) for item in args.baseline_env)
        baseline = start_server(tmp, env={**env, "PYTHONPATH": src, **extra})
        colds["baseline"] = asyncio.run(cold_request(baseline.url))
    server = start_server(tmp, env=env)
    try:
        colds["this"] = asyncio.run(cold_request(server.url))
        urls = {"this": server.url} | ({"baseline": baseline.url} if baseline is not None else {})
        rows = latency_rows(urls, args.runs, args.rounds, colds)
        if args.latency_only:
            print_rows(rows)
            return
        rows.append((f"Piper direct, first sentence ({CORES} threads)", f"{direct * 1000:.0f} ms", "1.00"))
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
        if baseline is not None:
            stop_server(baseline)
    rows += kokoro_rows(args.runs, direct * 1000)
    print_rows(rows)


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    print("\n| measure | value | ratio |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main()
