"""Speech jobs end to end (corpus K12): a real server, real engines, texts longer than max_input_chars.

K12: "book-length text → audio stops near 12 m 45 s or skips chunks"; voxserve must have a documented
maximum plus a long-form job path, never silent truncation. The espeak voice is used where the whole
job must run (it is fast and deterministic: a job's audio lasts exactly as long as its paragraphs
spoken one by one, so a skipped section shows), Piper where a job must still be running.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server
from tests.timing import until

from voxserve.client import Client

pytestmark = pytest.mark.e2e

JOBS = "/v1/audio/speech/jobs"
MAX_JOB_CHARS = 20_000
ENV = {
    "VOXSERVE_ENGINES": '["piper","espeak"]',
    "VOXSERVE_PRELOAD_ENGINES": '["piper","espeak"]',
    "VOXSERVE_STT_MODELS": '["tiny.en"]',
    "VOXSERVE_STT_WORKERS": "1",
    # One worker per engine: a live request and a job share it, section by section.
    "VOXSERVE_WORKERS_PER_ENGINE": "1",
    "VOXSERVE_UI_ENABLED": "false",
    "VOXSERVE_MAX_JOBS": "2",
    "VOXSERVE_MAX_JOB_CHARS": str(MAX_JOB_CHARS),
    "VOXSERVE_JOB_BATCH_CHARS": "400",
}


def paragraphs(count: int) -> list[str]:
    return [
        f"Paragraph number {i + 1} begins here. The quick brown fox jumps over the lazy dog near the "
        "river bank. Every morning the baker opens the shop early, and the whole street smells of warm "
        "bread. Children walk past on their way to school, talking about games and the weekend."
        for i in range(count)
    ]


PARAGRAPHS = 50
TEXT = "\n\n".join(paragraphs(PARAGRAPHS))  # about 13 500 characters: over 13 minutes of speech


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("jobs-server")
    jobs_dir = tmp / "jobs"
    srv = start_server(tmp, env={**ENV, "VOXSERVE_JOBS_DIR": str(jobs_dir)})
    try:
        yield srv, jobs_dir
    finally:
        stop_server(srv)


@pytest.fixture
def http(jobs_server: tuple[Server, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=jobs_server[0].url, timeout=60) as c:
        yield c


def job_body(text: str, voice: str = "espeak/en-us", **extra: Any) -> dict[str, Any]:
    return {"model": "tts-1", "voice": voice, "input": text, "response_format": "wav", **extra}


def poll(http: httpx.Client, job_id: str, state: Any, timeout_s: float = 60) -> dict[str, Any]:
    """The job's state once ``state(job)`` holds (polled with a deadline)."""

    def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = http.get(f"{JOBS}/{job_id}").json()
        return job if state(job) else None

    return until(reached, timeout_s, message=lambda: f"job {job_id} reaches the state")


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


def test_a_long_text_becomes_one_complete_file(jobs_server: tuple[Server, Path], http: httpx.Client) -> None:
    server, jobs_dir = jobs_server
    assert len(TEXT) > 4096
    too_long = http.post("/v1/audio/speech", json=job_body(TEXT))
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "text_too_long"

    with Client(server.url, timeout=60) as client:
        job = client.create_speech_job(TEXT, voice="espeak/en-us", response_format="wav")
        assert job["status"] in ("queued", "running") and job["input_chars"] == len(TEXT)
        done = client.wait_speech_job(job["id"], max_wait_s=60, poll_interval_s=0.1)
        audio = client.speech_job_audio(job["id"])
        assert client.download_speech_job(job["id"], jobs_dir.parent / "copy.wav") == len(audio)
    assert done["chars_done"] == done["input_chars"] == len(TEXT)
    assert (jobs_dir / f"{job['id']}.wav").stat().st_size == len(audio) == done["bytes"]

    # Exact container sizes, and the whole text: the paragraphs spoken one by one (through the
    # real-time route) last exactly as long, so a skipped or repeated section would show.
    assert int.from_bytes(audio[40:44], "little") == len(audio) - 44
    seconds = wav_seconds(audio)
    assert done["audio_seconds"] == pytest.approx(seconds, abs=0.01)
    reference = sum(
        wav_seconds(http.post("/v1/audio/speech", json=job_body(p, stream=False)).content)
        for p in paragraphs(PARAGRAPHS)
    )
    assert seconds == pytest.approx(reference, rel=0.005)
    assert 12 * 60 + 45 < seconds < 20 * 60  # past where K12's audio stopped

    r = http.get(f"{JOBS}/{job['id']}/audio")
    assert r.headers["content-type"] == "audio/wav"
    assert int(r.headers["content-length"]) == len(audio)
    assert r.headers["content-disposition"] == f'attachment; filename="{job["id"]}.wav"'
    assert job["id"] in [j["id"] for j in http.get(JOBS).json()["data"]]
    assert http.delete(f"{JOBS}/{job['id']}").json()["deleted"] is True
    assert not (jobs_dir / f"{job['id']}.wav").exists()


