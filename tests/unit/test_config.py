"""Settings: defaults, environment variables and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from voxserve.config import DEFAULT_VOICE_ALIASES, Settings

OPENAI_VOICES = {
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
}


def test_defaults_are_safe() -> None:
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.max_input_chars == 4096
    assert s.threads_per_worker * min(s.workers_per_engine, 2) <= 2


def test_job_defaults_and_body_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXSERVE_JOBS_TEMPORARY", raising=False)  # tests/conftest.py sets it
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    s = Settings()
    assert (s.max_job_chars, s.max_jobs, s.job_concurrency, s.job_ttl_s, s.max_job_restarts) == (
        500_000,
        4,
        1,
        3600.0,
        3,
    )
    # Jobs survive restarts by default: a persistent folder in the user's data directory.
    assert s.jobs_folder == s.jobs_dir == Path("/data/voxserve/jobs")
    assert Settings(jobs_temporary=True).jobs_folder is None
    assert Settings(jobs_temporary=True, jobs_dir=Path("/x")).jobs_folder == Path("/x")
    # Room for the longest job even when every character is a JSON-escaped surrogate pair.
    assert s.max_job_body_bytes == s.max_body_bytes + 12 * 500_000
    assert Settings(max_job_chars=10).max_job_body_bytes == s.max_body_bytes + 120


def test_every_openai_voice_is_mapped() -> None:
    assert set(DEFAULT_VOICE_ALIASES) == OPENAI_VOICES
    for target in DEFAULT_VOICE_ALIASES.values():
        assert target.split("/")[0] in ("piper", "kokoro", "espeak")


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXSERVE_PORT", "9001")
    monkeypatch.setenv("VOXSERVE_ENGINES", '["piper", "piper", "espeak"]')
    s = Settings()
    assert s.port == 9001
    assert s.engines == ["piper", "espeak"]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_input_chars": 0},
        {"max_jobs": 0},
        {"job_batch_chars": 10},
        {"job_ttl_s": 0},
        {"engines": ["nope"]},
        {"output_sample_rate": 12345},
        {"workers_per_engine": 0},
        {"typo": 1},
    ],
)
def test_invalid_values_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_aliases_of_disabled_engines_fall_back_to_the_default_voice() -> None:
    s = Settings(engines=["piper"])
    assert set(s.voice_aliases.values()) == {"piper/en_US-joe-medium"}
    own = {"cedar": "kokoro/jm_kumo"}
    assert Settings(voice_aliases=own).voice_aliases["cedar"] == "kokoro/jm_kumo"
    assert Settings(voice_aliases=own, engines=["piper"]).voice_aliases["cedar"] == "piper/en_US-joe-medium"


def test_default_voice_needs_its_engine() -> None:
    with pytest.raises(ValidationError, match="default_voice"):
        Settings(engines=["espeak"])


def test_lone_stt_threads_default_to_the_cores_and_are_off_when_no_wider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert Settings().stt_lone_thread_count() == 4
    assert Settings(stt_lone_threads=3).stt_lone_thread_count() == 3
    assert Settings(stt_lone_threads=2, stt_threads_per_worker=2).stt_lone_thread_count() == 0
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert Settings().stt_lone_thread_count() == 0


def test_the_lend_margin_is_bounded() -> None:
    assert Settings(tts_lend_margin_s=0).tts_lend_margin_s == 0
    assert Settings(tts_lend_margin_s=3600).tts_lend_margin_s == 3600
    for bad in (-0.1, 3600.5):
        with pytest.raises(ValidationError, match="tts_lend_margin_s"):
            Settings(tts_lend_margin_s=bad)
