"""The embedded language model: answer quality, speed, and the voice-chat turn it gives.

Starts ``voxserve serve`` with no LLM settings (the embedded model answers) on a free loopback port,
and measures, on the 20 voice-assistant questions of ``benchmarks/llm_questions.json``:

1. the engine on every core, in this process (llama.cpp, as many threads as cores): first token p50
   and tokens/s p50: the ceiling the server is compared with;
2. ``POST /v1/chat/completions`` (streamed, the official ``openai`` client): answer quality (an answer
   is correct when it holds one of the question's key words, as a whole word), first token p50/p90,
   tokens/s p50, each with its ratio to the engine, and the server's event-loop lag p99 while it
   generates;
3. a client that hangs up mid-answer: how much later than on an idle model the next request is
   answered (the time the abandoned generation kept the worker);
4. the voice-chat turn (``WS /v1/stream/chat``): a spoken question (the server's default voice
   speaking it, resampled to 16 kHz) streamed in real time, from the end of its speech to the first
   audio of the answer, p50/p90.

The answers go to ``--answers`` (JSON) for reading. No peer: no other speech server embeds an LLM;
``llama_cpp`` called directly is the reference.

Usage: python benchmarks/llm_bench.py [--rounds 3] [--turns 6] [--answers /tmp/llm_answers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.looplag import lag_buckets, lag_p99  # noqa: E402
from benchmarks.stt_bench import pct  # noqa: E402
from tests.e2e.conftest import Server, start_server, stop_server  # noqa: E402

QUESTIONS = Path(__file__).with_name("llm_questions.json")
SYSTEM = "You are a helpful voice assistant. Answer briefly, in plain spoken sentences without markdown."
"""The server's default ``llm_system_prompt``: what the voice chat sends."""
MAX_TOKENS = 64


def correct(answer: str, keys: list[str]) -> bool:
    text = answer.lower()
    return any(re.search(rf"(?<![a-z0-9]){re.escape(k)}(?![a-z0-9])", text) for k in keys)


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def engine_direct(questions: list[dict[str, Any]], rounds: int) -> tuple[list[float], list[float]]:
    """First-token times and tokens/s of llama.cpp on every core, in this process."""
    from voxserve.engines.base import ChatTurn, GenerateEnd, GenerateOptions
    from voxserve.engines.llama import LlamaEngine

    engine = LlamaEngine(threads=os.cpu_count() or 1)
    engine.warm_up()
    firsts: list[float] = []
    rates: list[float] = []
    for _ in range(rounds):
        for q in questions:
            turns = [ChatTurn("system", SYSTEM), ChatTurn("user", q["q"])]
            t0 = time.perf_counter()
            _, items = engine.generate(turns, GenerateOptions(max_tokens=MAX_TOKENS, temperature=0.0))
            first = None
            for item in items:
                if first is None:
                    first = time.perf_counter() - t0
                if isinstance(item, GenerateEnd) and item.completion_tokens > 1 and first is not None:
                    rates.append((item.completion_tokens - 1) / (time.perf_counter() - t0 - first))
            firsts.append(first or float("nan"))
    return firsts, rates


def openai_client(server: Server) -> tuple[Any, str]:
    """The official client on ``server``, and the embedded model's id (which it must list)."""
    import openai

    from voxserve.config import EMBEDDED_LLM_MODEL

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=120, max_retries=0)
    if EMBEDDED_LLM_MODEL not in {m.id for m in client.models.list()}:
        raise RuntimeError(f"the server does not serve {EMBEDDED_LLM_MODEL}: is the llm extra installed?")
    return client, EMBEDDED_LLM_MODEL


def server_answers(
    server: Server, questions: list[dict[str, Any]], rounds: int
) -> tuple[list[float], list[float], float, list[dict[str, Any]]]:
    """First-token times, tokens/s, loop-lag p99 and the answers, through the official client."""
    client, model = openai_client(server)
    client.chat.completions.create(model=model, messages=messages("Hi"), max_tokens=2)  # type: ignore[arg-type]
    firsts: list[float] = []
    rates: list[float] = []
    answers: list[dict[str, Any]] = []
    before = lag_buckets(server.url)
    for _ in range(rounds):
        for q in questions:
            t0 = time.perf_counter()
            stream = client.chat.completions.create(
                model=model,
                messages=messages(q["q"]),  # type: ignore[arg-type]
                max_tokens=MAX_TOKENS,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            first = None
            parts: list[str] = []
            tokens = 0
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter() - t0
                    parts.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
            end = time.perf_counter() - t0
            firsts.append(first or float("nan"))
            if tokens > 1 and first is not None:
                rates.append((tokens - 1) / (end - first))
            text = "".join(parts)
            answers.append({"q": q["q"], "answer": text, "correct": correct(text, q["keys"])})
    return firsts, rates, lag_p99(before, lag_buckets(server.url)), answers


def hang_up_delays(server: Server, runs: int) -> list[float]:
    """How long a hung-up answer keeps the model busy: a long streamed answer is abandoned after 10
    tokens, and a one-token request sent at once gets its answer this much later than one sent to an
    idle model (one worker: it waits until the abandoned generation has stopped)."""
    client, model = openai_client(server)
    short = {"model": model, "messages": messages("Say yes."), "max_tokens": 1, "temperature": 0}

    def one_token() -> float:
        t0 = time.perf_counter()
        client.chat.completions.create(**short)
        return time.perf_counter() - t0

    idle = statistics.median([one_token() for _ in range(5)])
    delays: list[float] = []
    for _ in range(runs):
        stream = client.chat.completions.create(
            model=model,
            messages=messages("Tell me a very long story about the sea."),  # type: ignore[arg-type]
            max_tokens=1000,
            temperature=1.0,
            stream=True,
        )
        for i, _chunk in enumerate(stream):
            if i == 10:
                break
        stream.close()
        delays.append(one_token() - idle)
    return delays


def spoken(server: Server, text: str) -> bytes:
    """``text`` in the server's default voice, as 16 kHz s16le PCM (what a microphone would send)."""
    import soxr

    r = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"},
        timeout=60,
    )
    r.raise_for_status()
    rate = int(r.headers["X-Audio-Sample-Rate"])
    audio = np.frombuffer(r.content, np.int16).astype(np.float32) / 32768
    audio16 = soxr.resample(audio, rate, 16000)
    return (np.clip(audio16, -1, 1) * 32767).astype(np.int16).tobytes()


