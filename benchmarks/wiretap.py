"""A WebSocket relay that notes when Realtime commits and transcripts pass it (agents_bench).

A framework's commit → final time holds two parts: what voxserve takes (commit received → transcript
sent) and what the framework's own path adds (its VAD's decision → commit on the wire, transcript on
the wire → its transcript frame). Side by side with a reference client the two are hard to separate,
because one decode differs from the next by hundreds of milliseconds. A relay between the framework
and the server sees both sides: ``time.monotonic()`` is one clock for every process on Linux, and the
drivers report their ``t0`` on it, so the framework's times and the wire's can be subtracted.

The relay runs its own event loop in a thread (the drivers are subprocesses the caller waits for) and
forwards every message unchanged, both ways.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.server import ServerConnection

COMPLETED = "conversation.item.input_audio_transcription.completed"


@dataclass
class Wire:
    """One relayed session: when each commit and each transcript passed (``time.monotonic()``)."""

    commits: list[float] = field(default_factory=list)
    finals: list[tuple[float, str]] = field(default_factory=list)


class WireTap:
    """Relay ``ws://127.0.0.1:PORT/...`` to ``upstream`` (``ws://host:port``), noting each session."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.sessions: list[Wire] = []
        self.url = ""  # http://127.0.0.1:PORT once started: what the drivers take as base_url

    async def _relay(self, client: ServerConnection) -> None:
        wire = Wire()
        self.sessions.append(wire)
        async with websockets.connect(self.upstream + client.request.path, max_size=2**24) as server:

            async def up() -> None:
                async for message in client:
                    if isinstance(message, str) and '"input_audio_buffer.commit"' in message:
                        wire.commits.append(time.monotonic())
                    await server.send(message)
                await server.close()

            async def down() -> None:
                async for message in server:
                    now = time.monotonic()
                    if isinstance(message, str) and COMPLETED in message:
                        event = json.loads(message)
                        if event.get("type") == COMPLETED:
                            wire.finals.append((now, event.get("transcript", "")))
                    await client.send(message)
                await client.close()

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await task

    @contextmanager
    def running(self) -> Iterator[WireTap]:
        """Serve on a free loopback port in a thread of its own until the block ends."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop = asyncio.Event()

        async def serve() -> None:
            async with websockets.serve(self._relay, "127.0.0.1", 0, max_size=2**24) as server:
                port = next(iter(server.sockets)).getsockname()[1]
                self.url = f"http://127.0.0.1:{port}"
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the wire tap did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()

    def since(self, n: int) -> Wire:
        """The sessions from the ``n``-th on, as one (a framework may reconnect)."""
        out = Wire()
        for wire in self.sessions[n:]:
            out.commits += wire.commits
            out.finals += wire.finals
        return out


def commit_to_final(wire: Wire) -> list[float]:
    """Per transcript, seconds from the last commit before it (transcripts with no commit since the
    previous one are skipped: they answer server VAD turns)."""
    out, last = [], None
    events = sorted([(t, "c") for t in wire.commits] + [(t, "f") for t, _ in wire.finals])
    for t, kind in events:
        if kind == "c":
            last = t
        elif last is not None:
            out.append(t - last)
            last = None
    return out


def framework_delays(
    wire: Wire, t0: float, commits: list[float], finals: list[dict[str, object]]
) -> tuple[list[float], list[float]]:
    """What the framework's own path takes, from its times (seconds since ``t0``) and the wire's.

    Out: each commit decision (``commits``) → the next commit on the wire. In: each transcript on the
    wire → the framework's final with the same text. (pipecat notes its VAD event after its STT
    service has sent the commit, so "out" can be slightly negative there.)"""
    out: list[float] = []
    for c in commits:
        at = t0 + c
        near = [w - at for w in wire.commits if -0.2 <= w - at <= 1.0]
        if near:
            out.append(min(near, key=abs))
    taken: set[int] = set()
    back: list[float] = []
    for f in finals:
        at = t0 + float(f["t"])  # type: ignore[arg-type]
        text = str(f["text"]).strip()
        for i, (w, wire_text) in enumerate(wire.finals):
            if i not in taken and wire_text.strip() == text and 0 <= at - w <= 5.0:
                taken.add(i)
                back.append(at - w)
                break
    return out, back
