"""What one running app holds: settings, engine pools, metrics and the loop-lag probe."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from voxserve.api.jobs import SpeechJobs
from voxserve.api.observability import LoopLagProbe, Metrics
from voxserve.config import Settings
from voxserve.runtime.registry import OPENAI_STT_MODELS, EngineRegistry

__all__ = ["AppState", "get_state"]

OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")


@dataclass
class AppState:
    settings: Settings
    registry: EngineRegistry
    metrics: Metrics
    probe: LoopLagProbe
    jobs: SpeechJobs
    """Long-text speech jobs (``/v1/audio/speech/jobs``)."""

    def model_ids(self) -> list[str]:
        """Every model id the speech route accepts (OpenAI's names and the engine families)."""
        return [*OPENAI_TTS_MODELS, "voxserve", *self.registry.pools]

    def stt_model_ids(self) -> list[str]:
        """Every model id the transcription routes accept."""
        return [*OPENAI_STT_MODELS, *self.registry.stt_pools]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.vox
    return state
