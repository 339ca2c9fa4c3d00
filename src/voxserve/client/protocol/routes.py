"""The HTTP routes, one function each: its parameters, its request, and how its response is read.

:class:`~voxserve.client.Client` and :class:`~voxserve.client.AsyncClient` expose each function as a
method of the same name, signature and docstring (blocking on one, awaited or async-iterated on the
other), so a route is written once. The speech-job routes are in :mod:`.jobs`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from voxserve.client.errors import ClientError
from voxserve.client.events import CaptionedSpeech, TranscriptionDelta, TranscriptionDone, TranscriptionEvent
from voxserve.client.protocol.http import (
    Call,
    FileInput,
    Passthrough,
    Request,
    Response,
    StreamCall,
    Upload,
    content,
    json_object,
)
from voxserve.client.protocol.session import typed
from voxserve.client.protocol.words import word
from voxserve.protocol import speech as speech_wire
from voxserve.protocol.sse import SSEDecoder, SSEError

__all__ = [
    "TranscriptionEvents",
    "captioned_speech",
    "generate_from_phonemes",
    "health",
    "model",
    "models",
    "phonemize",
    "ready",
    "speech",
    "speech_body",
    "stream_speech",
    "stream_transcription",
    "transcribe",
    "transcription_event",
    "translate",
    "voices",
]

_JSON_FORMATS = ("json", "verbose_json")


# --- the server ----------------------------------------------------------------------------------


def health() -> Call[dict[str, Any]]:
    """``GET /health``."""
    return Call(Request("GET", "/health"), json_object)


def ready() -> Call[dict[str, Any]]:
    """``GET /ready``: the engines' state (``status`` is ``ready`` or ``starting``; never raises 503)."""
    return Call(Request("GET", "/ready"), json_object, also_ok=frozenset({503}))


def voices() -> Call[dict[str, Any]]:
    """``GET /v1/audio/voices``: ``{"voices": [...], "aliases": {...}, "default": "..."}``."""
    return Call(Request("GET", "/v1/audio/voices"), json_object)


def models() -> Call[list[dict[str, Any]]]:
    """``GET /v1/models``: the model objects."""
    return Call(Request("GET", "/v1/models"), lambda r: json_object(r)["data"])


def model(model_id: str) -> Call[dict[str, Any]]:
    """``GET /v1/models/{id}`` (``model_not_found`` if it is not served)."""
    return Call(Request("GET", f"/v1/models/{model_id}"), json_object)


# --- speech --------------------------------------------------------------------------------------


