"""Voice-agent frameworks benchmark: what pipecat and LiveKit Agents see of a default ``voxserve serve``.

Starts the server on a free loopback port (every engine, as users run it) and drives the frameworks
with the e2e drivers (tests/e2e/agents/run_*.py, in ``.venv-agents``), configured as their users
configure them for OpenAI with only ``base_url`` changed. Against each, the same work through
voxserve's own clients in this process is the reference; the difference is what the framework path
costs. The goal: the framework path adds at most 50 ms.

1. **End of speech → final transcript** through each framework's Realtime STT, on speech_dev's short
   and medium recordings played in real time (20 ms frames) with a 2.5 s pause between them. The end
   of speech comes from an offline Silero VAD pass (as stt_bench); after each recording the speaker
   waits for its final (at least 2.5 s), as in the e2e tests. Paths:
   - pipecat ``OpenAIRealtimeSTTService`` with Silero VAD (``stop_secs`` 0.5): pipecat commits;
   - LiveKit ``openai.STT(use_realtime=True)``: server VAD with the plugin's turn_detection (350 ms);
   - LiveKit ``openai.STT(model="gpt-realtime-whisper")``: the plugin's Silero VAD commits.
   Where the client commits, **commit → final** is printed too: that is the part voxserve and the
   framework's socket handling own (the rest is the framework's VAD waiting out its silence).
   References: a plain WebSocket client of ``/v1/realtime`` with the same session: server VAD 350 ms
   (``ref-vad``); where the framework commits, one that sends the **same commits at the same times**
   (``ref-pipecat``, ``ref-livekit-whisper``: the framework's commits of the same round replayed, so
   the difference is what the framework path itself adds), and one that commits once, 0.5 s after
   the end of speech (``ref-commit``: the difference adds what the framework's VAD costs, committing
   at every short pause and later than an ideal client).
   The committing frameworks and their replays go through a relay (benchmarks/wiretap.py) that notes
   when each commit and transcript passes, so their commit → final splits into voxserve's part (commit
   received → transcript sent, framework against replay: two runs of the same commits, whose
   difference is decode-to-decode variation and the framework process's share of the CPU) and the
   framework's own path (its VAD's decision → commit on the wire, transcript on the wire → its final
   frame: one clock, ``time.monotonic()``, in every process). End of speech → final is compared
   twice: as the difference of the two medians, and as the median of the turn-by-turn differences
   (the same file of the same round in both runs), which a few turns decoded during the pause in one
   run and not in the other do not swing.
2. **Text → first audio** through each framework's TTS (pipecat ``OpenAITTSService``, LiveKit
   ``openai.TTS.synthesize`` with its defaults, mp3 over SSE, and with pcm); reference: the same
   ``POST /v1/audio/speech`` through httpx (first body chunk), and ``WS /v1/stream/speak``
   (text + flush → first binary frame) with the same voice.

Usage: python benchmarks/agents_bench.py [--rounds 3] [--skip-stt] [--skip-tts]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stt_bench import load16k, pct, speech_regions  # noqa: E402
from benchmarks.wiretap import WireTap, commit_to_final, framework_delays  # noqa: E402
from tests.e2e.agents.agent_io import LEAD_S, Microphone, read_wav  # noqa: E402
from tests.e2e.agents.frameworks import GAP_S, drive  # noqa: E402
from tests.e2e.conftest import Server, start_server, stop_server  # noqa: E402
from tests.speech_dev import by_name  # noqa: E402

FILES = [
    "speech_recognition_english_123.wav",
    "pocketsphinx_cards_001.wav",
    "pocketsphinx_cards_002.wav",
    "pocketsphinx_cards_005.wav",
    "fsdd_string_lucas_a.wav",
    "fleurs_en_007.wav",
]
STOP_S = 0.5  # pipecat's Silero stop_secs here, and the reference client's commit delay
LIVEKIT_TURN = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 600, "silence_duration_ms": 350}
TEXTS = [
    "Hello, how can I help you today?",
    "Sure, I can book a table for two at seven thirty.",
    "The weather in Paris is sunny, with a high of twenty two degrees.",
]
WARMUP = "Okay."


def speech_end_offsets(files: list[str]) -> list[float]:
    """Where each file's speech ends, from its start (seconds), by an offline Silero pass."""
    return [speech_regions(load16k(Path(f)))[-1][1] for f in files]


