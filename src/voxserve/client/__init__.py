"""voxserve's Python client: every route of a running server, sync and async.

:class:`AsyncClient` is built on ``httpx.AsyncClient`` and websockets' asyncio client; :class:`Client`
has the same methods on ``httpx.Client`` and websockets' sync client (no event loop per call)::

    from voxserve import Client

    with Client("http://127.0.0.1:8000") as client:
        mp3 = client.speech("Hello from voxserve.", voice="alloy")
        for chunk in client.speak_stream(["The answer", " is forty", "-two."]):
            ...  # s16le mono 24 kHz PCM, as soon as the first fragment is speakable
        answer, audio = client.ask("What is the capital of France?")  # WS /v1/stream/chat (an LLM)

``chat(...)`` opens a voice-chat session (typed turns, microphone audio, cancel, end) whose typed
events — :data:`ChatEvent` — are iterated while sending.

Every failure the server reports — an HTTP error envelope ``{"error": {"message", "type", "param",
"code"}}``, a WebSocket ``{"type": "error", "code", "message"}`` event or an abnormal close code — is
raised as :class:`ClientError` (a :class:`voxserve.errors.VoxserveError`) carrying the server's
``code``, ``message`` and HTTP ``status`` (or WebSocket ``close_code``). Transport failures (refused
connection, aborted body) are :class:`ClientError` too, with code ``connection_error``.

Streaming methods are generators: iterate them to the end, or close them (``contextlib.closing`` /
``contextlib.aclosing``) when you stop early, so the connection is released at once.

Layout (as in the websockets library): :mod:`voxserve.client.protocol` is the sans-I/O core — every
HTTP route and every WebSocket protocol's state machine, written once; :mod:`voxserve.client.sync`
and :mod:`voxserve.client.asyncio` are the front ends that move the bytes. Results and events are in
:mod:`voxserve.client.events`, errors in :mod:`voxserve.client.errors`.
"""

from __future__ import annotations

from voxserve.client.asyncio import AsyncChatSession, AsyncClient, text_pieces
from voxserve.client.common import DEFAULT_BASE_URL
from voxserve.client.errors import ClientError, error_from_close, error_from_event, error_from_response
from voxserve.client.events import (
    CaptionedSpeech,
    ChatCancelled,
    ChatError,
    ChatEvent,
    ChatResponseDelta,
    ChatResponseDone,
    ChatResponseStarted,
    ChatSpeechStarted,
    ChatTranscript,
    RealtimeCompleted,
    RealtimeDelta,
    RealtimeEvent,
    RealtimeFailed,
    Sentence,
    SpeakDone,
    SpeakEvent,
    TranscriptionDelta,
    TranscriptionDone,
    TranscriptionEvent,
    TranscriptResult,
    Word,
)
from voxserve.client.protocol.http import FileInput, SSEParser
from voxserve.client.protocol.jobs import FileTarget
from voxserve.client.protocol.session import AudioSource, TextSource
from voxserve.client.sync import ChatSession, Client

__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncChatSession",
    "AsyncClient",
    "AudioSource",
    "CaptionedSpeech",
    "ChatCancelled",
    "ChatError",
    "ChatEvent",
    "ChatResponseDelta",
    "ChatResponseDone",
    "ChatResponseStarted",
    "ChatSession",
    "ChatSpeechStarted",
    "ChatTranscript",
    "Client",
    "ClientError",
    "FileInput",
    "FileTarget",
    "RealtimeCompleted",
    "RealtimeDelta",
    "RealtimeEvent",
    "RealtimeFailed",
    "SSEParser",
    "Sentence",
    "SpeakDone",
    "SpeakEvent",
    "TextSource",
    "TranscriptResult",
    "TranscriptionDelta",
    "TranscriptionDone",
    "TranscriptionEvent",
    "Word",
    "error_from_close",
    "error_from_event",
    "error_from_response",
    "text_pieces",
]
