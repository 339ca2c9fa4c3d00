"""The clients' speech-job methods against a scripted HTTP transport (no server)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from voxserve.client import AsyncClient, Client, ClientError

AUDIO = b"RIFF" + bytes(range(256)) * 2000  # half a megabyte: several download chunks


class FakeJobsServer:
    """Answers the job routes; a job succeeds (or fails) after ``polls`` status requests."""

    def __init__(self, polls: int = 2, fail: bool = False) -> None:
        self.polls = polls
        self.fail = fail
        self.bodies: list[dict[str, Any]] = []
        self.keys: list[str | None] = []
        self.seen = 0

    def job(self, status: str) -> dict[str, Any]:
        error = {"code": "synthesis_failed", "message": "the engine failed"} if status == "failed" else None
        return {"id": "speechjob_1", "object": "speech.job", "status": status, "error": error}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if method == "POST" and path == "/v1/audio/speech/jobs":
            self.bodies.append(json.loads(request.content))
            self.keys.append(request.headers.get("idempotency-key"))
            return httpx.Response(202, json=self.job("queued"))
        if method == "GET" and path == "/v1/audio/speech/jobs":
            return httpx.Response(200, json={"object": "list", "data": [self.job("running")]})
        if path.startswith("/v1/audio/speech/jobs/speechjob_1"):
            if method == "DELETE":
                return httpx.Response(200, json={**self.job("cancelled"), "deleted": True})
            if path.endswith("/audio"):
                return httpx.Response(200, content=AUDIO, headers={"content-type": "audio/wav"})
            self.seen += 1
            if self.seen <= self.polls:
                return httpx.Response(200, json=self.job("running"))
            return httpx.Response(200, json=self.job("failed" if self.fail else "succeeded"))
        error = {
            "message": "no speech job",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_job",
        }
        return httpx.Response(404, json={"error": error})


def sync_client(server: FakeJobsServer) -> Client:
    client = Client("http://test")
    client._http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(server))
    return client


def async_client(server: FakeJobsServer) -> AsyncClient:
    client = AsyncClient("http://test")
    client._http = httpx.AsyncClient(base_url="http://test", transport=httpx.MockTransport(server))
    return client


def test_sync_job_round_trip(tmp_path: Path) -> None:
    server = FakeJobsServer()
    with sync_client(server) as client:
        job = client.create_speech_job(
            "A long text.", voice="espeak/en-us", response_format="wav", markup="off"
        )
        assert job["status"] == "queued"
        assert server.bodies == [
            {
                "model": "tts-1",
                "input": "A long text.",
                "voice": "espeak/en-us",
                "response_format": "wav",
                "speed": 1.0,
                "markup": "off",
            }
        ]
        assert client.get_speech_job(job["id"])["status"] == "running"
        assert client.wait_speech_job(job["id"], poll_interval_s=0)["status"] == "succeeded"
        assert [j["id"] for j in client.list_speech_jobs()] == [job["id"]]
        assert client.speech_job_audio(job["id"]) == AUDIO
        assert client.download_speech_job(job["id"], tmp_path / "book.wav") == len(AUDIO)
        assert (tmp_path / "book.wav").read_bytes() == AUDIO
        buffer = io.BytesIO()
        assert client.download_speech_job(job["id"], buffer) == len(AUDIO)
        assert buffer.getvalue() == AUDIO
        assert client.delete_speech_job(job["id"])["deleted"] is True
        client.create_speech_job("Once only.", idempotency_key="order-7")
        assert server.keys == [None, "order-7"]
        with pytest.raises(ClientError) as info:
            client.get_speech_job("nope")
        assert info.value.code == "unknown_job" and info.value.status == 404


async def test_async_job_round_trip(tmp_path: Path) -> None:
    server = FakeJobsServer()
    async with async_client(server) as client:
        job = await client.create_speech_job("A long text.", response_format="mp3", volume_multiplier=2.0)
        assert server.bodies[0]["volume_multiplier"] == 2.0
        assert (await client.wait_speech_job(job["id"], poll_interval_s=0))["status"] == "succeeded"
        assert await client.download_speech_job(job["id"], str(tmp_path / "book.mp3")) == len(AUDIO)
        assert (tmp_path / "book.mp3").read_bytes() == AUDIO
        assert await client.speech_job_audio(job["id"]) == AUDIO
        assert len(await client.list_speech_jobs()) == 1
        assert (await client.delete_speech_job(job["id"]))["status"] == "cancelled"


def test_a_failed_job_raises_its_error() -> None:
    with sync_client(FakeJobsServer(polls=0, fail=True)) as client, pytest.raises(ClientError) as info:
        client.wait_speech_job("speechjob_1", poll_interval_s=0)
    assert info.value.code == "synthesis_failed" and "the engine failed" in info.value.message


async def test_waiting_has_a_bound() -> None:
    async with async_client(FakeJobsServer(polls=10**6)) as client:
        with pytest.raises(ClientError) as info:
            await client.wait_speech_job("speechjob_1", max_wait_s=0.05, poll_interval_s=0.01)
    assert info.value.code == "timeout"
    with sync_client(FakeJobsServer(polls=10**6)) as sync, pytest.raises(ClientError) as info:
        sync.wait_speech_job("speechjob_1", max_wait_s=0.05, poll_interval_s=0.01)
    assert info.value.code == "timeout"