def test_running_job_progress_live_requests_limits_and_cancel(
    jobs_server: tuple[Server, Path], http: httpx.Client
) -> None:
    _, jobs_dir = jobs_server
    r = http.post(JOBS, json=job_body(TEXT, voice="alloy", response_format="mp3"))  # Piper: minutes
    assert r.status_code == 202, r.text
    job = r.json()
    early = http.get(f"{JOBS}/{job['id']}/audio")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_finished"

    first = poll(http, job["id"], lambda j: j["chars_done"] > 0)
    later = poll(http, job["id"], lambda j: j["chars_done"] > first["chars_done"])
    assert later["status"] == "running" and later["audio_seconds"] > 0 and later["chars_done"] < len(TEXT)

    # A live request on the same (single) Piper worker is served between two sections: while the job
    # still runs, not after it.
    live = http.post("/v1/audio/speech", json=job_body("A live request while a job runs.", voice="alloy"))
    assert live.status_code == 200 and wav_seconds_streamed(live.content) > 1.0
    assert http.get(f"{JOBS}/{job['id']}").json()["status"] == "running"

    # max_jobs (2) counts queued and running jobs; one job runs at a time.
    queued = http.post(JOBS, json=job_body("A short job waits for its turn."))
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    refused = http.post(JOBS, json=job_body("One job too many."))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_jobs"
    assert "retry-after" in refused.headers

    spool = jobs_dir / f"{job['id']}.mp3.part"  # the audio so far, as PCM until the job is finished
    assert spool.exists()
    cancelled = http.delete(f"{JOBS}/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert not spool.exists() and not (jobs_dir / f"{job['id']}.mp3").exists()
    gone = http.get(f"{JOBS}/{job['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_job"

    nxt = poll(http, queued.json()["id"], lambda j: j["status"] not in ("queued", "running"))
    assert nxt["status"] == "succeeded"
    http.delete(f"{JOBS}/{nxt['id']}")


def wav_seconds_streamed(data: bytes) -> float:
    # A streamed WAV says "unknown length": count the samples after the 44-byte header.
    return (len(data) - 44) / 2 / 24000


def test_unknown_job_is_404(http: httpx.Client) -> None:
    for method, path in (("GET", ""), ("GET", "/audio"), ("DELETE", "")):
        r = http.request(method, f"{JOBS}/speechjob_0123456789abcdef{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_job", (method, path)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (job_body("a" * (MAX_JOB_CHARS + 1)), 413, "text_too_long"),
        (job_body("Hello.", voice="espeak/nobody"), 404, "unknown_voice"),
        (job_body("🎉 " * 3000), 422, "no_speakable_text"),
        (job_body("Say [this](/ðɪs/) now."), 422, "phonemes_not_supported"),
    ],
)
def test_refused_before_any_job_exists(
    http: httpx.Client, body: dict[str, Any], status: int, code: str
) -> None:
    before = len(http.get(JOBS).json()["data"])
    r = http.post(JOBS, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert len(http.get(JOBS).json()["data"]) == before


def test_a_temporary_jobs_folder_goes_at_shutdown(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # jobs_temporary (tests/conftest.py), no jobs_dir: the server makes a temporary folder (in
    # TMPDIR) and must leave nothing behind.
    srv = start_server(tmp_path, env={**ENV, "TMPDIR": str(tmp), "VOXSERVE_JOBS_TEMPORARY": "1"})
    try:
        with Client(srv.url, timeout=60) as client:
            job = client.create_speech_job(TEXT, voice="alloy", response_format="flac")
            # Running, its file half written.
            until(lambda: client.get_speech_job(job["id"])["chars_done"] > 0, 60)
            folders = [p for p in tmp.iterdir() if p.name.startswith("voxserve-jobs-")]
            assert len(folders) == 1
            # The job's audio so far (raw PCM until it is finished) beside the job store.
            files = sorted(f.name for f in folders[0].iterdir() if not f.name.startswith("jobs."))
            assert files == [f"{job['id']}.flac.part"]
    finally:
        code = stop_server(srv)
    # A clean exit on SIGTERM, not the kill after stop_server's bound (uvicorn re-raises SIGTERM: -15).
    assert code in (0, -15), srv.log_text()
    assert os.listdir(tmp) == []
