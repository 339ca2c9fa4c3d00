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
from voxserve.runtime.registry import OPENAI_TTS_MODELS, EngineRegistry, stt_model_names, tts_model_names
from voxserve.stt.vad import SharedVad
from voxserve.tts.jobs import SpeechJobs

__all__ = ["OPENAI_TTS_MODELS", "AppState"]


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
        """Every model name the speech routes accept (OpenAI's names, ``voxserve``, the engine
        families and their aliases); ``registry.tts_engine`` resolves one."""
        return tts_model_names(self.settings, self.registry.pools)

    def stt_model_ids(self) -> list[str]:
        """Every model name the transcription routes accept; ``registry.stt_model_id`` resolves one."""
        return stt_model_names(self.settings, self.registry.stt_pools)
