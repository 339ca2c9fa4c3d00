"""The events a :class:`~voxserve.stt.session.StreamingSession` emits, and the decodes it asks for.

Plain frozen values, no behaviour: :class:`SpeechStarted` and :class:`SpeechStopped` mark an
utterance, :class:`Partial` and :class:`Final` carry its transcript, :class:`UtteranceFailed` says it
gets none, :class:`Lag` reports backpressure, and :class:`DecodeRequest` asks the driver to run the
decoder. :mod:`voxserve.stt.session` re-exports them all; times are seconds of audio from the start
of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from voxserve.engines.base import FloatAudio, Word

__all__ = [
    "DecodeRequest",
    "Event",
    "Final",
    "Lag",
    "Partial",
    "SpeechStarted",
    "SpeechStopped",
    "UtteranceFailed",
]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began: ``start_s`` is the start of its first speech frame."""

    utterance_id: int
    start_s: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The utterance ended: ``end_s`` is the end of its last speech frame (or the commit/cut time)."""

    utterance_id: int
    end_s: float


@dataclass(frozen=True, slots=True, eq=False)
class DecodeRequest:
    """Please transcribe ``audio`` and report back with the same ``request_id``.

    ``audio`` (16 kHz float32; the driver must not modify it: a failed final is re-sent with the
    same array) is the whole utterance so far, prefix padding included, plus tail padding for
    finals; ``start_s`` is the stream time of ``audio[0]`` (with ``keep_from_s``: ``start_s +
    keep_from_s`` is the stream time of the utterance's own piece). Word times in the result are
    taken relative to ``audio[0]``.
    """

    request_id: int
    utterance_id: int
    kind: Literal["partial", "final"]
    audio: FloatAudio
    start_s: float
    prompt: str
    keep_from_s: float | None = None
    """Set when ``audio`` begins with earlier speech heard again for context
    (:attr:`~voxserve.stt.session.SessionConfig.context_audio_s`): the session keeps only the words
    whose middle is at or after this time in ``audio``, so the driver must ask for word times."""


@dataclass(frozen=True, slots=True)
class Partial:
    """An interim transcript of the current utterance.

    ``committed_text`` only ever grows within an utterance (its words never change);
    ``tentative_text`` is the unstable rest, with ``stability`` its rough chance of surviving.
    ``end_s`` is the end of the audio the hypothesis heard.
    """

    utterance_id: int
    committed_text: str
    tentative_text: str
    stability: float
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Final:
    """The transcript of a whole utterance; never revised. Word times are stream times."""

    utterance_id: int
    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...] = ()
    confidence: float = 0.0
    """The model's confidence in ``text``, 0 to 1: its segments' confidences, weighted by their
    duration; 0.0 when the engine gives none (Google's "not set")."""


@dataclass(frozen=True, slots=True)
class UtteranceFailed:
    """The utterance gets no :class:`Final`: its decode failed twice, or
    :meth:`~voxserve.stt.session.StreamingSession.clear` dropped it (OpenAI's
    ``conversation.item.input_audio_transcription.failed``)."""

    utterance_id: int
    start_s: float
    end_s: float
    reason: Literal["decode_failed", "cleared"]


@dataclass(frozen=True, slots=True)
class Lag:
    """Backpressure telemetry: the in-flight decode was requested ``lag_s`` seconds of audio ago.

    ``dropped_partials`` counts every partial opportunity this session has skipped so far.
    """

    lag_s: float
    dropped_partials: int


Event: TypeAlias = SpeechStarted | SpeechStopped | DecodeRequest | Partial | Final | UtteranceFailed | Lag
"""Everything a session can emit."""
