"""``voxserve serve`` with the default engines starts only what the defaults need: Piper and the
default Whisper model. espeak and Kokoro start on the first request that names one of their voices
(the embedded LLM on the first chat), and that request is served; ``/ready`` lists them by state
and never waits for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server


def children(pid: int) -> list[int]:
    # Workers are spawned from helper threads: their parent is the server process, listed per thread.
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]


@pytest.fixture(scope="module")
def lazy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("lazy"),
        env={"VOXSERVE_WORKERS_PER_ENGINE": "1", "VOXSERVE_STT_WORKERS": "1", "VOXSERVE_UI_ENABLED": "false"},
    )
    try:
        yield server
    finally:
        stop_server(server)


def test_only_the_default_engines_start_and_a_lazy_one_starts_on_first_use(lazy_server: Server) -> None:
    url = lazy_server.url
    ready = httpx.get(f"{url}/ready", timeout=10)
    assert ready.status_code == 200
    body = ready.json()
    lazy = dict.fromkeys(["espeak", "kokoro", "whisper/base", "llm"], "not_started")
    assert body["lazy"] == lazy
    workers = [p for e in body["engines"].values() for p in e["pids"]]
    assert len(workers) == 2  # one Piper worker, one tiny.en worker
    # Besides the workers, only multiprocessing's resource tracker.
    assert set(workers) <= set(children(lazy_server.process.pid))
    assert len(children(lazy_server.process.pid)) == 3

    r = httpx.post(
        f"{url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "input": "Started on first use.",
            "voice": "espeak/en-us",
            "response_format": "wav",
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.content[:4] == b"RIFF" and len(r.content) > 10_000

    body = httpx.get(f"{url}/ready", timeout=10).json()
    assert body["status"] == "ready"
    assert body["lazy"] == lazy | {"espeak": "ready"}
    assert body["engines"]["espeak"]["start_s"] > 0
    assert "espeak: started on first use in" in lazy_server.log_text()
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'voxserve_engine_start_seconds{engine="espeak",trigger="first_use"}' in metrics
    assert len(children(lazy_server.process.pid)) == 4
