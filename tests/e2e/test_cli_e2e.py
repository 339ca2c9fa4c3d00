"""The voxserve command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.audio_helpers import duration
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxserve.cli", *args], capture_output=True, text=True, env=ENV, timeout=180
    )


@pytest.mark.parametrize("name", ["out.mp3", "out.wav", "out.ogg"])
def test_say_writes_a_file(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = run("say", "Hello from the command line.", "-o", str(out))
    assert result.returncode == 0, result.stderr
    fmt = {"mp3": "mp3", "wav": "wav", "ogg": "opus"}[name.split(".")[1]]
    assert duration(out.read_bytes(), fmt) > 1.0


def test_say_with_voice_and_format(tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    result = run("say", "Espeak speaks.", "-o", str(out), "--voice", "espeak/en-us", "--format", "flac")
    assert result.returncode == 0, result.stderr
    assert duration(out.read_bytes(), "flac") > 0.3


def test_say_reports_errors(tmp_path: Path) -> None:
    result = run("say", "Hi.", "-o", str(tmp_path / "x.mp3"), "--voice", "nobody")
    assert result.returncode != 0
    assert "unknown_voice" in result.stderr and "Traceback" not in result.stderr


def test_voices_lists_every_engine() -> None:
    result = run("voices")
    assert result.returncode == 0, result.stderr
    for vid in ("piper/en_US-joe-medium", "espeak/en-us", "kokoro/jf_alpha"):
        assert vid in result.stdout


def test_serve_honours_env_and_leaves_no_orphans(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"VOXSERVE_ENGINES": '["piper"]', "VOXSERVE_WORKERS_PER_ENGINE": "1"})
    try:
        ready = httpx.get(f"{server.url}/ready").json()
        assert sorted(ready["engines"]) == ["piper", "whisper/tiny.en"]
        assert len(ready["engines"]["piper"]["pids"]) == 1
        pids = [p for e in ready["engines"].values() for p in e["pids"]]
    finally:
        code = stop_server(server)
    # uvicorn re-raises the SIGTERM it handled after a clean shutdown, so the exit status is -15.
    assert code in (0, -15), server.log_text()
    assert "Application shutdown complete" in server.log_text()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_configuration_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxserve.cli", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env={**ENV, "VOXSERVE_MAX_INPUT_CHARS": "-5"},
        timeout=60,
    )
    assert result.returncode != 0
    assert "max_input_chars" in result.stderr and "Traceback" not in result.stderr


def test_transcribe_and_listen_against_a_server(server: Server) -> None:
    from tests.speech_dev import by_name
    from tests.wer import errors

    u = by_name("speech_recognition_english_123.wav")
    plain = run("transcribe", str(u.path), "--server", server.url)
    assert plain.returncode == 0, plain.stderr
    assert errors(u.text, plain.stdout)[0] <= 2
    streamed = run("transcribe", str(u.path), "--stream", "--server", server.url)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip() == plain.stdout.strip()
    live = run("listen", str(u.path), "--server", server.url, "--pace", "4")
    assert live.returncode == 0, live.stderr
    finals = [
        line.split("] ", 1)[1] for line in live.stdout.replace("\r", "\n").splitlines() if "s] " in line
    ]
    assert finals and errors(u.text, " ".join(finals))[0] <= 2


def test_transcribe_reports_errors(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio at all " * 20)
    result = run("transcribe", str(bad), "--server", server.url)
    assert result.returncode != 0 and "unsupported_media_type" in result.stderr
    missing = run("transcribe", str(tmp_path / "nope.wav"), "--server", server.url)
    assert missing.returncode != 0 and "no such file" in missing.stderr


def test_transcribe_and_listen_send_the_api_key(tmp_path: Path) -> None:
    from tests.speech_dev import by_name

    srv = start_server(
        tmp_path,
        env={
            "VOXSERVE_API_KEYS": "k1,k2",
            "VOXSERVE_ENGINES": '["piper"]',
            "VOXSERVE_STT_MODELS": '["tiny.en"]',
            "VOXSERVE_UI_ENABLED": "0",
        },
        headers={"Authorization": "Bearer k1"},
    )
    try:
        path = str(by_name("speech_recognition_english_123.wav").path)
        refused = run("transcribe", path, "--server", srv.url)
        assert refused.returncode != 0 and "invalid_api_key" in refused.stderr
        ok = run("transcribe", path, "--server", srv.url, "--api-key", "k2")
        assert ok.returncode == 0 and ok.stdout.strip(), ok.stderr
        refused = run("listen", path, "--server", srv.url, "--pace", "0")
        assert refused.returncode != 0 and "HTTP 401" in refused.stderr
        env = {**ENV, "VOXSERVE_API_KEY": "k1"}
        ok = subprocess.run(
            [sys.executable, "-m", "voxserve.cli", "listen", path, "--server", srv.url, "--pace", "0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert ok.returncode == 0 and "s] " in ok.stdout, ok.stderr
    finally:
        stop_server(srv)
