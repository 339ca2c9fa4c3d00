"""The ``info`` answer to ``describe``: one ASR program (the served Whisper models) and one TTS program
(every installed voice), rebuilt on every ``describe`` so a voice installed since is listed (corpus
P4)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from voxserve import __version__
from voxserve.engines.base import VoiceInfo
from voxserve.stt.hints import WHISPER_LANGUAGES

__all__ = ["ATTRIBUTION", "build_info", "model_languages", "wyoming_language"]

ATTRIBUTION = Attribution(name="voxserve", url="https://github.com/voxserve/voxserve")
_WHISPER = Attribution(
    name="OpenAI Whisper (faster-whisper)", url="https://github.com/SYSTRAN/faster-whisper"
)
_ENGINES = {
    "piper": Attribution(name="Piper", url="https://github.com/OHF-Voice/piper1-gpl"),
    "kokoro": Attribution(name="Kokoro", url="https://huggingface.co/hexgrad/Kokoro-82M"),
    "espeak": Attribution(name="eSpeak NG", url="https://github.com/espeak-ng/espeak-ng"),
}


def wyoming_language(tag: str) -> str:
    """``en-US`` as wyoming-piper writes it (``en_US``); a bare language stays as it is."""
    return tag.replace("-", "_")


def model_languages(model_id: str) -> list[str]:
    """What a Whisper model can transcribe: English only for the ``.en`` models."""
    if model_id.endswith(".en"):
        return ["en"]
    return sorted(WHISPER_LANGUAGES)


def build_info(stt_models: Sequence[str], voices: Iterable[VoiceInfo]) -> Info:
    asr = AsrProgram(
        name="voxserve-stt",
        description="voxserve streaming speech-to-text (Whisper)",
        attribution=ATTRIBUTION,
        installed=True,
        version=__version__,
        models=[
            AsrModel(
                name=model_id,
                description=f"Whisper {model_id}",
                attribution=_WHISPER,
                installed=True,
                version=None,
                languages=model_languages(model_id),
            )
            for model_id in stt_models
        ],
        supports_transcript_streaming=True,
    )
    tts = TtsProgram(
        name="voxserve-tts",
        description="voxserve streaming text-to-speech",
        attribution=ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=[
            TtsVoice(
                name=voice.id,
                description=voice.description or f"{voice.engine} {voice.name}",
                attribution=_ENGINES.get(voice.engine, ATTRIBUTION),
                installed=True,
                version=None,
                languages=[wyoming_language(voice.language)],
                speakers=None,
            )
            for voice in voices
        ],
        supports_synthesize_streaming=True,
    )
    return Info(asr=[asr], tts=[tts])
