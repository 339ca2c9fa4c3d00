"""Soak benchmark: N text-to-speech and N speech-to-text sessions for M minutes against one server.

Starts ``voxserve serve`` on a free loopback port (Piper + tiny.en) and keeps ``--tts`` speak sessions
(``WS /v1/stream/speak``: an answer's tokens in, audio out) and ``--stt`` transcription sessions
(``WS /v1/stream/transcribe``: a recording at real-time pace) going, each one after another, until
``--minutes`` have passed. Checked for every session:

- TTS: every byte of audio the server says it produced arrives, none twice: the PCM bytes received
  equal ``done.audio_s`` × 48000 (24 kHz s16le), the sentences arrive in order, and it closes with 1000;
- STT: no audio lost: the last final ends within the audio sent and after the speech in it; finals
  never go backwards in time (no duplicate); the transcript's WER stays under a bound; close 1000.

Reported: sessions run, integrity failures, unexpected closes, server RSS (server and workers) slope in
MB per minute, and event-loop lag p99 (the server's own probe, from /metrics histogram deltas).
Exit status 1 if any session failed. CI runs a short version (tests/e2e/test_soak_e2e.py).

Usage: python benchmarks/soak.py [--minutes 10] [--tts 2] [--stt 2]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import start_server, stop_server  # noqa: E402
from tests.e2e.ws_helpers import pcm16  # noqa: E402
from tests.speech_dev import by_name  # noqa: E402
from tests.wer import wer  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

ANSWER = (
    "Here is a longer answer, streamed token by token. It has several sentences, with numbers like "
    "3,497 and $12.50. The soak test checks that every byte arrives exactly once. That is all."
)
RECORDING = "librispeech_1272-141231-0002.wav"
MAX_WER = 0.35


@dataclass
class Report:
    tts_sessions: int = 0
    stt_sessions: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def tts_session(url: str, report: Report) -> None:
    with connect(url, max_size=None, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy", "response_format": "pcm"}))
        if json.loads(ws.recv(timeout=60))["type"] != "ready":
            report.fail("tts: no ready")
            return
        for token in ANSWER.split(" "):
            ws.send(json.dumps({"type": "text", "text": token + " "}))
        ws.send(json.dumps({"type": "end"}))
        received = 0
        sentences: list[float] = []
        done = None
        try:
            while True:
                message = ws.recv(timeout=120)
                if isinstance(message, bytes):
                    received += len(message)
                    continue
                event = json.loads(message)
                if event["type"] == "sentence":
                    sentences.append(event["start_s"])
                elif event["type"] == "done":
                    done = event
                elif event["type"] == "error":
                    report.fail(f"tts: error event {event}")
        except ConnectionClosed:
            pass
    if ws.close_code != 1000:
        report.fail(f"tts: closed {ws.close_code} {ws.close_reason}")
    elif done is None:
        report.fail("tts: no done event")
    elif received != done["samples"] * 2:
        report.fail(f"tts: {received} bytes for {done['samples']} samples (lost or duplicated audio)")
    elif sentences != sorted(sentences) or len(sentences) < 4:
        report.fail(f"tts: sentences out of order or missing: {sentences}")
    with report.lock:
        report.tts_sessions += 1


def stt_session(url: str, pcm: bytes, text: str, report: Report) -> None:
    sent_s = len(pcm) / 32000
    with connect(url, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config", "sample_rate_hz": 16000, "encoding": "linear16"}))
        if json.loads(ws.recv(timeout=60))["type"] != "ready":
            report.fail("stt: no ready")
            return
        step = 3200  # 100 ms
        start = time.monotonic()
        finals: list[tuple[str, float]] = []

        def read() -> None:
            try:
                while True:
                    event = json.loads(ws.recv(timeout=120))
                    if event["type"] == "result" and event["results"][0]["is_final"]:
                        r = event["results"][0]
                        finals.append((r["alternatives"][0]["transcript"], r["result_end_time"]))
                    elif event["type"] == "error":
                        report.fail(f"stt: error event {event}")
            except (ConnectionClosed, TimeoutError):
                pass

        reader = threading.Thread(target=read)
        reader.start()
        for i, offset in enumerate(range(0, len(pcm), step)):
            ws.send(pcm[offset : offset + step])
            time.sleep(max(0.0, start + (i + 1) * 0.1 - time.monotonic()))  # real-time pace
        ws.send(json.dumps({"type": "end"}))
        reader.join(150)
    if ws.close_code != 1000:
        report.fail(f"stt: closed {ws.close_code} {ws.close_reason}")
        return
    ends = [end for _, end in finals]
    transcript = " ".join(t for t, _ in finals)
    if not finals or ends != sorted(ends) or len(set(ends)) != len(ends):
        report.fail(f"stt: finals missing, out of order or repeated: {ends}")
    elif not sent_s - 1.5 <= ends[-1] <= sent_s + 0.05:
        report.fail(f"stt: last final ends at {ends[-1]} s of {sent_s:.2f} s sent (audio lost?)")
    elif wer(text, transcript) > MAX_WER:
        report.fail(f"stt: WER {wer(text, transcript):.2f}: {transcript!r}")
    with report.lock:
        report.stt_sessions += 1


def lag_buckets(url: str) -> dict[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        float("inf") if le == "+Inf" else float(le): float(v)
        for le, v in re.findall(r'voxserve_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    }


def tree_rss_mb(pid: int) -> dict[int, float]:
    """RSS of ``pid`` and of each of its children (the worker processes), in MB, by PID."""
    out: dict[int, float] = {}
    pids = [pid]
    # Children are listed per thread, and workers are started from the server's other threads too.
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(p) for p in children.read_text().split()]
        except FileNotFoundError:  # the thread ended
            continue
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[p] = int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    return out


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 0.0 if var == 0 else 60 * sum((t - mt) * (v - mv) for t, v in samples) / var


@dataclass
class Memory:
    """RSS samples of the server and its workers: ``(seconds, MB)`` per PID."""

    server_pid: int
    samples: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, t: float, by_pid: dict[int, float]) -> None:
        for pid, mb in by_pid.items():
            self.samples.setdefault(pid, []).append((t, mb))

    def total(self) -> list[tuple[float, float]]:
        """The tree's RSS over time (every PID alive at each sample)."""
        times = sorted({t for series in self.samples.values() for t, _ in series})
        by_time: dict[float, float] = dict.fromkeys(times, 0.0)
        for series in self.samples.values():
            for t, mb in series:
                by_time[t] += mb
        return sorted(by_time.items())

    def lines(self) -> list[str]:
        """One line per process: first and last RSS and the steady-state slope."""
        out = []
        for pid, series in sorted(self.samples.items(), key=lambda kv: kv[0] != self.server_pid):
            name = "server" if pid == self.server_pid else f"worker {pid}"
            slope = slope_per_minute(steady(series))
            out.append(f"  {name}: {series[0][1]:.0f} -> {series[-1][1]:.0f} MB, slope {slope:+.2f} MB/min")
        return out


