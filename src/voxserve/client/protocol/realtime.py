"""``WS /v1/realtime?intent=transcription`` (OpenAI Realtime, GA ``session.update``), sans I/O.

The events are :mod:`voxserve.protocol.realtime`'s; the ``session.update`` is built here (it names
only the fields the caller set)."""

from __future__ import annotations

import json
from typing import Any, Literal

from voxserve.client.errors import ClientError, closed_early
from voxserve.client.events import RealtimeCompleted, RealtimeDelta, RealtimeEvent, RealtimeFailed
from voxserve.client.protocol.session import (
    AudioSource,
    Outgoing,
    StreamProtocol,
    cut_audio,
    typed,
    unexpected,
)
from voxserve.protocol import realtime as wire

__all__ = ["APPEND_BYTES", "RealtimeProtocol", "realtime_transcribe"]

APPEND_BYTES = 48000
"""Raw bytes per ``input_audio_buffer.append`` (1 s of 24 kHz pcm16; 64 KB once in base64)."""

_COMMIT_ID = "voxserve_client_commit"
_COMMIT = wire.InputAudioBufferCommit(event_id=_COMMIT_ID).to_text()
# The barrier after the last audio: the server answers ``input_audio_buffer.cleared`` once it has
# handled every earlier event, so every utterance it will ever commit has been committed by then.
_BARRIER = wire.InputAudioBufferClear(event_id="voxserve_client_end").to_text()


class RealtimeProtocol(StreamProtocol[RealtimeEvent]):
    """One transcription session. It is :attr:`finished` once the audio has ended (the barrier is
    answered) and every committed item has its transcript (or its failure)."""

    path = "/v1/realtime?intent=transcription"
    unit = (bytes, bytearray, memoryview)

    def __init__(self, audio: AudioSource, update: dict[str, Any]) -> None:
        super().__init__(audio)
        self.update = update
        self.created = False
        self.committed: set[str] = set()
        self.transcribed: set[str] = set()
        self.ended = False

    def handshake(self, event: dict[str, Any]) -> list[Outgoing]:
        if not self.created:  # session.created (or the beta transcription_session.created)
            self.created = True
            return [json.dumps(self.update)]
        if event.get("type") != "session.updated":
            raise unexpected(event)
        self.opened = True
        return []

    def pieces(self, item: Any) -> list[bytes]:
        return cut_audio(item, APPEND_BYTES)

    def send(self, piece: bytes) -> str:
        return wire.InputAudioBufferAppend(piece).to_text()

    def finish(self) -> list[Outgoing]:
        return [_COMMIT, _BARRIER]

    def receive(self, message: str | bytes) -> list[RealtimeEvent]:
        result = self.handle(typed(wire.parse_server_event, message))
        self.finished = self.ended and self.committed <= self.transcribed
        return [result] if result is not None else []

    def handle(self, event: wire.RealtimeServerEvent | None) -> RealtimeEvent | None:
        """The typed event of one server event, if it is one a caller sees."""
        if isinstance(event, wire.Committed):
            self.committed.add(event.item_id)
        elif isinstance(event, wire.TranscriptionDelta):
            return RealtimeDelta(event.item_id, event.delta)
        elif isinstance(event, wire.TranscriptionCompleted):
            self.transcribed.add(event.item_id)
            return RealtimeCompleted(event.item_id, event.transcript)
        elif isinstance(event, wire.TranscriptionFailed):
            self.transcribed.add(event.item_id)
            return RealtimeFailed(event.item_id, event.code, event.message)
        elif isinstance(event, wire.Cleared):
            self.ended = True
        elif isinstance(event, wire.RealtimeErrorEvent):
            if event.code == "input_audio_buffer_commit_empty" and event.client_event_id in (
                None,
                _COMMIT_ID,
            ):
                return None  # the audio ended between utterances: nothing left to commit
            raise ClientError(event.message, code=event.code, error_type=event.error_type, param=event.param)
        return None

    def closed(self, code: int | None, reason: str) -> ClientError | None:
        return None if self.finished else closed_early("the server closed the session early", code)


def realtime_transcribe(
    audio: AudioSource,
    *,
    model: str = "whisper-1",
    language: str | None = "en",
    prompt: str | None = None,
    audio_format: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm",
    turn_detection: dict[str, Any] | Literal["server_vad"] | None = "server_vad",
) -> RealtimeProtocol:
    """``WS /v1/realtime?intent=transcription`` (OpenAI Realtime, GA ``session.update``): send
    ``audio`` (``audio/pcm``: pcm16 at 24 kHz; ``audio/pcmu``/``audio/pcma``: G.711 at 8 kHz),
    yield :class:`RealtimeDelta` (confirmed words), :class:`RealtimeCompleted` (each utterance's
    transcript) and :class:`RealtimeFailed`. Utterances end by server VAD, or with
    ``turn_detection=None`` only when the audio ends (it is committed then, in both modes)."""
    fmt: dict[str, Any] = {"type": audio_format}
    if audio_format == "audio/pcm":
        fmt["rate"] = 24000
    transcription: dict[str, Any] = {"model": model, "language": language}
    if prompt is not None:
        transcription["prompt"] = prompt
    td = {"type": "server_vad"} if turn_detection == "server_vad" else turn_detection
    audio_input = {"format": fmt, "transcription": transcription, "turn_detection": td}
    update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}
    return RealtimeProtocol(audio, update)
