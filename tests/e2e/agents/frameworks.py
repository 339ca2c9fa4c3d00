"""Run the framework drivers (run_pipecat.py, run_livekit.py) and judge what they saw.

pipecat and LiveKit Agents pin packages that clash with voxserve's pins (pipecat-ai 1.14.0 wants
``soxr~=1.0.0`` and ``protobuf<7``), so they live in ``.venv-agents`` (scripts/setup makes it from
tests/e2e/agents/requirements.txt) and run in a subprocess with that venv's python.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.agents.agent_io import write_wav
from tests.e2e.conftest import Server
from tests.speech_dev import Utterance
from tests.timing import scaled
from tests.wer import errors

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
AGENTS_VENV = ROOT / ".venv-agents"
AGENTS_PYTHON = AGENTS_VENV / "bin" / "python"
_runs = itertools.count()


@dataclass
class Run:
    """What a driver reported, with its log (stdout and stderr: the framework's own logging)."""

    result: dict[str, Any]
    returncode: int
    log: str

    def __getitem__(self, key: str) -> Any:
        return self.result[key]

    def explain(self) -> str:
        """For assertion messages: the result and the end of the framework's log."""
        return f"result: {json.dumps(self.result)[:4000]}\n--- driver log (tail) ---\n{self.log[-6000:]}"


def drive(script: str, command: str, job: dict[str, Any], tmp: Path, timeout: float, server: Server) -> Run:
    """Run ``script command`` with ``job`` (plus the server's base URL) in ``.venv-agents``.

    ``timeout`` is nominal seconds (scaled); the driver's own waits are in ``job`` (scale them)."""
    if not AGENTS_PYTHON.exists():
        pytest.fail(f"{AGENTS_PYTHON} is missing: run scripts/setup (it installs the framework venv)")
    n = next(_runs)
    job_path = tmp / f"{Path(script).stem}-{command}-{n}.json"
    result_path = tmp / f"{Path(script).stem}-{command}-{n}.result.json"
    job_path.write_text(json.dumps({"base_url": server.url, **job}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}  # the frameworks' loops
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", LOGURU_LEVEL="DEBUG")
    try:
        proc = subprocess.run(
            [str(AGENTS_PYTHON), str(HERE / script), command, str(job_path), str(result_path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE,
            timeout=scaled(timeout),
        )
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        code, log = -9, f"timed out after {scaled(timeout):g} s\n{out}{err}"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    run = Run(result, code, log)
    assert code == 0, f"{script} {command} exited with {code}\n{run.explain()}"
    return run


# Three speakers, short to long, played one after another with a pause between, as turns are: what
# both frameworks' Realtime STT tests hear.
UTTERANCES = ["speech_recognition_english_123.wav", "pocketsphinx_cards_005.wav", "fleurs_en_007.wav"]
GAP_S = 2.5
"""A pause between turns: longer than any turn detection's silence (stop_secs, server VAD) plus the
time a final takes on an idle machine."""


def per_utterance(run: Run, items: list[Utterance]) -> list[str]:
    """The finals of each played file: a final belongs to the last file that had started playing
    when it arrived (files are separated by a pause longer than the turn detection's silence)."""
    spans = run["spans"]
    texts: list[list[str]] = [[] for _ in items]
    for final in run["finals"]:
        started = [i for i, (start, _end) in enumerate(spans) if start <= final["t"]]
        if started:
            texts[started[-1]].append(final["text"])
    return [" ".join(t) for t in texts]


def assert_each_transcribed(run: Run, items: list[Utterance], max_wer: float) -> None:
    """Every played file got a final with most of its words (none lost), and the corpus WER of them
    all is at most ``max_wer``. Per file, a 9-word turn with 3 errors is tiny.en on its own (the
    previous turn's "1. 2. 3." in the prompt makes "eight of spades" "8. 8. 4."), not a lost turn."""
    got = per_utterance(run, items)
    counts = [errors(u.text, text) for u, text in zip(items, got, strict=True)]
    report = "\n".join(
        f"  {u.path.name}: {c} errors/words, got {text!r}, expected {u.text!r}"
        for u, text, c in zip(items, got, counts, strict=True)
    )
    for u, text, (e, n) in zip(items, got, counts, strict=True):
        assert text and e <= max(1, n // 2), f"{u.path.name} lost:\n{report}\n{run.explain()}"
    total = sum(e for e, _ in counts) / max(1, sum(n for _, n in counts))
    assert total <= max_wer, f"corpus WER {total:.3f} > {max_wer}:\n{report}\n{run.explain()}"


def assert_no_errors(run: Run) -> None:
    assert run["errors"] == [], f"error events/errors seen by the framework\n{run.explain()}"


def transcribe_pcm(server: Server, pcm: bytes, rate: int, tmp: Path) -> str:
    """What voxserve's own REST transcription hears in s16le ``pcm`` taken to be at ``rate``."""
    path = tmp / f"tts-{next(_runs)}.wav"
    write_wav(path, pcm, rate)
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "language": "en"},
        files={"file": (path.name, path.read_bytes(), "audio/wav")},
        timeout=scaled(120),
    )
    r.raise_for_status()
    text: str = r.json()["text"]
    return text


def server_wav_seconds(server: Server, text: str, voice: str, model: str) -> float:
    """How long the server's own WAV of ``text`` is (its header names the true rate)."""
    import io
    import wave

    r = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={"model": model, "voice": voice, "input": text, "response_format": "wav"},
        timeout=scaled(120),
    )
    r.raise_for_status()
    with wave.open(io.BytesIO(r.content)) as w:
        bytes_per_second = w.getframerate() * w.getnchannels() * w.getsampwidth()
    # A streamed WAV's header cannot know the length (its sizes are placeholders): count the bytes.
    data = r.content.index(b"data") + 8
    return (len(r.content) - data) / bytes_per_second