def final_latencies(result: dict[str, Any], offsets: list[float], commits: list[float] | None = None) -> dict:
    """Per file: the last final before the next file starts, minus the end of speech (and minus the
    last commit before that final)."""
    spans = result["spans"]
    eos: list[float] = []
    turns: list[float | None] = []  # eos per file, None where it had no final (for paired differences)
    commit_to_final: list[float] = []
    missing = 0
    for i, ((start, _end), offset) in enumerate(zip(spans, offsets, strict=False)):
        end = start + offset
        limit = spans[i + 1][0] if i + 1 < len(spans) else float("inf")
        finals = [f["t"] for f in result["finals"] if end - 0.3 <= f["t"] < limit]
        if not finals:
            missing += 1
            turns.append(None)
            continue
        eos.append(finals[-1] - end)
        turns.append(finals[-1] - end)
        if commits is not None:
            before = [c for c in commits if start <= c <= finals[-1]]
            if before:
                commit_to_final.append(finals[-1] - before[-1])
    return {"eos": eos, "turns": turns, "commit": commit_to_final, "missing": missing}


def commits_per_file(spans: list[list[float]], commits: list[float]) -> list[list[float]]:
    """A framework run's commit times, per file, from that file's start (those before the next file)."""
    out = []
    for i, (start, _end) in enumerate(spans):
        limit = spans[i + 1][0] if i + 1 < len(spans) else float("inf")
        out.append([c - start for c in commits if start <= c < limit])
    return out


async def reference_realtime(
    url: str,
    files: list[str],
    offsets: list[float],
    server_vad: bool,
    replay: list[list[float]] | None = None,
) -> dict:
    """A plain ``/v1/realtime`` client in the same conversation: GA session, 20 ms frames resampled to
    24 kHz in real time, a pause after each file until its final (at least ``GAP_S``); with
    ``server_vad`` LiveKit's turn detection, else a commit ``STOP_S`` after each end of speech, or with
    ``replay`` a commit at each of the given times from each file's start (a framework's commits)."""
    import soxr
    import websockets

    finals: list[dict[str, Any]] = []
    commits: list[float] = []
    counts = {"started": 0, "stopped": 0, "committed": 0}
    model = "gpt-4o-mini-transcribe" if server_vad else "gpt-realtime-whisper"
    session: dict[str, Any] = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": model, "language": "en"},
                "turn_detection": LIVEKIT_TURN if server_vad else None,
            }
        },
    }
    ws_url = url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    resampler = soxr.ResampleStream(16000, 24000, 1, dtype="int16")
    spans: list[tuple[float, float]] = []
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        await ws.recv()  # session.created
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        while json.loads(await ws.recv())["type"] != "session.updated":
            pass

        async def send(pcm: bytes) -> None:
            out = resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2")).tobytes()
            await ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(out).decode()})
            )

        mic = Microphone(send)

        async def receive() -> None:
            async for message in ws:
                msg = json.loads(message)
                kind = msg["type"]
                if kind == "conversation.item.input_audio_transcription.completed":
                    finals.append({"t": mic.now(), "text": msg["transcript"]})
                elif kind == "input_audio_buffer.speech_started":
                    counts["started"] += 1
                elif kind == "input_audio_buffer.speech_stopped":
                    counts["stopped"] += 1
                elif kind == "input_audio_buffer.committed":
                    counts["committed"] += 1
                elif kind == "error":
                    print("reference error:", msg, file=sys.stderr)

        scheduled: list[asyncio.Task[None]] = []

        def answered() -> bool:
            sent = all(task.done() for task in scheduled)
            return sent and counts["started"] == counts["stopped"] and len(finals) >= counts["committed"]

        async def commit_at(times: list[float]) -> None:
            for t in times:
                await asyncio.sleep(max(0.0, t - mic.now()))
                commits.append(mic.now())
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

        reader = asyncio.create_task(receive())
        await mic.silence_until(lambda: True, LEAD_S, LEAD_S)
        for i, (f, offset) in enumerate(zip(files, offsets, strict=True)):
            start = mic.now()
            if replay is not None:
                scheduled.append(asyncio.create_task(commit_at([start + t for t in replay[i]])))
            await mic.speak(read_wav(f))
            spans.append((start, mic.now()))
            if not server_vad and replay is None:
                await mic.silence_until(lambda s=start, o=offset: mic.now() >= s + o + STOP_S, 0, 10)
                commits.append(mic.now())
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await mic.silence_until(answered, GAP_S, 20)
        reader.cancel()
    return {"spans": spans, "finals": finals, "commits": commits, "t0": mic.t0}