def speech_body(
    text: str,
    voice: str,
    model: str,
    response_format: str,
    speed: float,
    instructions: str | None = None,
    stream: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/audio/speech`` (and of speech jobs and captioned speech)."""
    body: dict[str, Any] = {
        "model": model,
        "input": text,
        "voice": voice,
        "response_format": response_format,
        "speed": speed,
        **({} if stream is None else {"stream": stream}),
        **(extra or {}),
    }
    if instructions is not None:
        body["instructions"] = instructions
    return body


def speech(
    text: str,
    *,
    voice: str = "alloy",
    model: str = "tts-1",
    response_format: str = "mp3",
    speed: float = 1.0,
    instructions: str | None = None,
    **extra: Any,
) -> Call[bytes]:
    """``POST /v1/audio/speech``: the whole file (exact container sizes). ``extra``: more fields
    (``volume_multiplier``, ``normalization_options``)."""
    body = speech_body(text, voice, model, response_format, speed, instructions, False, extra)
    return Call(Request("POST", "/v1/audio/speech", json=body), content)


def stream_speech(
    text: str,
    *,
    voice: str = "alloy",
    model: str = "tts-1",
    response_format: str = "mp3",
    speed: float = 1.0,
    instructions: str | None = None,
    **extra: Any,
) -> StreamCall[bytes]:
    """``POST /v1/audio/speech``, streamed: audio chunks as the server synthesizes them (fields as in
    :meth:`speech`)."""
    body = speech_body(text, voice, model, response_format, speed, instructions, True, extra)
    return StreamCall(Request("POST", "/v1/audio/speech", json=body), Passthrough)


def captioned_speech(
    text: str,
    *,
    voice: str = "alloy",
    model: str = "tts-1",
    response_format: str = "wav",
    speed: float = 1.0,
) -> Call[CaptionedSpeech]:
    """``POST /dev/captioned_speech`` (not streamed): the audio and its word timestamps."""
    body = speech_body(text, voice, model, response_format, speed, None, False)
    return Call(Request("POST", "/dev/captioned_speech", json=body), lambda r: captioned(json_object(r)))


def captioned(obj: dict[str, Any]) -> CaptionedSpeech:
    """A ``/dev/captioned_speech`` response body, typed."""
    return CaptionedSpeech(
        base64.b64decode(obj.get("audio", "")),
        str(obj.get("audio_format", "")),
        tuple(word(w, "start_time", "end_time") for w in obj.get("timestamps", ())),
    )


def phonemize(text: str, *, language: str = "a", voice: str | None = None) -> Call[dict[str, Any]]:
    """``POST /dev/phonemize``: ``{"phonemes", "tokens", "voice"}``."""
    body: dict[str, Any] = {"text": text, "language": language}
    if voice is not None:
        body["voice"] = voice
    return Call(Request("POST", "/dev/phonemize", json=body), json_object)


def generate_from_phonemes(
    phonemes: str, *, voice: str, response_format: str = "wav", speed: float = 1.0
) -> Call[bytes]:
    """``POST /dev/generate_from_phonemes``: the audio file."""
    body = {"phonemes": phonemes, "voice": voice, "response_format": response_format, "speed": speed}
    return Call(Request("POST", "/dev/generate_from_phonemes", json=body), content)


# --- transcription -------------------------------------------------------------------------------


def _form(
    model: str,
    language: str | None,
    prompt: str | None,
    response_format: str,
    temperature: float | None,
    timestamp_granularities: Iterable[str] | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    form: dict[str, Any] = {"model": model, "response_format": response_format}
    if language is not None:
        form["language"] = language
    if prompt is not None:
        form["prompt"] = prompt
    if temperature is not None:
        form["temperature"] = str(temperature)
    if timestamp_granularities:
        form["timestamp_granularities[]"] = list(timestamp_granularities)
    if stream:
        form["stream"] = "true"
    return form


def _transcript(response_format: str) -> Any:
    def read(response: Response) -> str | dict[str, Any]:
        if response_format in _JSON_FORMATS:
            result: dict[str, Any] = json_object(response)
            return result
        return response.text

    return read


def transcribe(
    file: FileInput,
    *,
    model: str = "whisper-1",
    language: str | None = None,
    prompt: str | None = None,
    response_format: str = "json",
    temperature: float | None = None,
    timestamp_granularities: Iterable[str] | None = None,
    filename: str | None = None,
) -> Call[str | dict[str, Any]]:
    """``POST /v1/audio/transcriptions``: a dict for ``json``/``verbose_json``, else the text
    (``text``, ``srt``, ``vtt``). ``file``: bytes, a path or a binary file object."""
    form = _form(model, language, prompt, response_format, temperature, timestamp_granularities)
    request = Request("POST", "/v1/audio/transcriptions", form=form, upload=Upload(file, filename))
    return Call(request, _transcript(response_format))


def translate(
    file: FileInput,
    *,
    model: str = "whisper-1",
    prompt: str | None = None,
    response_format: str = "json",
    temperature: float | None = None,
    filename: str | None = None,
) -> Call[str | dict[str, Any]]:
    """``POST /v1/audio/translations`` (English text), shaped like :meth:`transcribe`."""
    form = _form(model, None, prompt, response_format, temperature)
    request = Request("POST", "/v1/audio/translations", form=form, upload=Upload(file, filename))
    return Call(request, _transcript(response_format))


def stream_transcription(
    file: FileInput,
    *,
    model: str = "whisper-1",
    language: str | None = None,
    prompt: str | None = None,
    temperature: float | None = None,
    filename: str | None = None,
) -> StreamCall[TranscriptionEvent]:
    """``POST /v1/audio/transcriptions`` with ``stream=true``: a :class:`TranscriptionDelta` per
    recognised segment, then one :class:`TranscriptionDone` (server-sent events)."""
    form = _form(model, language, prompt, "json", temperature, stream=True)
    request = Request("POST", "/v1/audio/transcriptions", form=form, upload=Upload(file, filename))
    return StreamCall(request, TranscriptionEvents)


def transcription_event(data: str) -> TranscriptionEvent | None:
    """The typed event of one streamed-transcription SSE event's data (``None`` for unknown types
    and ``[DONE]``); an error event is raised as :class:`~voxserve.client.ClientError`."""
    event = typed(speech_wire.parse_transcription_event, data) if data != "[DONE]" else None
    if isinstance(event, speech_wire.TranscriptTextDelta):
        return TranscriptionDelta(event.delta)
    if isinstance(event, speech_wire.TranscriptTextDone):
        return TranscriptionDone(event.text)
    if isinstance(event, speech_wire.TranscriptionError):
        raise ClientError(event.message, code=event.code, error_type=event.error_type)
    return None


class TranscriptionEvents:
    """The :data:`~voxserve.client.TranscriptionEvent` s of a streamed transcription's body."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()

    def feed(self, chunk: bytes | str) -> list[TranscriptionEvent]:
        try:
            events = self._sse.feed(chunk)
        except SSEError as exc:
            raise ClientError(str(exc), code="invalid_event") from None
        return [e for e in (transcription_event(event.data) for event in events) if e is not None]

    def end(self) -> list[TranscriptionEvent]:
        last = self._sse.flush()
        event = transcription_event(last.data) if last is not None else None
        return [event] if event is not None else []