def chat_turn(server: Server, pcm: bytes) -> float:
    """Seconds from the end of the spoken question (its last frame sent, in real time) to the first
    audio of the answer."""
    from websockets.sync.client import connect

    frame = 640  # 20 ms at 16 kHz, s16le
    config = {"type": "config", "sample_rate_hz": 16000, "encoding": "linear16", "voice": "alloy"}
    with connect(server.url.replace("http://", "ws://") + "/v1/stream/chat") as ws:
        ws.send(json.dumps(config))
        while True:  # until ready
            message = ws.recv(timeout=60)
            if isinstance(message, str) and json.loads(message)["type"] == "ready":
                break
        start = time.monotonic()
        silence = b"\x00" * frame
        for i, offset in enumerate(range(0, len(pcm), frame)):
            ws.send(pcm[offset : offset + frame])
            pause = start + (i + 1) * 0.02 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        end_of_speech = time.monotonic()
        deadline = end_of_speech + 60
        sent = 0
        while time.monotonic() < deadline:
            # Silence keeps flowing, as from a live microphone, until the answer's audio arrives.
            if time.monotonic() >= end_of_speech + sent * 0.02:
                ws.send(silence)
                sent += 1
            try:
                message = ws.recv(timeout=0.005)
            except TimeoutError:
                continue
            if isinstance(message, bytes) and message:
                return time.monotonic() - end_of_speech
            if isinstance(message, str) and json.loads(message)["type"] == "error":
                raise RuntimeError(message)
        raise TimeoutError("no answer audio within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=6, help="spoken questions per round for the chat turn")
    parser.add_argument("--answers", type=Path, default=Path(tempfile.gettempdir()) / "llm_answers.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    questions = json.loads(QUESTIONS.read_text())
    e_first, e_rate = engine_direct(questions, args.rounds)
    server = start_server(
        Path(tempfile.mkdtemp(prefix="voxserve-llm-")),
        env={"VOXSERVE_UI_ENABLED": "false", "VOXSERVE_ENGINES": '["piper"]'},
    )
    try:
        s_first, s_rate, lag, answers = server_answers(server, questions, args.rounds)
        hang_ups = hang_up_delays(server, 5 * args.rounds)
        turns: list[float] = []
        audio = [spoken(server, q["q"]) for q in questions[: args.turns]]
        chat_turn(server, audio[0])  # the first chat starts the chat's pieces; not counted
        for _ in range(args.rounds):
            turns += [chat_turn(server, pcm) for pcm in audio]
    finally:
        stop_server(server)
    args.answers.write_text(json.dumps(answers, indent=1))
    right = sum(a["correct"] for a in answers[: len(questions)])
    e50, s50 = statistics.median(e_first), statistics.median(s_first)
    er, sr = statistics.median(e_rate), statistics.median(s_rate)
    rows = [
        ("answer quality (correct of the 20 questions, greedy)", f"{right} / {len(questions)}"),
        ("engine on every core: first token p50 / tokens/s p50", f"{e50 * 1000:.0f} ms / {er:.0f}"),
        ("server: first token p50 / p90", f"{s50 * 1000:.0f} / {pct(s_first, 0.9) * 1000:.0f} ms"),
        ("server: first token p50, ÷ engine", f"{s50 / e50:.2f}"),
        ("server: tokens/s p50 (÷ engine)", f"{sr:.0f} ({sr / er:.2f})"),
        ("server: event-loop lag p99 while generating", f"≤ {lag * 1000:.0f} ms"),
        (
            f"client hangs up mid-answer → model free, p50 / max ({len(hang_ups)} runs)",
            f"{statistics.median(hang_ups) * 1000:.0f} / {max(hang_ups) * 1000:.0f} ms",
        ),
        (
            f"voice chat: end of speech → first answer audio, p50 / p90 ({len(turns)} turns)",
            f"{statistics.median(turns):.2f} / {pct(turns, 0.9):.2f} s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"answers: {args.answers}")


if __name__ == "__main__":
    main()
