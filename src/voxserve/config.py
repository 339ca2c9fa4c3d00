"""One typed configuration for the whole server.

Every option is an environment variable ``VOXSERVE_<NAME>`` (for example ``VOXSERVE_PORT=9000``), a
``voxserve serve`` flag for the common ones, or a line in an optional ``.env`` file named by
``VOXSERVE_ENV_FILE``. Limits carry their unit in the name. The configuration is checked once at
start-up; a bad value stops the server with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_VOICE_ALIASES", "EngineName", "Settings"]

EngineName = Literal["piper", "espeak", "kokoro"]
_ALL_ENGINES: tuple[EngineName, ...] = ("piper", "espeak", "kokoro")
_PRELOAD: tuple[EngineName, ...] = ("piper",)

# Every OpenAI voice name maps to an installed voice. Only one Piper voice ships by default, so most
# names share it; a deployment with more voices overrides this table (VOXSERVE_VOICE_ALIASES as JSON).
DEFAULT_VOICE_ALIASES: dict[str, str] = {
    "alloy": "piper/en_US-joe-medium",
    "ash": "piper/en_US-joe-medium",
    "ballad": "piper/en_US-joe-medium",
    "coral": "kokoro/jf_alpha",
    "echo": "piper/en_US-joe-medium",
    "fable": "piper/en_US-joe-medium",
    "nova": "kokoro/jf_alpha",
    "onyx": "piper/en_US-joe-medium",
    "sage": "kokoro/jf_gongitsune",
    "shimmer": "kokoro/jf_nezumi",
    "verse": "piper/en_US-joe-medium",
    "marin": "kokoro/jf_tebukuro",
    "cedar": "kokoro/jm_kumo",
}


class Settings(BaseSettings):
    """voxserve settings; see docs/configuration.md for the full reference."""

    model_config = SettingsConfigDict(env_prefix="VOXSERVE_", extra="forbid", env_file=None)

    # --- network -----------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to bind; loopback unless told otherwise.")
    port: int = Field(8000, ge=0, le=65535)

    # --- engines and workers -----------------------------------------------------------------------
    default_voice: str = Field("piper/en_US-joe-medium", description="Voice used when none resolves.")
    engines: list[EngineName] = Field(
        default_factory=lambda: list(_ALL_ENGINES), description="Engines offered."
    )
    preload_engines: list[EngineName] = Field(
        default_factory=lambda: list(_PRELOAD),
        description="Engines whose workers start with the server; the others start on first use.",
    )
    piper_voices: list[Path] = Field(
        default_factory=list, description="Extra Piper .onnx voice files (the bundled voice is always on)."
    )
    kokoro_model_path: Path | None = Field(None, description="A kokoro-v1.0.onnx of your own.")
    kokoro_voices_path: Path | None = Field(None, description="voices-v1.0.bin (npz) for that model.")
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voxserve",
        description="Where joined model files are kept.",
    )
    workers_per_engine: int = Field(2, ge=1, le=64, description="Worker processes per engine.")
    threads_per_worker: int = Field(1, ge=1, le=64, description="Inference threads in each worker.")
    worker_start_timeout_s: float = Field(120.0, gt=0, description="Ready handshake deadline.")
    worker_cancel_grace_s: float = Field(1.0, gt=0, description="Kill a worker that ignores cancel.")
    queue_timeout_s: float = Field(10.0, gt=0, description="Wait for a free worker before 503.")
    max_queued_requests: int = Field(32, ge=0, description="Requests waiting for a worker before 503.")

    # --- text-to-speech ----------------------------------------------------------------------------
    max_input_chars: int = Field(4096, ge=1, description="Longest `input` accepted (413 above).")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest JSON request body (413 above).")
    first_fragment_max_chars: int = Field(
        60, ge=10, description="A longer first sentence is cut at a clause so audio starts sooner."
    )
    max_fragment_chars: int = Field(300, ge=20, description="Longest text fragment per synthesis call.")
    voice_aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_VOICE_ALIASES))
    output_sample_rate: int = Field(24000, description="Rate of every encoded response (OpenAI uses 24 kHz).")

    # --- observability -----------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("engines", "preload_engines")
    @classmethod
    def _no_duplicates(cls, v: list[EngineName]) -> list[EngineName]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _aliases_follow_engines(self) -> Settings:
        """Point aliases whose engine is disabled at the default voice, so every OpenAI name still speaks."""
        engine = self.default_voice.partition("/")[0]
        if engine not in self.engines:
            raise ValueError(
                f"default_voice {self.default_voice!r} needs the {engine!r} engine, which is not enabled"
            )
        self.voice_aliases = {
            name: target if target.partition("/")[0] in self.engines else self.default_voice
            for name, target in self.voice_aliases.items()
        }
        return self

    @field_validator("output_sample_rate")
    @classmethod
    def _rate(cls, v: int) -> int:
        if v not in (8000, 12000, 16000, 22050, 24000, 44100, 48000):
            raise ValueError(
                "output_sample_rate must be one of 8000, 12000, 16000, 22050, 24000, 44100, 48000"
            )
        return v
