"""Text-streaming speech benchmark (``WS /v1/stream/speak``): prints README's voice-conversation numbers.

Starts ``voxserve serve`` on a free loopback port (Piper only, 2 workers × 1 thread) and measures:

1. **First LLM token → first audio byte**: an answer's tokens are sent as fast as an LLM could send them
   (a burst of word tokens); the time from sending the first token to receiving the first binary audio
   frame, against the Piper engine called directly in this process for the same first fragment. The
   goal: ≤ engine time + 50 ms. Also with tokens paced at ``--token-ms`` (a real LLM's speed), measured
   from the token that completes the first fragment.
2. **Barge-in**: while an answer's audio streams, a ``cancel`` is sent; the time until the server's
   ``cancelled`` event arrives, and until the last audio frame before it (audio stops when it
   arrives). The goal: ≤ 200 ms.

Usage: python benchmarks/speak_bench.py [--runs 10] [--token-ms 30]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tts_bench import direct_engine_s  # noqa: E402
from tests.e2e.conftest import start_server, stop_server  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

ANSWER = (
    "Sure thing, the weather today looks calm. Expect light winds from the west and a few clouds. "
    "Tomorrow will be warmer, with sunshine in the afternoon."
)
LONG_ANSWER = " ".join(f"This is sentence number {i} of a long and detailed answer." for i in range(40))


def tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def first_fragment() -> str:
    from voxserve.text.normalize import normalize_text
    from voxserve.text.sentences import IncrementalSplitter

    splitter = IncrementalSplitter(60, 300)
    for token in tokens(ANSWER):
        if out := splitter.feed(token):
            return normalize_text(out[0])
    raise AssertionError("no fragment")


def first_audio_s(url: str, token_s: float) -> tuple[float, float]:
    """(from the first token, from the token completing the first fragment) to the first audio frame."""
    from voxserve.text.sentences import IncrementalSplitter

    splitter = IncrementalSplitter(60, 300)
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy", "response_format": "pcm"}))
        json.loads(ws.recv(timeout=30))
        sent: dict[str, float] = {}

        def send_tokens() -> None:
            # Tokens go out from a thread while the main thread reads, as an LLM client would.
            for token in tokens(ANSWER):
                now = time.perf_counter()
                sent.setdefault("first", now)
                ws.send(json.dumps({"type": "text", "text": token}))
                if "complete" not in sent and splitter.feed(token):
                    sent["complete"] = now
                if token_s:
                    time.sleep(token_s)
            ws.send(json.dumps({"type": "end"}))

        sender = threading.Thread(target=send_tokens)
        sender.start()
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                t_audio = time.perf_counter()
                break
        sender.join(30)
        for _ in ws:
            pass
    t_first, t_complete = sent.get("first"), sent.get("complete")
    assert t_first is not None and t_complete is not None
    return t_audio - t_first, t_audio - t_complete


def barge_in_s(url: str) -> tuple[float, float]:
    """(cancel → cancelled event, cancel → last audio frame before it)."""
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy", "response_format": "pcm"}))
        json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"type": "text", "text": LONG_ANSWER}))
        frames = 0
        while frames < 3:
            if isinstance(ws.recv(timeout=30), bytes):
                frames += 1
        t_cancel = time.perf_counter()
        ws.send(json.dumps({"type": "cancel"}))
        last_audio = t_cancel
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                last_audio = time.perf_counter()
            elif json.loads(message)["type"] == "cancelled":
                t_done = time.perf_counter()
                break
        ws.send(json.dumps({"type": "end"}))
        for _ in ws:
            pass
    return t_done - t_cancel, last_audio - t_cancel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--token-ms", type=float, default=30.0)
    args = parser.parse_args()

    fragment = first_fragment()
    engine_s = direct_engine_s(fragment, args.runs)
    tmp = Path(tempfile.mkdtemp(prefix="voxserve-bench-"))
    server = start_server(
        tmp,
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "2",
            "VOXSERVE_THREADS_PER_WORKER": "1",
            "VOXSERVE_STT_WORKERS": "1",
            "VOXSERVE_LOG_LEVEL": "warning",
        },
    )
    url = server.url.replace("http://", "ws://") + "/v1/stream/speak"
    try:
        for _ in range(3):  # warm both workers
            first_audio_s(url, 0.0)
        burst = [first_audio_s(url, 0.0)[0] for _ in range(args.runs)]
        paced = [first_audio_s(url, args.token_ms / 1000)[1] for _ in range(args.runs)]
        barge = [barge_in_s(url) for _ in range(args.runs)]
    finally:
        stop_server(server)

    burst_s = statistics.median(burst)
    paced_s = statistics.median(paced)
    print(f"first fragment: {fragment!r}")
    print(f"Piper direct, first fragment (median of {args.runs}): {engine_s * 1000:.0f} ms")
    print(
        f"first LLM token -> first audio byte, tokens in a burst (median): {burst_s * 1000:.0f} ms "
        f"= engine + {(burst_s - engine_s) * 1000:.0f} ms (goal: <= engine + 50 ms)"
    )
    print(
        f"tokens every {args.token_ms:.0f} ms: fragment-completing token -> first audio byte (median): "
        f"{paced_s * 1000:.0f} ms = engine + {(paced_s - engine_s) * 1000:.0f} ms"
    )
    to_event = sorted(b[0] for b in barge)
    to_audio = sorted(b[1] for b in barge)
    print(
        f"barge-in: cancel -> cancelled event p50 {statistics.median(to_event) * 1000:.1f} ms, "
        f"max {to_event[-1] * 1000:.1f} ms; cancel -> last audio frame p50 "
        f"{statistics.median(to_audio) * 1000:.1f} ms, max {to_audio[-1] * 1000:.1f} ms (goal: <= 200 ms)"
    )


if __name__ == "__main__":
    main()