async def rest_first_audio(url: str, text: str, body: dict[str, Any], client: httpx.AsyncClient) -> float:
    t0 = time.monotonic()
    first = float("nan")
    async with client.stream("POST", f"{url}/v1/audio/speech", json={"input": text, **body}) as r:
        r.raise_for_status()
        async for chunk in r.aiter_bytes():
            if chunk and first != first:  # still NaN: the first audio
                first = time.monotonic() - t0
    return first


async def rest_reference(url: str, body: dict[str, Any], rounds: int) -> list[float]:
    async with httpx.AsyncClient(timeout=120) as client:
        await rest_first_audio(url, WARMUP, body, client)
        return [await rest_first_audio(url, t, body, client) for _ in range(rounds) for t in TEXTS]


async def ws_reference(url: str, voice: str, rounds: int) -> list[float]:
    import websockets

    out = []
    for text in [WARMUP] + TEXTS * rounds:
        async with websockets.connect(url.replace("http://", "ws://") + "/v1/stream/speak") as ws:
            await ws.send(json.dumps({"type": "config", "voice": voice, "response_format": "pcm"}))
            await ws.recv()  # ready
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "text", "text": text}))
            await ws.send(json.dumps({"type": "end"}))
            first = None
            async for message in ws:
                if isinstance(message, bytes) and first is None:
                    first = time.monotonic() - t0
        out.append(first if first is not None else float("nan"))
    return out[1:]


def framework_tts(server: Server, tmp: Path, script: str, job: dict[str, Any], rounds: int) -> list[float]:
    run = drive(script, "tts", {"texts": [WARMUP] + TEXTS * rounds, "wait_s": 120, **job}, tmp, 600, server)
    if run["errors"]:
        print(f"{script} errors: {run['errors']}", file=sys.stderr)
    reqs = run["requests"][1:]
    return [r["first_audio"] - r.get("sent", 0.0) for r in reqs if r["first_audio"] is not None]


