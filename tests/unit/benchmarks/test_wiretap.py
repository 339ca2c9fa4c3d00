"""benchmarks/wiretap.py: the relay forwards a Realtime session both ways and notes commits and
transcripts; the framework's own delays come from its times and the wire's."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from benchmarks.wiretap import COMPLETED, Wire, WireTap, commit_to_final, framework_delays
from websockets.asyncio.server import ServerConnection
from websockets.sync.client import connect


def test_commit_to_final_pairs_each_transcript_with_the_commit_before_it() -> None:
    wire = Wire(commits=[1.0, 3.0, 3.5], finals=[(1.4, "one"), (2.0, "server vad"), (4.0, "two")])
    # "server vad" has no commit since "one": skipped; "two" counts from the last commit (3.5).
    assert commit_to_final(wire) == pytest.approx([0.4, 0.5])


def test_framework_delays_match_commits_by_time_and_finals_by_text() -> None:
    wire = Wire(commits=[10.05, 12.0], finals=[(10.5, "Hello."), (12.6, "Again.")])
    out, back = framework_delays(
        wire,
        t0=9.0,
        commits=[1.0, 3.0, 7.0],  # 10.0 → 10.05 on the wire; 12.0 → 12.0; 16.0 never sent
        finals=[{"t": 1.51, "text": "Hello."}, {"t": 3.62, "text": " Again."}, {"t": 5.0, "text": "x"}],
    )
    assert out == pytest.approx([0.05, 0.0])
    assert back == pytest.approx([0.01, 0.02])


async def test_the_relay_forwards_both_ways_and_notes_the_session() -> None:
    seen: list[str] = []

    async def upstream(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.path)
        async for message in ws:
            if json.loads(message)["type"] == "input_audio_buffer.commit":
                await ws.send(json.dumps({"type": COMPLETED, "transcript": "hi"}))

    async with websockets.serve(upstream, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        tap = WireTap(f"ws://127.0.0.1:{port}")

        def session() -> None:
            with tap.running():
                url = tap.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
                with connect(url) as ws:
                    ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": ""}))
                    ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                    assert json.loads(ws.recv(timeout=10))["transcript"] == "hi"

        before = time.monotonic()
        await asyncio.to_thread(session)
    assert seen == ["/v1/realtime?intent=transcription"]
    wire = tap.since(0)
    assert len(wire.commits) == 1 and wire.commits[0] >= before
    assert [text for _, text in wire.finals] == ["hi"]
    assert wire.finals[0][0] >= wire.commits[0]
