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

With ``--hostile N``, N more clients send what an attacker with a valid key would (the failure
corpus's uploads and texts, issue 12) beside the normal sessions, one after another: uploads that
claim hours in a few hundred kB (FLAC at 384 kHz with 8 channels and no declared length, a FLAC
declaring 24 hours, 40 minutes of 8 kb/s MP3 and 6 kb/s Opus silence) and a text of 4096 nines.
Reported per case: status and error code, and the time to the answer; and the server process's RSS
idle before and after (40 s after the last request: the server trims its heap every 30 s), which must
come back to within 50 MB. The idle level before is measured after one request of each kind (and
40 s), as a server in use idles; ``--no-warm-up`` measures it right after start-up instead (also
printed as "fresh").

Usage: python benchmarks/soak.py [--minutes 10] [--tts 2] [--stt 2] [--hostile 0] [--no-warm-up]
"""

from __future__ import annotations

import argparse
import contextlib
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

from benchmarks.procmem import rss_mb, tree  # noqa: E402
from tests.audio_helpers import silence_encoded, silence_flac, with_total_samples  # noqa: E402
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


@dataclass(frozen=True)
class Hostile:
    """One request of the hostile mix: an upload to transcribe, or a text to speak."""

    name: str
    upload: bytes | None = None
    text: str | None = None


def hostile_cases() -> list[Hostile]:
    """The failure corpus's costly requests (built once: the compressed ones take ~15 s to encode)."""
    return [
        Hostile(
            "flac 384 kHz 8 ch, no length", upload=with_total_samples(silence_flac(120, 384_000, "7.1"), 0)
        ),
        Hostile("flac declaring 24 h", upload=with_total_samples(silence_flac(60), 8000 * 86_400)),
        Hostile("mp3 8 kb/s, 40 min", upload=silence_encoded(2400, "mp3", "mp3", 16000, 8000)),
        Hostile("opus 6 kb/s, 40 min", upload=silence_encoded(2400, "ogg", "libopus", 48000, 6000)),
        Hostile("4096 nines", text="9" * 4096),
    ]


@dataclass
class HostileReport:
    """Per case: (status, error code, seconds to the answer) of every request."""

    results: dict[str, list[tuple[int, str, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, status: int, code: str, seconds: float) -> None:
        with self.lock:
            self.results.setdefault(name, []).append((status, code, seconds))

    def lines(self) -> list[str]:
        out = []
        for name, rows in self.results.items():
            answers = sorted({f"{status} {code}".strip() for status, code, _ in rows})
            times = sorted(t for _, _, t in rows)
            out.append(
                f"  {name}: {len(rows)} sent, answered {', '.join(answers)}; "
                f"time p50 {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s"
            )
        return out


def hostile_session(url: str, case: Hostile, report: HostileReport) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=600) as client:
        if case.upload is not None:
            r = client.post(
                "/v1/audio/transcriptions",
                files={"file": ("upload", case.upload)},
                data={"model": "whisper-1"},
            )
        else:
            r = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": case.text})
    code = ""
    if r.status_code >= 400:
        code = r.json().get("error", {}).get("code", "")
    report.add(case.name, r.status_code, code, time.monotonic() - started)


def server_rss_mb(pid: int) -> float:
    return tree_rss_mb(pid).get(pid, 0.0)


def lag_buckets(url: str) -> dict[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        float("inf") if le == "+Inf" else float(le): float(v)
        for le, v in re.findall(r'voxserve_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    }


def tree_rss_mb(pid: int) -> dict[int, float]:
    """RSS of ``pid`` and of each of its descendants (the worker processes), in MB, by PID."""
    by_pid = {p: rss_mb(p) for p in tree(pid)}
    return {p: mb for p, mb in by_pid.items() if mb > 0}  # 0: it ended while being read


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


@dataclass
class Outcome:
    report: Report
    memory: Memory
    lag_p99_s: float
    hostile: HostileReport
    idle_rss_mb: tuple[float, float]
    """The server process's RSS idle before the load and ``settle_s`` (40 s) after it: time for the
    server's own heap trim (``memory_trim_interval_s``, 30 s) to have run."""
    fresh_rss_mb: float = 0.0
    """The server process's RSS right after start-up, before any request (with ``warm_up`` the idle
    level before the load is measured after one request of each kind instead)."""


def run(
    minutes: float,
    tts: int,
    stt: int,
    tmp: Path,
    hostile: int = 0,
    cases: list[Hostile] | None = None,
    settle_s: float = 40.0,
    warm_up: bool = False,
) -> Outcome:
    """Run the soak; return the report, the memory samples, the loop-lag p99 (s) and the hostile mix
    (``cases``, default :func:`hostile_cases`, sent by ``hostile`` clients).

    With ``warm_up``, one session of each kind and each hostile case run first, and the idle level is
    measured ``settle_s`` after them: a fresh server has not yet imported or cached what its first
    requests need (about 60 MB that stay whatever the load), which is not growth under load."""
    mix = (cases if cases is not None else hostile_cases()) if hostile else []
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
    hostile_report = HostileReport()
    try:
        idle_before = fresh = server_rss_mb(server.process.pid)
        if warm_up:
            tts_session(ws_base + "/v1/stream/speak", Report())
            stt_session(ws_base + "/v1/stream/transcribe", pcm, recording.text, Report())
            for case in mix:
                with contextlib.suppress(Exception):
                    hostile_session(base, case, HostileReport())
            time.sleep(settle_s)  # the server's heap trim runs every 30 s
            idle_before = server_rss_mb(server.process.pid)
        deadline = time.monotonic() + minutes * 60
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

        def hostile_loop(offset: int) -> None:
            i = offset
            while time.monotonic() < deadline:
                case = mix[i % len(mix)]
                i += 1
                try:
                    hostile_session(base, case, hostile_report)
                except Exception as exc:  # a dropped connection is an answer too
                    hostile_report.add(case.name, 0, type(exc).__name__, 0.0)

        threads += [threading.Thread(target=hostile_loop, args=(n,)) for n in range(hostile)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        memory = Memory(server.process.pid)
        while any(t.is_alive() for t in threads):
            memory.add(time.monotonic() - t0, tree_rss_mb(server.process.pid))
            for t in threads:
                t.join(timeout=2.0)
        after = lag_buckets(base)
        settle = time.monotonic() + settle_s
        while time.monotonic() < settle:  # let the last requests' memory go
            memory.add(time.monotonic() - t0, tree_rss_mb(server.process.pid))
            time.sleep(1.0)
        idle_after = server_rss_mb(server.process.pid)
    finally:
        stop_server(server)
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    total = delta[float("inf")]
    p99 = next(le for le in sorted(delta) if delta[le] >= 0.99 * total) if total else 0.0
    return Outcome(report, memory, p99, hostile_report, (idle_before, idle_after), fresh)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--tts", type=int, default=2)
    parser.add_argument("--stt", type=int, default=2)
    parser.add_argument("--hostile", type=int, default=0, help="clients sending the hostile mix")
    parser.add_argument("--no-warm-up", action="store_true", help="measure the idle level before any request")
    args = parser.parse_args()
    outcome = run(
        args.minutes, args.tts, args.stt, Path(tempfile.mkdtemp()), args.hostile, warm_up=not args.no_warm_up
    )
    report, memory, p99 = outcome.report, outcome.memory, outcome.lag_p99_s
    total = memory.total()
    print(
        f"soak: {args.minutes:g} min, {args.tts} TTS + {args.stt} STT concurrent sessions"
        + (f" + {args.hostile} hostile clients" if args.hostile else "")
    )
    print(f"sessions: {report.tts_sessions} TTS, {report.stt_sessions} STT")
    print(f"failures (lost/duplicated audio, bad transcripts, unexpected closes): {len(report.failures)}")
    for failure in report.failures[:20]:
        print(f"  {failure}")
    slope = slope_per_minute(steady(total))
    print(f"server + workers RSS: {total[0][1]:.0f} -> {total[-1][1]:.0f} MB, slope {slope:+.2f} MB/min")
    print("\n".join(memory.lines()))
    print(f"event-loop lag p99 <= {p99 * 1000:.1f} ms (histogram bucket bound)")
    if args.hostile:
        print("hostile requests:")
        print("\n".join(outcome.hostile.lines()))
        idle_before, idle_after = outcome.idle_rss_mb
        print(
            f"server process RSS idle: {outcome.fresh_rss_mb:.0f} MB fresh, {idle_before:.0f} MB before "
            f"the load{' (after one request of each kind)' if not args.no_warm_up else ''}, "
            f"{idle_after:.0f} MB after ({idle_after - idle_before:+.0f} MB; target within 50 MB)"
        )
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
