"""Over-capacity benchmark: how fast the server refuses work it has no room for.

Starts ``voxserve serve`` on a free loopback port with one Piper worker, ``max_queued_requests=1`` and
``max_stt_sessions=1`` (and the other streaming caps at 1), fills that capacity, then measures over
``--runs`` tries: the time to a ``503 at_capacity`` for ``POST /v1/audio/speech``, and the time from
opening each WebSocket route to its 1013 close (handshake included). The goal: ≤ 100 ms, never a
queue without bound.

Usage: python benchmarks/load_bench.py [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.conftest import start_server, stop_server  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

LONG = " ".join(f"Sentence {i} keeps the worker busy for a while longer." for i in range(60))
ROUTES = {
    "/v1/stream/transcribe": json.dumps({"type": "config"}),
    "/v1/stream/speak": json.dumps({"type": "config"}),
    "/v1/realtime?intent=transcription": None,
}


def refusal_ms(fn: object, runs: int, precondition: object = None) -> list[float]:
    times = []
    for _ in range(runs):
        if precondition is not None:
            precondition()  # type: ignore[operator]
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    server = start_server(
        Path(tempfile.mkdtemp()),
        env={
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_WORKERS_PER_ENGINE": "1",
            "VOXSERVE_MAX_QUEUED_REQUESTS": "1",
            "VOXSERVE_QUEUE_TIMEOUT_S": "60",
            # The busy request below asks for more speech than the default max_speech_s (600 s)
            # allows: it must be served, not refused with 413 speech_too_long.
            "VOXSERVE_MAX_SPEECH_S": "7200",
            "VOXSERVE_MAX_STT_SESSIONS": "1",
            "VOXSERVE_MAX_SPEAK_SESSIONS": "1",
            "VOXSERVE_UI_ENABLED": "false",
        },
    )
    url = server.url
    ws_url = url.replace("http://", "ws://")
    # Speed 0.25: four times the audio, so the busy job outlasts what the sockets' buffers can absorb.
    body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm", "speed": 0.25}
    results: dict[str, list[float]] = {}
    try:
        # Fill each streaming cap (transcribe and realtime share max_stt_sessions), then time the
        # refusals.
        holders = contextlib.ExitStack()
        for route, config in list(ROUTES.items())[:2]:
            ws = holders.enter_context(connect(ws_url + route))
            if config:
                ws.send(config)
            ws.recv(timeout=30)

        with (
            httpx.Client(timeout=120) as c,
            httpx.Client(base_url=url, timeout=10) as refuser,
            c.stream("POST", f"{url}/v1/audio/speech", json=body) as busy,
        ):
            if busy.status_code != 200:
                raise RuntimeError(f"the busy request was refused: {busy.status_code} {busy.read()!r}")
            chunks = busy.iter_raw()  # kept: a dropped iterator closes the response (a disconnect)
            next(chunks)  # the only worker is busy

            def wait_in_queue() -> None:
                with contextlib.suppress(httpx.HTTPError):  # the server stops before it is served
                    httpx.post(f"{url}/v1/audio/speech", json=body, timeout=120)

            waiter = threading.Thread(target=wait_in_queue, daemon=True)
            waiter.start()
            for _ in range(200):
                if httpx.get(f"{url}/ready").json()["engines"]["piper"]["queued"] == 1:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"the second request never queued: {httpx.get(f'{url}/ready').json()}")

            def still_full() -> None:
                piper = httpx.get(f"{url}/ready").json()["engines"]["piper"]
                assert piper["busy"] == 1 and piper["queued"] == 1, piper

            def refused_http() -> None:
                # One client for all tries: a new httpx client costs tens of ms (its SSL context).
                r = refuser.post("/v1/audio/speech", json=body | {"input": "One too many."})
                assert r.status_code == 503, r.status_code

            results["POST /v1/audio/speech -> 503"] = refusal_ms(refused_http, args.runs, still_full)
            for route in ROUTES:

                def refused_ws(route: str = route) -> None:
                    with connect(ws_url + route) as ws:
                        try:
                            ws.recv(timeout=10)
                            ws.recv(timeout=10)
                        except ConnectionClosed:
                            pass
                        assert ws.close_code == 1013, ws.close_code

                results[f"WS {route.split('?')[0]} -> 1013"] = refusal_ms(refused_ws, args.runs)
            holders.close()
    finally:
        stop_server(server)
    print(f"time to refuse over-capacity work ({args.runs} tries each; goal <= 100 ms):")
    for name, times in results.items():
        print(f"  {name}: p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms")


if __name__ == "__main__":
    main()
