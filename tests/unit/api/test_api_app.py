"""The app factory, validation and error mapping, without starting any worker (no lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from voxserve.api.app import create_app
from voxserve.config import Settings


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = create_app(Settings(max_body_bytes=2048))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_importing_and_creating_the_app_starts_nothing() -> None:
    import multiprocessing
    import threading

    before = threading.active_count()
    create_app(Settings())
    assert multiprocessing.active_children() == []
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{nope", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 9}', 422, "invalid_speed"),
        (
            b'{"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "ogg"}',
            422,
            "unsupported_format",
        ),
        (b'{"model": "tts-1", "voice": "alloy"}', 422, "missing_field"),
        (b'{"model": "tts-1", "voice": "alloy", "input": "hi", "extra": 1}', 422, "unknown_field"),
        (b'{"model": "nope", "voice": "alloy", "input": "hi"}', 404, "model_not_found"),
    ],
)
async def test_validation_errors(client: httpx.AsyncClient, body: bytes, status: int, code: str) -> None:
    async with client:
        r = await client.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert "x-request-id" in r.headers


async def test_body_limit_at_n_and_n_plus_one(client: httpx.AsyncClient) -> None:
    async with client:
        at_limit = await client.post("/v1/models", content=b" " * 2048)
        over = await client.post("/v1/models", content=b" " * 2049)
    assert at_limit.status_code == 405  # read, then refused for its method
    assert over.status_code == 413 and over.json()["error"]["code"] == "body_too_large"


async def test_unknown_route_is_json(client: httpx.AsyncClient) -> None:
    async with client:
        r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_a_chunked_upload_over_the_limit_is_413_not_the_form_parsers_400() -> None:
    # FastAPI turned the middleware's error, raised while it parsed the multipart form, into
    # "400 There was an error parsing the body" (corpus M4).
    app = create_app(Settings(max_upload_bytes=4096, ui_enabled=False))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(8):
            yield bytes(1024)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.post(
            "/v1/audio/transcriptions",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "file_too_large"
    assert r.headers["x-request-id"]
