"""``WS /v1/stream/transcribe`` (the mobile-app protocol), sans I/O: raw PCM up, results down.

The server's events are read with :mod:`voxserve.protocol.transcribe`; the config is built here, since
the client sends ``language: null`` for the server's default."""

from __future__ import annotations

import json
from typing import Any, Literal

from voxserve.client.errors import ClientError
from voxserve.client.events import TranscriptResult
from voxserve.client.protocol.session import (
    AUDIO_FRAME_BYTES,
    END,
    AudioSource,
    Outgoing,
    StreamProtocol,
    cut_audio,
    typed,
)
from voxserve.protocol import transcribe as wire
from voxserve.protocol.common import ErrorEvent

__all__ = ["TranscribeProtocol", "results", "transcribe_stream"]


def results(event: wire.ResultEvent) -> list[TranscriptResult]:
    """The results of a ``{"type": "result", "results": [...]}`` event."""
    out = []
    for r in event.results:
        best = r.alternatives[0] if r.alternatives else wire.Alternative("", 0.0)
        stability, end = float(r.stability), float(r.result_end_time)
        out.append(TranscriptResult(best.transcript, r.is_final, stability, end, float(best.confidence)))
    return out


class TranscribeProtocol(StreamProtocol[TranscriptResult]):
    """One transcription session; frames are cut to what the server's ``ready`` event allows."""

    path = "/v1/stream/transcribe"
    unit = (bytes, bytearray, memoryview)

    def __init__(self, audio: AudioSource, config: dict[str, Any]) -> None:
        super().__init__(audio)
        self.config = config
        self.frame_bytes = AUDIO_FRAME_BYTES

    def start(self) -> list[Outgoing]:
        return [json.dumps(self.config)]

    def handshake(self, event: dict[str, Any]) -> list[Outgoing]:
        self.frame_bytes = min(AUDIO_FRAME_BYTES, int(event.get("max_message_bytes", AUDIO_FRAME_BYTES)))
        self.opened = True
        return []

    def pieces(self, item: Any) -> list[bytes]:
        return cut_audio(item, self.frame_bytes)

    def send(self, piece: bytes) -> bytes:
        return piece

    def finish(self) -> list[Outgoing]:
        return [END]

    def receive(self, message: str | bytes) -> list[TranscriptResult]:
        event = typed(wire.parse_server_event, message)
        if isinstance(event, ErrorEvent):
            raise ClientError(event.message, code=event.code)
        return results(event) if isinstance(event, wire.ResultEvent) else []


def transcribe_stream(
    audio: AudioSource,
    *,
    sample_rate_hz: int = 16000,
    encoding: Literal["linear16", "float32"] = "linear16",
    language: str | None = "en",
    interim_results: bool = True,
) -> TranscribeProtocol:
    """``WS /v1/stream/transcribe``: send raw PCM (``linear16`` s16le or ``float32`` f32le at
    ``sample_rate_hz``) as it comes — send at the pace it is recorded, a file at once is fine
    too — and yield :class:`TranscriptResult` s: interims (if asked) and finals."""
    config = {
        "type": "config",
        "sample_rate_hz": sample_rate_hz,
        "encoding": encoding,
        "language": language,
        "interim_results": interim_results,
    }
    return TranscribeProtocol(audio, config)
