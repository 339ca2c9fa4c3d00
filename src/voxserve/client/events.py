"""What the client returns: typed results and events, one frozen dataclass each.

The sans-I/O core (:mod:`voxserve.client.protocol`) builds them from the server's messages; both
front ends yield the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "CaptionedSpeech",
    "ChatCancelled",
    "ChatError",
    "ChatEvent",
    "ChatResponseDelta",
    "ChatResponseDone",
    "ChatResponseStarted",
    "ChatSpeechStarted",
    "ChatTranscript",
    "RealtimeCompleted",
    "RealtimeDelta",
    "RealtimeEvent",
    "RealtimeFailed",
    "Sentence",
    "SpeakDone",
    "SpeakEvent",
    "TranscriptResult",
    "TranscriptionDelta",
    "TranscriptionDone",
    "TranscriptionEvent",
    "Word",
]


@dataclass(frozen=True)
class Word:
    """A word with its times, in seconds of audio, and (for speech) the input characters it speaks."""

    word: str
    start_s: float
    end_s: float
    source_start: int | None = None
    """Where the word's source starts in the text sent (``$100`` for "hundred"); None if unknown."""
    source_end: int | None = None


@dataclass(frozen=True)
class Sentence:
    """A fragment of text whose audio starts next, at ``start_s`` seconds of the stream's audio."""

    text: str
    start_s: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class SpeakDone:
    """Everything was spoken: ``audio_s`` seconds of audio in all."""

    audio_s: float


SpeakEvent: TypeAlias = bytes | Sentence | SpeakDone
"""What :meth:`AsyncClient.speak_stream_events` yields: audio bytes, or an event."""


@dataclass(frozen=True)
class TranscriptResult:
    """A result of ``WS /v1/stream/transcribe``: an interim (``is_final`` false: replaces the previous
    interim) or a final (never revised). ``end_s``: seconds of audio from the start of the stream."""

    transcript: str
    is_final: bool
    stability: float
    end_s: float
    confidence: float = 0.0


@dataclass(frozen=True)
class TranscriptionDelta:
    """A recognised segment of a streamed transcription (``stream=true``)."""

    delta: str


@dataclass(frozen=True)
class TranscriptionDone:
    """The end of a streamed transcription, with the full text."""

    text: str


TranscriptionEvent: TypeAlias = TranscriptionDelta | TranscriptionDone


@dataclass(frozen=True)
class RealtimeDelta:
    """Newly confirmed words of item ``item_id`` (append-only)."""

    item_id: str
    delta: str


@dataclass(frozen=True)
class RealtimeCompleted:
    """The final transcript of item ``item_id`` (one utterance)."""

    item_id: str
    transcript: str


@dataclass(frozen=True)
class RealtimeFailed:
    """Item ``item_id`` could not be transcribed; the session goes on."""

    item_id: str
    code: str
    message: str


RealtimeEvent: TypeAlias = RealtimeDelta | RealtimeCompleted | RealtimeFailed


@dataclass(frozen=True)
class CaptionedSpeech:
    """Audio with word timestamps (``/dev/captioned_speech``)."""

    audio: bytes
    audio_format: str
    words: tuple[Word, ...]


@dataclass(frozen=True)
class ChatTranscript:
    """What the user said (``WS /v1/stream/chat``): an interim (``is_final`` false: replaces the
    previous interim) or a final, which becomes a user turn."""

    text: str
    is_final: bool
    stability: float = 0.0


@dataclass(frozen=True)
class ChatSpeechStarted:
    """The server's VAD heard the user start speaking, ``time_s`` seconds into the audio sent."""

    time_s: float


@dataclass(frozen=True)
class ChatResponseStarted:
    """The LLM starts answering ``user_text`` (a final transcript or a typed turn)."""

    response_id: int
    user_text: str


@dataclass(frozen=True)
class ChatResponseDelta:
    """More text of answer ``response_id``, as the LLM writes it."""

    response_id: int
    delta: str


@dataclass(frozen=True)
class ChatResponseDone:
    """Answer ``response_id`` is complete (``interrupted``: cut short by barge-in or ``cancel``; its
    audio may still be coming unless it was interrupted)."""

    response_id: int
    text: str
    interrupted: bool


@dataclass(frozen=True)
class ChatCancelled:
    """A cancel took effect: no audio of the dropped answer follows; stop playback and drop the
    audio buffered so far."""

    dropped_fragments: int


@dataclass(frozen=True)
class ChatError:
    """A non-fatal error event (``invalid_text``, ``llm_unavailable``, ...): the chat goes on. Fatal
    errors (a bad config, no LLM configured, an abnormal close) are raised as :class:`ClientError`."""

    code: str
    message: str


ChatEvent: TypeAlias = (
    bytes
    | Sentence
    | ChatTranscript
    | ChatSpeechStarted
    | ChatResponseStarted
    | ChatResponseDelta
    | ChatResponseDone
    | ChatCancelled
    | ChatError
)
"""What a chat session yields: the answers' audio as ``bytes`` (one continuous stream in the chosen
``response_format``), a :class:`Sentence` before each fragment's audio, and the chat events."""