def steady(samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # The first minute holds start-up growth (caches, arenas): the slope is over the rest when there is one.
    return [s for s in samples if s[0] >= 60] if samples and samples[-1][0] > 120 else samples


def run(minutes: float, tts: int, stt: int, tmp: Path) -> tuple[Report, Memory, float]:
    """Run the soak; return the report, the memory samples and the loop-lag p99 (s)."""
    server = start_server(
        tmp,
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "1",
            "VOXSERVE_STT_WORKERS": "1",
            "VOXSERVE_UI_ENABLED": "false",
            "VOXSERVE_LOG_LEVEL": "warning",
        },
    )
    base = server.url
    ws_base = base.replace("http://", "ws://")
    recording = by_name(RECORDING)
    pcm = pcm16(recording.path) + bytes(32000)  # one second of silence after the speech
    report = Report()
    deadline = time.monotonic() + minutes * 60
    try:
        before = lag_buckets(base)

        def loop(fn: object, *args: object) -> None:
            while time.monotonic() < deadline:
                try:
                    fn(*args)  # type: ignore[operator]
                except Exception as exc:  # a session that breaks is a failure, not a crash
                    report.fail(f"{getattr(fn, '__name__', fn)}: {type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=loop, args=(tts_session, ws_base + "/v1/stream/speak", report))
            for _ in range(tts)
        ] + [
            threading.Thread(
                target=loop,
                args=(stt_session, ws_base + "/v1/stream/transcribe", pcm, recording.text, report),
            )
            for _ in range(stt)
        ]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        memory = Memory(server.process.pid)
        while any(t.is_alive() for t in threads):
            memory.add(time.monotonic() - t0, tree_rss_mb(server.process.pid))
            for t in threads:
                t.join(timeout=2.0)
        after = lag_buckets(base)
    finally:
        stop_server(server)
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    total = delta[float("inf")]
    p99 = next(le for le in sorted(delta) if delta[le] >= 0.99 * total) if total else 0.0
    return report, memory, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--tts", type=int, default=2)
    parser.add_argument("--stt", type=int, default=2)
    args = parser.parse_args()
    report, memory, p99 = run(args.minutes, args.tts, args.stt, Path(tempfile.mkdtemp()))
    total = memory.total()
    print(f"soak: {args.minutes:g} min, {args.tts} TTS + {args.stt} STT concurrent sessions")
    print(f"sessions: {report.tts_sessions} TTS, {report.stt_sessions} STT")
    print(f"failures (lost/duplicated audio, bad transcripts, unexpected closes): {len(report.failures)}")
    for failure in report.failures[:20]:
        print(f"  {failure}")
    slope = slope_per_minute(steady(total))
    print(f"server + workers RSS: {total[0][1]:.0f} -> {total[-1][1]:.0f} MB, slope {slope:+.2f} MB/min")
    print("\n".join(memory.lines()))
    print(f"event-loop lag p99 <= {p99 * 1000:.1f} ms (histogram bucket bound)")
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
