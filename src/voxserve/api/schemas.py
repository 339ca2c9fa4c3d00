"""Request bodies of the HTTP API (pydantic models; unknown fields are rejected with 422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voxserve.text.normalize import NormalizationOptions

__all__ = [
    "CaptionedSpeechRequest",
    "ChatCompletionRequest",
    "ChatContentPart",
    "ChatMessageModel",
    "NormalizationOptionsModel",
    "PhonemeSpeechRequest",
    "PhonemizeRequest",
    "SpeechJobRequest",
    "SpeechRequest",
    "StreamOptions",
    "VoiceRef",
]

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceRef(BaseModel):
    """``{"id": "..."}``: a voice named by id (OpenAI's custom-voice shape)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=256)


class NormalizationOptionsModel(BaseModel):
    """Kokoro-FastAPI's ``normalization_options``."""

    model_config = ConfigDict(extra="forbid")
    normalize: bool = True
    unit_normalization: bool = False
    url_normalization: bool = True
    email_normalization: bool = True
    optional_pluralization_normalization: bool = True
    phone_normalization: bool = True
    replace_remaining_symbols: bool = True

    def to_options(self) -> NormalizationOptions:
        return NormalizationOptions(**self.model_dump())


class _SpeechFields(BaseModel):
    """The fields a speech request and a speech job share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1, max_length=256, description="tts-1, tts-1-hd, gpt-4o-mini-tts, piper, ..."
    )
    input: str = Field(description="The text to speak (at most `max_input_chars` characters).")
    voice: str | VoiceRef = Field(description="A voice id, an OpenAI voice name, a blend or {'id': ...}.")
    response_format: AudioFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    volume_multiplier: float = Field(1.0, gt=0.0, le=4.0)
    normalization_options: NormalizationOptionsModel | None = None
    markup: Literal["lenient", "strict", "off"] = Field(
        "lenient",
        description="Inline pause tags and IPA overrides: `lenient` removes look-alike tags (reported in "
        "`X-Voxserve-Warning`), `strict` refuses them (422 `invalid_tag`), `off` reads the text as it is.",
    )


class SpeechRequest(_SpeechFields):
    """``POST /v1/audio/speech``: OpenAI's CreateSpeechRequest plus Kokoro-FastAPI's ``stream``."""

    instructions: str | None = Field(None, max_length=4096)
    stream_format: Literal["audio", "sse"] = "audio"
    stream: bool = Field(True, description="Kokoro-FastAPI: false returns the whole file at once.")


class SpeechJobRequest(_SpeechFields):
    """``POST /v1/audio/speech/jobs``: the speech request's fields for a long text, spoken into a file."""

    input: str = Field(description="The text to speak (at most `max_job_chars` characters).")


class CaptionedSpeechRequest(SpeechRequest):
    """``POST /dev/captioned_speech``: the speech body; the response carries word timestamps."""

    response_format: AudioFormat = "wav"
    return_timestamps: bool = True


class PhonemizeRequest(BaseModel):
    """``POST /dev/phonemize``."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=65536)
    language: str = Field("a", max_length=16, description="Kokoro letter or language tag (a, b, en-us, ja).")
    voice: str | None = Field(None, max_length=256, description="Phonemize for this voice's engine.")


class PhonemeSpeechRequest(BaseModel):
    """``POST /dev/generate_from_phonemes``."""

    model_config = ConfigDict(extra="forbid")
    phonemes: str = Field(max_length=8192)
    voice: str | VoiceRef
    response_format: AudioFormat = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)


def voice_value(voice: str | VoiceRef) -> str | dict[str, Any]:
    return {"id": voice.id} if isinstance(voice, VoiceRef) else voice


class ChatContentPart(BaseModel):
    """One part of a message's content: only text parts (``{"type": "text", "text": ...}``)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessageModel(BaseModel):
    """One message of ``POST /v1/chat/completions``; ``developer`` is read as ``system``."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ChatContentPart]
    name: str | None = Field(None, max_length=64)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions request, the parameters a local model can honour. Others (tools,
    ``n`` above 1, logprobs) are refused as unknown fields rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageModel] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=1)
    seed: int | None = None
    user: str | None = Field(None, max_length=256)