def ms(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{pct(values, 0.5) * 1000:.0f} / {pct(values, 0.9) * 1000:.0f} ms"


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def diff(a: list[float], b: list[float]) -> str:
    if not a or not b:
        return "—"
    return f"{(statistics.median(a) - statistics.median(b)) * 1000:+.0f} ms"


def paired(a: list[float | None], b: list[float | None]) -> str:
    """The median of the turn-by-turn differences (the same file of the same round in both runs): a
    turn decoded during the pause in one run and not in the other weighs once, not as a shifted
    median of two bimodal sets."""
    pairs = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return f"{statistics.median(pairs) * 1000:+.0f} ms" if pairs else "—"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="repeats of the STT play list and TTS texts")
    parser.add_argument("--skip-stt", action="store_true")
    parser.add_argument("--skip-tts", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    tmp = Path(tempfile.mkdtemp(prefix="voxserve-agents-"))
    server = start_server(tmp)
    httpx.get(f"{server.url}/v1/audio/voices", timeout=180)  # background engines loaded
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        if not args.skip_stt:
            files = [str(by_name(n).path) for n in FILES]
            offsets = speech_end_offsets(files)
            job = {"files": files, "gap_s": GAP_S, "wait_s": 20}
            acc: dict[str, dict[str, list[Any]]] = {}
            missing: dict[str, int] = {}

            def add(name: str, lat: dict[str, Any]) -> None:
                slot = acc.setdefault(name, {"eos": [], "turns": [], "commit": []})
                slot["eos"] += lat["eos"]
                slot["turns"] += lat.get("turns", [])
                slot["commit"] += lat["commit"]
                missing[name] = missing.get(name, 0) + lat["missing"]

            own: dict[str, tuple[list[float], list[float]]] = {}

            def framework_and_replay(name: str, run: Any, commits: list[float], n0: int) -> None:
                """A committing framework's run (through the tap from session ``n0`` on), then the
                same commits replayed by the reference client through the tap."""
                add(name, final_latencies(run.result, offsets, commits))
                wire = tap.since(n0)
                add(f"{name}-wire", {"eos": [], "commit": commit_to_final(wire), "missing": 0})
                out, back = framework_delays(wire, run["t0"], commits, run["finals"])
                slot = own.setdefault(name, ([], []))
                slot[0].extend(out)
                slot[1].extend(back)
                replay = commits_per_file(run.result["spans"], commits)
                n1 = len(tap.sessions)
                ref = asyncio.run(reference_realtime(tap.url, files, offsets, False, replay))
                add(f"ref-{name}", final_latencies(ref, offsets, ref["commits"]))
                wire = tap.since(n1)
                add(f"ref-{name}-wire", {"eos": [], "commit": commit_to_final(wire), "missing": 0})

            with WireTap(server.url.replace("http://", "ws://", 1)).running() as tap:
                tapped = dataclasses.replace(server, url=tap.url)
                for _ in range(args.rounds):
                    n0 = len(tap.sessions)
                    job_pc = {**job, "stop_secs": STOP_S}
                    run = drive("run_pipecat.py", "realtime-stt", job_pc, tmp, 600, tapped)
                    commits = [v["t"] for v in run["vad"] if v["event"] == "stopped"]
                    framework_and_replay("pipecat", run, commits, n0)
                    run = drive("run_livekit.py", "stream", {**job, "use_realtime": True}, tmp, 600, server)
                    add("livekit", final_latencies(run.result, offsets))
                    n0 = len(tap.sessions)
                    job_lk = {**job, "model": "gpt-realtime-whisper"}
                    run = drive("run_livekit.py", "stream", job_lk, tmp, 600, tapped)
                    commits = [s["t"] for s in run["speech"] if s["event"] == "end_of_speech"]
                    framework_and_replay("livekit-whisper", run, commits, n0)
                    ref = asyncio.run(reference_realtime(server.url, files, offsets, server_vad=True))
                    add("ref-vad", final_latencies(ref, offsets))
                    ref = asyncio.run(reference_realtime(server.url, files, offsets, server_vad=False))
                    add("ref-commit", final_latencies(ref, offsets, ref["commits"]))
            for name, label, ref_name in [
                ("pipecat", f"pipecat OpenAIRealtimeSTTService, Silero stop_secs {STOP_S}", "ref-pipecat"),
                ("pipecat", f"pipecat OpenAIRealtimeSTTService, Silero stop_secs {STOP_S}", "ref-commit"),
                ("livekit", "LiveKit openai.STT(use_realtime=True), server VAD 350 ms", "ref-vad"),
                (
                    "livekit-whisper",
                    "LiveKit openai.STT(model=gpt-realtime-whisper), its VAD",
                    "ref-livekit-whisper",
                ),
                ("livekit-whisper", "LiveKit openai.STT(model=gpt-realtime-whisper), its VAD", "ref-commit"),
            ]:
                if ref_name == f"ref-{name}":  # the committing frameworks: the wire's view first
                    a, r = acc[f"{name}-wire"], acc[f"{ref_name}-wire"]
                    rows.append(
                        (
                            f"{label}: commit → final at the wire (voxserve's part)",
                            ms(a["commit"]),
                            ms(r["commit"]),
                            diff(a["commit"], r["commit"]),
                            f"{ref_name} (tapped)",
                        )
                    )
                    out, back = own[name]
                    rows.append(
                        (
                            f"{label}: its own path, commit decision → wire + wire → final frame",
                            f"{ms(out)} + {ms(back)}",
                            "—",
                            f"{median_ms(out) + median_ms(back):+.0f} ms",
                            "wire tap",
                        )
                    )
                a, r = acc[name], acc[ref_name]
                rows.append(
                    (
                        f"{label}: end of speech → final (missed {missing[name]})",
                        ms(a["eos"]),
                        ms(r["eos"]),
                        f"{diff(a['eos'], r['eos'])} (turn by turn {paired(a['turns'], r['turns'])})",
                        ref_name,
                    )
                )
                if a["commit"]:
                    rows.append(
                        (
                            f"{label}: commit → final",
                            ms(a["commit"]),
                            ms(r["commit"]),
                            diff(a["commit"], r["commit"]),
                            ref_name,
                        )
                    )
        if not args.skip_tts:
            pipecat = framework_tts(server, tmp, "run_pipecat.py", {}, args.rounds)
            pc_body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "response_format": "pcm"}
            rest_pc = asyncio.run(rest_reference(server.url, pc_body, args.rounds))
            ws_alloy = asyncio.run(ws_reference(server.url, "alloy", args.rounds))
            rows.append(
                (
                    "pipecat OpenAITTSService (alloy, pcm): text → first audio",
                    ms(pipecat),
                    ms(rest_pc),
                    diff(pipecat, rest_pc),
                    "REST",
                )
            )
            rows.append(
                (
                    "  … against WS /v1/stream/speak (alloy)",
                    ms(pipecat),
                    ms(ws_alloy),
                    diff(pipecat, ws_alloy),
                    "WS speak",
                )
            )
            lk = framework_tts(server, tmp, "run_livekit.py", {}, args.rounds)
            lk_body = {
                "model": "gpt-4o-mini-tts",
                "voice": "ash",
                "response_format": "mp3",
                "speed": 1.0,
                "stream_format": "sse",
            }
            rest_lk = asyncio.run(rest_reference(server.url, lk_body, args.rounds))
            ws_ash = asyncio.run(ws_reference(server.url, "ash", args.rounds))
            rows.append(
                (
                    "LiveKit openai.TTS.synthesize defaults (ash, mp3, sse)",
                    ms(lk),
                    ms(rest_lk),
                    diff(lk, rest_lk),
                    "REST",
                )
            )
            rows.append(
                ("  … against WS /v1/stream/speak (ash)", ms(lk), ms(ws_ash), diff(lk, ws_ash), "WS speak")
            )
            lk_pcm = framework_tts(server, tmp, "run_livekit.py", {"response_format": "pcm"}, args.rounds)
            rest_lk_pcm = asyncio.run(
                rest_reference(server.url, {**lk_body, "response_format": "pcm"}, args.rounds)
            )
            rows.append(
                (
                    "LiveKit openai.TTS.synthesize (ash, pcm, sse)",
                    ms(lk_pcm),
                    ms(rest_lk_pcm),
                    diff(lk_pcm, rest_lk_pcm),
                    "REST",
                )
            )
    finally:
        stop_server(server)
        print_table(rows)


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    header = "difference of the p50s (median turn-by-turn difference)"
    print(f"\n| path | framework p50 / p90 | reference p50 / p90 | {header} | reference |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
