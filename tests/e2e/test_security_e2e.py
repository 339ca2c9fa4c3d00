"""A real ``voxserve serve`` with API keys and TLS (a self-signed certificate made for the test):
HTTPS and WSS with the certificate as the trusted CA, keys on HTTP and WebSockets, Origin checks."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, stop_server
from tests.timing import scaled, until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

pytestmark = pytest.mark.e2e

KEYS = ("e2e-key-one-4f1c", "e2e-key-two-9a7b")
AUTH = {"Authorization": f"Bearer {KEYS[1]}"}
SMALL = {
    "VOXSERVE_ENGINES": '["piper"]',
    "VOXSERVE_PRELOAD_ENGINES": '["piper"]',
    "VOXSERVE_STT_MODELS": '["tiny.en"]',
    "VOXSERVE_WORKERS_PER_ENGINE": "1",
    "VOXSERVE_STT_WORKERS": "1",
    "VOXSERVE_UI_ENABLED": "false",
}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1 and its key, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=voxserve test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    return cert, key, ssl.create_default_context(cafile=str(cert))


@pytest.fixture(scope="module")
def secure_server(
    tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, Path, ssl.SSLContext]
) -> Iterator[Server]:
    """TLS from the flags; two keys from the environment (a comma-separated list)."""
    cert, key, context = tls
    srv = start_server(
        tmp_path_factory.mktemp("secure-server"),
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        env={**SMALL, "VOXSERVE_API_KEYS": ",".join(KEYS)},
        scheme="https",
        verify=context,
        headers=AUTH,
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def test_https_with_keys(secure_server: Server, tls: tuple[Path, Path, ssl.SSLContext]) -> None:
    context = tls[2]
    with httpx.Client(base_url=secure_server.url, verify=context, timeout=60) as client:
        assert client.get("/health").json() == {"status": "ok"}  # liveness needs no key
        for path in ("/ready", "/metrics", "/v1/models", "/openapi.json", "/docs", "/v1/audio/speech/jobs"):
            r = client.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        for key in KEYS:
            assert client.get("/ready", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        body = {"model": "tts-1", "voice": "alloy", "input": "Secure speech.", "response_format": "wav"}
        assert client.post("/v1/audio/speech", json=body).status_code == 401
        r = client.post("/v1/audio/speech", json=body, headers=AUTH)
        assert r.status_code == 200 and r.content[:4] == b"RIFF" and len(r.content) > 10_000
        # Speech jobs: every route needs the key; with it the job runs and its audio downloads.
        jobs = "/v1/audio/speech/jobs"
        assert client.post(jobs, json=body).status_code == 401
        created = client.post(jobs, json=body, headers=AUTH)
        assert created.status_code == 202, created.text
        job = f"{jobs}/{created.json()['id']}"
        for method, path in (("GET", job), ("GET", f"{job}/audio"), ("DELETE", job)):
            assert client.request(method, path).status_code == 401, (method, path)
        until(lambda: client.get(job, headers=AUTH).json()["status"] not in ("queued", "running"), 60)
        audio = client.get(f"{job}/audio", headers=AUTH)
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        # The other key cannot see, download or delete it: 404, as if it did not exist.
        other = {"Authorization": f"Bearer {KEYS[0]}"}
        for method, path in (("GET", job), ("GET", f"{job}/audio"), ("DELETE", job)):
            r = client.request(method, path, headers=other)
            assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_job", (method, path)
        assert client.get(jobs, headers=other).json()["data"] == []
        assert [j["id"] for j in client.get(jobs, headers=AUTH).json()["data"]] == [created.json()["id"]]
        assert client.delete(job, headers=AUTH).status_code == 200


def test_tls_is_real(secure_server: Server) -> None:
    # Not trusted without the test CA; no plain HTTP on the TLS port.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{secure_server.url}/health", timeout=10)
    plain = secure_server.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/health", timeout=10)


def test_wss_needs_a_key_and_an_allowed_origin(
    secure_server: Server, tls: tuple[Path, Path, ssl.SSLContext]
) -> None:
    context = tls[2]
    base = secure_server.url.replace("https://", "wss://")
    speak = f"{base}/v1/stream/speak"

    # open_timeout: a clean-clone CI run once took over the default 10 s for this first TLS handshake.
    with pytest.raises(InvalidStatus) as info:
        connect(speak, ssl=context, open_timeout=scaled(60))
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"{}")["error"]["code"] == "invalid_api_key"

    with pytest.raises(InvalidStatus) as info:
        connect(
            speak,
            ssl=context,
            additional_headers=AUTH,
            origin=Origin("https://evil.example"),
            open_timeout=scaled(60),
        )
    assert info.value.response.status_code == 403

    # A header, from a program; the server's own origin, as its own web page would send.
    own = secure_server.url
    with connect(
        speak, ssl=context, additional_headers=AUTH, origin=Origin(own), open_timeout=scaled(60)
    ) as ws:
        ws.send(json.dumps({"type": "config", "voice": "alloy", "response_format": "pcm"}))
        ready = json.loads(ws.recv(timeout=scaled(60)))
        assert ready["type"] == "ready", ready

    # A subprotocol, as a browser does (OpenAI's Realtime convention).
    realtime = f"{base}/v1/realtime?intent=transcription"
    offered = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{KEYS[0]}")]
    # open_timeout: the first transcription session starts the Whisper worker (model load) first.
    with connect(realtime, ssl=context, subprotocols=offered, open_timeout=scaled(60)) as ws:
        assert ws.subprotocol == "realtime"
        created = json.loads(ws.recv(timeout=scaled(60)))
        assert created["type"] in ("session.created", "transcription_session.created"), created
