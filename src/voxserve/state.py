"""What one running server holds: settings, engine pools, jobs, metrics, admission and the shared VAD.

The HTTP and WebSocket routes (``api/``), the web UI (``ui/``) and, later, the Wyoming server all reach
the engines through one :class:`AppState`, so they share the same workers, limits and counters. It is
plain data with no web framework in it: adapters fetch it from wherever they keep it (FastAPI keeps it
in ``app.state.vox``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voxserve.config import Settings
from voxserve.observability import LoopLagProbe, Metrics
from voxserve.runtime.admission import Admission
from voxserve.runtime.registry import OPENAI_STT_MODELS, EngineRegistry
from voxserve.stt.vad import SharedVad
from voxserve.tts.jobs import SpeechJobs

__all__ = ["OPENAI_TTS_MODELS", "AppState"]

OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")


@dataclass
class AppState:
    """The services of one server process, shared by every adapter."""

    settings: Settings
    registry: EngineRegistry
    metrics: Metrics
    probe: LoopLagProbe
    jobs: SpeechJobs
    """Long-text speech jobs (``/v1/audio/speech/jobs``)."""
    vad: SharedVad = field(default_factory=SharedVad)
    """The Silero model every streaming transcription shares (loaded on first use)."""
    stt_admission: Admission = field(init=False)
    """Live streaming transcriptions (transcribe and Realtime WebSockets, the UI's microphone)."""
    speak_admission: Admission = field(init=False)
    chat_admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.stt_admission = Admission(self.settings.max_stt_sessions)
        self.speak_admission = Admission(self.settings.max_speak_sessions)
        self.chat_admission = Admission(self.settings.max_chat_sessions)

    def model_ids(self) -> list[str]:
        """Every model id the speech route accepts (OpenAI's names and the engine families)."""
        return [*OPENAI_TTS_MODELS, "voxserve", *self.registry.pools]

    def stt_model_ids(self) -> list[str]:
        """Every model id the transcription routes accept."""
        return [*OPENAI_STT_MODELS, *self.registry.stt_pools]
