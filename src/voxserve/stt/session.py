# Over the project's ~600-line module size on purpose: StreamingSession is one state machine (VAD
# states, the decode slot, the finals queue) whose methods share its invariants and are read as a
# whole; its events and sample buffers live in stt/events.py and stt/buffers.py.
"""The streaming-transcription state machine (sans-I/O).

A :class:`StreamingSession` turns a stream of 16 kHz float32 mono audio into typed events. It does no
I/O and calls no model except the small VAD it is given: when it wants Whisper to run, it returns a
:class:`DecodeRequest`, and its driver later reports the outcome with
:meth:`~StreamingSession.on_decode_result` or :meth:`~StreamingSession.on_decode_failed`. The same
core therefore serves every adapter (OpenAI Realtime, the Google-style WebSocket, Wyoming, the UI),
and tests drive it with arrays, a fake VAD and a fake decoder.

Voice activity, frame by frame
------------------------------

Fed audio is cut into VAD frames (``vad.frame_samples``, 512 samples = 32 ms); a partial frame waits
for the next :meth:`~StreamingSession.feed`. A frame is *speech* when its probability is at least
``vad_threshold``. Per frame the session is in one of four states::

            speech                 min_speech_ms of speech in a row
    IDLE ──────────► CANDIDATE ───────────────────────────────────► SPEECH ◄──┐
      ▲                  │ silence (a blip: dropped)                │ silence  │ speech
      └──────────────────┘                                          ▼          │ (speculative
      ▲                                                          TRAILING ─────┘  result dropped)
      └─────── min_silence_ms of silence: SpeechStopped, Final ──────┘

* ``IDLE``: only a ring of the last ``prefix_padding_ms`` is kept, so the first phoneme is not clipped.
* ``CANDIDATE``: speech began but is not yet ``min_speech_ms`` long; shorter blips never reach the
  client. On confirmation :class:`SpeechStarted` reports the first speech frame's time.
* ``SPEECH``: once ``first_partial_ms`` of the utterance has been fed, then every
  ``partial_interval_ms`` of new audio, when the slot is free (see below), the whole utterance so
  far (with its prefix padding) is sent as a ``partial`` decode; results go through
  :class:`~voxserve.stt.agreement.LocalAgreement` into :class:`Partial` events whose committed words
  never change.
* ``TRAILING``: silence after speech. With ``speculative_final`` a ``final`` decode of the utterance
  (plus the silence fed so far, up to ``speech_pad_ms``) is requested at once, so the transcript is
  usually ready when ``min_silence_ms`` has passed: then that result *is* the :class:`Final` and no
  second decode runs. If speech resumes first, the speculative decode is dropped (its result, when
  it comes, is ignored) and the utterance goes on.

An utterance that reaches ``max_utterance_s`` (Whisper sees at most 30 s) is cut at the quietest
point of its last ``cut_search_s``: the middle of the last run of frames with the lowest VAD
probability, or the last frame when none of them is below the threshold. The first part gets its
:class:`SpeechStopped` and final decode; the rest continues at once as a new utterance. (One that
reaches the limit while ``TRAILING`` simply ends there, as if the silence had lasted.)

Without VAD (``vad_threshold=None``, OpenAI ``turn_detection: null``), all audio fed since the last
:meth:`~StreamingSession.commit` is one utterance: it starts (:class:`SpeechStarted`) with the first
sample, and only ``commit``, ``finish`` or the length cut (at the quietest frame by RMS) end it.
Given a VAD all the same and ``commit_speculation_ms``, the session still listens, for speed only:
once that much silence follows speech, it requests a speculative final of the utterance so far. A
commit with no speech since makes that result the :class:`Final` (its ``end_s`` is the commit's);
speech before the commit drops it (its answer is shown as a partial), as in ``TRAILING``. The
client's own VAD commits later than ours would have (pipecat's Silero waits 0.5-0.8 s), so the
transcript is usually ready when the commit comes. No event ever depends on this VAD.

Decodes: one slot, partials preempted by finals, finals never dropped
---------------------------------------------------------------------

The session has one decode *slot*. Final decodes wait in a FIFO queue and go out, in utterance
order, as soon as the slot is free (the request is returned from whichever call freed it). With
``preempt_partials`` (the default), a final that must go out while a *partial* holds the slot does
not wait for it: that partial is *abandoned* (it frees nothing when it is reported; its result is
still shown as a Partial if its utterance goes on and nothing newer was shown, as when an early final
preempts it while the speaker pauses) and the final's request is returned at once. So at any
time the driver has at most one partial and at most one final outstanding, never two finals; the
driver must be able to run two decodes at once. Without ``preempt_partials`` at most one decode is
outstanding and a final waits for the partial's result.

Partials are requested only when the slot is free, no final waits and no abandoned partial is still
outstanding (so never while a final is outstanding, nor two at a time); a partial opportunity that
passes otherwise is counted in ``dropped_partials``. A result for a decode the session no longer
wants (a partial of an utterance that has ended, a speculative final after speech resumed, anything
of a cleared utterance) frees the slot (unless abandoned) and is otherwise ignored. A failed final is
retried once, then reported as :class:`UtteranceFailed`. Every utterance that got a
:class:`SpeechStarted` gets exactly one :class:`Final` or :class:`UtteranceFailed`, and Finals come
in utterance order (a ``cleared`` failure is reported at once, possibly before an earlier
utterance's Final).

Bounds: the utterance buffer is preallocated for ``max_utterance_s`` plus two frames; between
utterances only the prefix ring is kept. If the audio waiting in this session (queued finals plus
the current utterance plus the new samples) would exceed ``max_buffer_s``, :meth:`feed` raises
:class:`~voxserve.errors.Unavailable` (``code="transcription_backlog"``) without consuming anything:
the decoder is far slower than real time and the driver should close the stream.

All times in events are seconds of audio from the start of the stream (the first sample fed).

The events and the sample buffers are defined in :mod:`voxserve.stt.events` and
:mod:`voxserve.stt.buffers`; the events are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import numpy as np

from voxserve.engines.base import FloatAudio, Segment
from voxserve.errors import Unavailable
from voxserve.stt.agreement import LocalAgreement
from voxserve.stt.buffers import EMPTY, SampleBuffer, SampleRing
from voxserve.stt.context import Heard, HeardSpeech, Joined, keep_after
from voxserve.stt.events import (
    DecodeRequest,
    Event,
    Final,
    Lag,
    Partial,
    SpeechStarted,
    SpeechStopped,
    UtteranceFailed,
)

__all__ = [
    "DEFAULT_FRAME_SAMPLES",
    "DecodeRequest",
    "Event",
    "Final",
    "Lag",
    "Partial",
    "SessionConfig",
    "SpeechStarted",
    "SpeechStopped",
    "StreamingSession",
    "UtteranceFailed",
    "VadProtocol",
]

DEFAULT_FRAME_SAMPLES = 512
"""Frame size used without a VAD (manual commit mode): Silero's 32 ms at 16 kHz."""
LAG_REPORT_S = 1.0
"""A :class:`Lag` event is sent while the in-flight decode is older than this much audio."""
MAX_FINAL_ATTEMPTS = 2
"""A final decode that fails is retried once (a worker may have crashed and restarted)."""
PROMPT_CONTEXT_CHARS = 200
"""How much of the previous Finals' text is passed to Whisper as its prompt, for continuity."""


@dataclass(frozen=True)
class SessionConfig:
    """The settings of one streaming session (OpenAI ``turn_detection`` names in brackets).

    Raises ``ValueError`` for values that make no sense; adapters validate client input first and
    report their own errors.
    """

    sample_rate: int = 16000
    """Rate of the audio given to :meth:`StreamingSession.feed`: always float32 mono 16 kHz (the
    driver resamples); kept as a field so that every time conversion names it."""
    vad_threshold: float | None = 0.5
    """Speech probability at or above which a frame is speech [``threshold``]; None turns VAD off:
    only :meth:`StreamingSession.commit` ends an utterance [``turn_detection: null``]."""
    min_silence_ms: int = 500
    """Silence that ends an utterance [``silence_duration_ms``]."""
    prefix_padding_ms: int = 300
    """Audio before the first speech frame that is sent with the utterance [``prefix_padding_ms``]."""
    speech_pad_ms: int = 200
    """Audio after the last speech frame that is sent with the final decode (as much as was fed)."""
    min_speech_ms: int = 150
    """Speech shorter than this (in consecutive frames) is a blip and is ignored."""
    partial_interval_ms: int = 500
    """New audio between partial decodes during speech; 0 disables partials."""
    first_partial_ms: int = 300
    """Audio from the utterance start before its first partial decode (later ones follow
    ``partial_interval_ms``); 0 disables partials."""
    preempt_partials: bool = True
    """A final that must go out while a partial decode is in flight is sent at once (the partial is
    abandoned) instead of waiting for it; the driver then runs up to two decodes at once."""
    finals_ahead: bool = True
    """A final that waits behind another final in flight is sent at once too, and delivered after it
    (the driver then runs up to two decodes at once). A client that commits at every short pause
    (LiveKit's VAD: 250 ms; pipecat's on "1. 2. 3.") otherwise waits a whole decode per earlier
    segment. Its prompt lacks the text of the final still being decoded."""
    max_utterance_s: float = 28.0
    """Longest utterance (prefix padding included) before it is cut; Whisper's window is 30 s."""
    cut_search_s: float = 5.0
    """How far back from ``max_utterance_s`` to look for the quietest point to cut at."""
    speculative_final: bool = True
    """Request the final decode when silence begins rather than when ``min_silence_ms`` has passed."""
    max_buffer_s: float = 60.0
    """Most audio this session holds (queued finals and the current utterance) before it gives up."""
    interim_results: bool = True
    """Whether to produce :class:`Partial` events at all."""
    prompt: str = ""
    """Text always put before the decoder prompt (vocabulary, spelling of names)."""
    commit_speculation_ms: int = 0
    """Without server VAD (``vad_threshold=None``) but with a VAD given: silence after speech after
    which the utterance so far is decoded ahead of the client's commit (0: never)."""
    commit_speculation_threshold: float = 0.5
    """Speech probability at or above which a frame counts as speech for ``commit_speculation_ms``."""
    context_max_gap_s: float = math.inf
    """The previous Finals' text is put in the prompt (after ``prompt``) of an utterance that starts
    at most this many seconds after the last Final's end: continuity within a speaker's sentence, no
    priming by an unrelated earlier turn ("1. 2. 3." made "eight of spades" come out as "8. 8. 4.")."""
    context_audio_s: float = 10.0
    """A final decode hears the audio of the previous utterances again first, back to this many seconds
    before its speech starts, and keeps only its own words (:mod:`voxserve.stt.context`); 0 never.
    Whisper hears a short piece after a pause much better inside the speech before it."""
    context_audio_gap_s: float = 2.5
    """Longest pause between utterances that ``context_audio_s`` still reaches across."""
    context_audio_below_s: float = 3.0
    """Only an utterance with less speech than this hears the earlier speech again: a longer one has
    context of its own, and its final would pay the longer decode for little (speech_dev,
    ``stream_wer_bench``: WER within the run-to-run spread of no limit, pauses stretched 0.4 points
    better)."""

    @property
    def uses_vad(self) -> bool:
        """Whether a session with these settings runs a VAD (turn detection, or speculation only)."""
        return self.vad_threshold is not None or self.commit_speculation_ms > 0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if self.vad_threshold is not None and not 0.0 <= self.vad_threshold <= 1.0:
            raise ValueError("vad_threshold must be in [0, 1] or None")
        for name in (
            "min_silence_ms",
            "prefix_padding_ms",
            "speech_pad_ms",
            "min_speech_ms",
            "partial_interval_ms",
            "first_partial_ms",
            "commit_speculation_ms",
            "context_audio_s",
            "context_audio_gap_s",
            "context_audio_below_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_utterance_s < 1.0:
            raise ValueError("max_utterance_s must be at least 1 s")
        if self.prefix_padding_ms / 1000 > self.max_utterance_s / 2:
            raise ValueError("prefix_padding_ms must be under half of max_utterance_s")
        if not 0.0 < self.cut_search_s < self.max_utterance_s - self.prefix_padding_ms / 1000:
            raise ValueError("cut_search_s must be positive and shorter than max_utterance_s")
        if not 0.0 <= self.commit_speculation_threshold <= 1.0:
            raise ValueError("commit_speculation_threshold must be in [0, 1]")
        if self.max_buffer_s < self.max_utterance_s + self.speech_pad_ms / 1000:
            raise ValueError("max_buffer_s must hold at least one whole utterance")


class VadProtocol(Protocol):
    """A voice-activity detector that scores one frame at a time (Silero VAD, or a fake in tests).

    The session calls :meth:`process` with consecutive frames of exactly ``frame_samples`` samples
    and never concurrently; the detector may keep state between frames.
    """

    frame_samples: int
    """Samples per frame (Silero: 512 at 16 kHz)."""

    def process(self, frame: FloatAudio) -> float:
        """The probability, in [0, 1], that ``frame`` is speech. Must not keep a reference to it."""
        ...


# --- internals --------------------------------------------------------------------------------------


class _State(IntEnum):
    IDLE = 0
    CANDIDATE = 1
    SPEECH = 2
    TRAILING = 3


@dataclass(eq=False)
class _FinalJob:
    """A final decode owed to one utterance: queued, in flight, or (speculative) answered early."""

    utterance_id: int
    start_s: float
    end_s: float
    audio: FloatAudio
    audio_start_s: float
    speculative: bool
    """True while the utterance is still in its silence window: its result may yet be dropped."""
    attempts: int = 0
    result: Final | None = None


@dataclass(eq=False)
class _Utterance:
    """The utterance being heard (at most one)."""

    id: int
    start: int
    """Stream sample of its first speech frame."""
    speech_end: int
    """Stream sample just after its last speech frame."""
    last_partial_end: int
    """End (stream sample) of the audio of its last partial request, or its start."""
    partial_tick: int
    """When the next partial opportunity comes; used to count the skipped ones."""
    partial_sent: bool = False
    """Whether a partial of it has been requested (the first one is due after ``first_partial_ms``)."""
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    speculative: _FinalJob | None = None
    heard_end: int | None = None
    """Manual commits with speculation: end (stream sample) of its last frame the VAD heard as speech."""
    shown_end_s: float = -1.0
    """End of the audio of the last Partial shown for it (so that no older one follows a newer one)."""


@dataclass(eq=False)
class _InFlight:
    request_id: int
    utterance_id: int
    audio_end_s: float
    issued_at: int
    job: _FinalJob | None
    """The final job, or None for a partial (or, with manual commits, a speculative final whose
    utterance went on: its answer is shown as a partial, and a final may preempt it like a partial)."""
    joined: Joined | None = None
    """Earlier speech put before the final's audio: the result keeps only the words after it."""
    cancelled: bool = False
    demoted: bool = False
    """A speculative final whose utterance went on (server VAD): its answer is shown as a partial."""
    segments: Sequence[Segment] | None = None
    """A final decoded ahead (:attr:`SessionConfig.finals_ahead`) keeps its answer here until the
    final before it is delivered."""


def _transcript(segments: Sequence[Segment]) -> str:
    return " ".join(text for s in segments if (text := s.text.strip()))


def _own(inflight: _InFlight, segments: Sequence[Segment]) -> Sequence[Segment]:
    """The words of a joined decode that belong to its utterance (all of them otherwise)."""
    return segments if inflight.joined is None else keep_after(segments, inflight.joined)


def _confidence(segments: Sequence[Segment]) -> float:
    """The duration-weighted mean of the confidences of the segments that have text and one."""
    rated = [
        (s.end_s - s.start_s, s.confidence) for s in segments if s.confidence is not None and s.text.strip()
    ]
    if not rated:
        return 0.0
    total = sum(max(0.0, d) for d, _ in rated)
    if total <= 0.0:  # zero-length segments: a plain mean
        return sum(c for _, c in rated) / len(rated)
    return sum(max(0.0, d) * c for d, c in rated) / total


class StreamingSession:
    """One client's streaming transcription: audio in, events out, decodes asked of the driver.

    Not thread-safe: the driver calls it from one task (or under a lock). ``vad`` is required unless
    ``config.vad_threshold`` is None; then it is used only for ``commit_speculation_ms`` (if given).
    """

    def __init__(self, config: SessionConfig | None = None, vad: VadProtocol | None = None) -> None:
        self._config = c = config or SessionConfig()
        if c.vad_threshold is not None and vad is None:
            raise ValueError("a VAD is required unless vad_threshold is None")
        self._vad = vad if c.vad_threshold is not None else None
        self._threshold = c.vad_threshold if c.vad_threshold is not None else 0.0
        # Manual commits: a VAD that only makes speculative finals (see the module docstring).
        self._spec_vad = vad if c.vad_threshold is None and c.uses_vad else None
        frames_by = self._vad or self._spec_vad
        self._frame = frames_by.frame_samples if frames_by is not None else DEFAULT_FRAME_SAMPLES
        if self._frame <= 0:
            raise ValueError("frame_samples must be positive")
        sr = self._sr = c.sample_rate

        def samples(ms: float) -> int:
            return round(ms * sr / 1000)

        self._prefix_samples = samples(c.prefix_padding_ms)
        self._pad_samples = samples(c.speech_pad_ms)
        self._min_silence_samples = samples(c.min_silence_ms)
        self._min_speech_samples = samples(c.min_speech_ms)
        self._spec_samples = samples(c.commit_speculation_ms)
        partials = c.interim_results and c.partial_interval_ms > 0 and c.first_partial_ms > 0
        self._partial_samples = samples(c.partial_interval_ms) if partials else 0
        self._first_partial_samples = samples(c.first_partial_ms) if partials else 0
        self._max_utterance_samples = round(c.max_utterance_s * sr)
        self._cut_search_samples = round(c.cut_search_s * sr)
        self._max_buffer_samples = round(c.max_buffer_s * sr)

        capacity = self._max_utterance_samples + 2 * self._frame
        self._buffer = SampleBuffer(capacity)
        self._buffer_start = 0  # stream sample of the buffer's first sample
        self._scores = np.zeros(capacity // self._frame + 2, dtype=np.float32)
        self._n_scores = 0
        self._scores_start = 0  # stream sample where the frame of _scores[0] starts
        self._ring = SampleRing(self._prefix_samples)
        self._remainder = EMPTY
        self._pos = 0  # stream samples consumed (frames processed, plus flushed remainders)

        self._state = _State.IDLE
        self._candidate_start = 0
        self._candidate_run = 0
        self._utt: _Utterance | None = None
        self._next_utterance_id = 1
        self._next_request_id = 1

        self._queue: deque[_FinalJob] = deque()
        self._queued_samples = 0
        self._inflight: _InFlight | None = None
        self._abandoned: _InFlight | None = None  # a preempted partial the driver still runs
        self._ahead: _InFlight | None = None  # the next final, decoded while the slot's is
        self._dropped_partials = 0
        self._last_lag_report: int | None = None
        self._context = ""
        self._context_end_s = 0.0
        self._heard = HeardSpeech(
            max_s=c.context_audio_s,
            max_gap_s=c.context_audio_gap_s,
            max_total_s=c.max_utterance_s,
            sample_rate=sr,
        )
        self._early_used = 0
        self._early_dropped = 0

    # --- public API -----------------------------------------------------------------------------

    @property
    def config(self) -> SessionConfig:
        """The settings this session runs with."""
        return self._config

    @property
    def idle(self) -> bool:
        """True when no decode is in flight or queued: after :meth:`finish`, every Final is out.

        An abandoned partial that the driver still runs does not count (it frees nothing when it ends).
        """
        return self._inflight is None and self._ahead is None and not self._queue

    @property
    def lag_s(self) -> float:
        """Seconds of audio fed since the in-flight decode was requested (0 when none is)."""
        if self._inflight is None:
            return 0.0
        return (self._pos - self._inflight.issued_at) / self._sr

    @property
    def dropped_partials(self) -> int:
        """Partial opportunities skipped so far because a decode was in flight or a final waited."""
        return self._dropped_partials

    @property
    def early_finals(self) -> tuple[int, int]:
        """Speculative finals so far: (made the Final, dropped because speech went on or was cut)."""
        return self._early_used, self._early_dropped

    @property
    def buffered_s(self) -> float:
        """Seconds of audio that :meth:`commit` would transcribe now (0 between utterances)."""
        active = self._state is not _State.IDLE
        n = self._buffer.length if active else 0
        if active or self._vad is None:
            n += self._remainder.size
        return n / self._sr

    def feed(self, pcm: FloatAudio) -> list[Event]:
        """Take more audio (float32 mono at ``sample_rate``); return the events it caused.

        Raises ``ValueError`` for a non-1-D array, and :class:`~voxserve.errors.Unavailable`
        (``transcription_backlog``, consuming nothing) when the session would hold more than
        ``max_buffer_s`` of audio.
        """
        samples = np.asarray(pcm, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError("pcm must be a 1-D (mono) array")
        if self._held_samples() + samples.size > self._max_buffer_samples:
            raise Unavailable(
                f"transcription is falling behind: more than {self._config.max_buffer_s:g} s of audio "
                "is waiting to be transcribed",
                code="transcription_backlog",
            )
        data = np.concatenate((self._remainder, samples)) if self._remainder.size else samples
        events: list[Event] = []
        whole = data.size - data.size % self._frame
        for i in range(0, whole, self._frame):
            self._process_frame(data[i : i + self._frame], events)
        self._remainder = data[whole:].copy()
        return events

    def on_decode_result(self, request_id: int, segments: Sequence[Segment]) -> list[Event]:
        """The decode ``request_id`` finished with ``segments`` (word times relative to its audio).

        Unknown or superseded requests are ignored. May return the next :class:`DecodeRequest`.
        """
        abandoned = self._take_abandoned(request_id)
        if abandoned is not None:
            # A partial that a final preempted (usually an early final while the speaker pauses after
            # a few words) is still shown if its utterance goes on and nothing newer was shown: the
            # first words then appear when they are decoded, not after the final's decode as well.
            shown: list[Event] = []
            if not abandoned.cancelled:
                self._deliver_partial(abandoned, _own(abandoned, segments), shown)
            return shown
        ahead = self._ahead
        if ahead is not None and ahead.request_id == request_id:
            ahead.segments = _own(ahead, segments)  # delivered when the final before it is
            return []
        inflight = self._inflight
        if inflight is None or inflight.request_id != request_id:
            return []
        self._inflight = None
        events: list[Event] = []
        segments = _own(inflight, segments)
        if not inflight.cancelled:
            if inflight.job is None or inflight.demoted:
                self._deliver_partial(inflight, segments, events)
            else:
                self._deliver_final(inflight.job, segments, events)
        self._promote_ahead(events)
        self._pump(events)
        return events

    def _promote_ahead(self, events: list[Event]) -> None:
        """The slot is free: the final decoded ahead takes it, or is delivered if already answered."""
        ahead = self._ahead
        if ahead is None or self._inflight is not None:
            return
        self._ahead = None
        if ahead.segments is None:
            self._inflight = ahead
        elif ahead.job is not None:
            self._deliver_final(ahead.job, ahead.segments, events)

    def on_decode_failed(self, request_id: int) -> list[Event]:
        """The decode ``request_id`` failed. Finals are retried once, then :class:`UtteranceFailed`."""
        if self._take_abandoned(request_id) is not None:
            return []
        ahead = self._ahead
        if ahead is not None and ahead.request_id == request_id:
            # Decoded again in its turn, in the slot (where a second failure is UtteranceFailed).
            self._ahead = None
            if ahead.job is not None:
                self._queue.appendleft(ahead.job)
                self._queued_samples += ahead.job.audio.size
            return []
        inflight = self._inflight
        if inflight is None or inflight.request_id != request_id:
            return []
        self._inflight = None
        events: list[Event] = []
        job = inflight.job
        if job is not None and not inflight.cancelled:
            if job.speculative:
                # The utterance has not ended: forget the early attempt; its end requests a new one.
                if self._utt is not None and self._utt.speculative is job:
                    self._utt.speculative = None
                    self._early_dropped += 1
            elif job.attempts < MAX_FINAL_ATTEMPTS:
                self._queue.appendleft(job)
                self._queued_samples += job.audio.size
            else:
                events.append(UtteranceFailed(job.utterance_id, job.start_s, job.end_s, "decode_failed"))
        if not (self._queue and self._queue[0] is job):  # not retried now: the next final's turn
            self._promote_ahead(events)
        self._pump(events)
        return events

    def set_prompt(self, prompt: str) -> None:
        """Use ``prompt`` (:attr:`SessionConfig.prompt`) from the next decode request on."""
        self._config = dataclasses.replace(self._config, prompt=prompt)

    def commit(self) -> list[Event]:
        """End the current utterance now, even mid-speech (OpenAI ``input_audio_buffer.commit``).

        Everything fed so far, including a partial frame, belongs to it. A not-yet-confirmed
        speech start is confirmed (the client asked for it); between utterances it returns ``[]``.
        """
        events: list[Event] = []
        self._flush_remainder(events)
        if self._state is _State.CANDIDATE:
            self._confirm(events)
        self._end_now(events)
        return events

    def finish(self) -> list[Event]:
        """The stream ends: close the current utterance (SpeechStopped and its final decode).

        Speech shorter than ``min_speech_ms`` is dropped. Afterwards deliver the outstanding results
        until :attr:`idle`; the remaining Finals come from those calls. More audio may follow.
        """
        events: list[Event] = []
        self._flush_remainder(events)
        if self._state is _State.CANDIDATE:
            self._reset_utterance_state()
        self._end_now(events)
        return events

    def clear(self) -> list[Event]:
        """Drop the current utterance's audio and cancel its decodes (OpenAI ``input_audio_buffer.clear``).

        Results of its decodes are ignored when they come (the in-flight one still occupies the
        slot until then). Returns :class:`UtteranceFailed` (``cleared``) if an utterance had
        started; utterances that already ended still get their Finals.
        """
        events: list[Event] = []
        self._pos += self._remainder.size
        self._remainder = EMPTY
        utt = self._utt
        if utt is not None:
            if utt.speculative is not None:
                self._discard_speculative(utt.speculative)
                self._early_dropped += 1
            if self._inflight is not None and self._inflight.utterance_id == utt.id:
                self._inflight.cancelled = True
            events.append(UtteranceFailed(utt.id, utt.start / self._sr, utt.speech_end / self._sr, "cleared"))
        self._reset_utterance_state()
        self._ring.clear()
        return events

    # --- frames ---------------------------------------------------------------------------------

    def _process_frame(self, frame: FloatAudio, events: list[Event]) -> None:
        start = self._pos
        self._pos = end = start + frame.size
        heard = False
        if self._vad is None:
            # Without VAD every frame belongs to the utterance; RMS finds the quietest cut point.
            score = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
            speech = True
            if self._spec_vad is not None:
                heard = self._spec_vad.process(frame) >= self._config.commit_speculation_threshold
        else:
            score = float(self._vad.process(frame))
            speech = score >= self._threshold

        state = self._state
        if state is _State.IDLE and speech:
            self._begin_candidate(start)
            state = _State.CANDIDATE
        if state is _State.CANDIDATE:
            self._append(frame, score)
            if not speech:
                self._reset_utterance_state()  # a blip
            else:
                self._candidate_run += frame.size
                if self._vad is None or self._candidate_run >= self._min_speech_samples:
                    self._confirm(events)
        elif state is _State.SPEECH:
            utt = self._current()
            self._append(frame, score)
            if speech:
                utt.speech_end = end
            else:
                self._state = _State.TRAILING
                if self._config.speculative_final:
                    utt.speculative = self._final_job(utt, speculative=True)
                    self._enqueue(utt.speculative, events)
        elif state is _State.TRAILING:
            utt = self._current()
            self._append(frame, score)
            if speech:
                self._resume(utt, events)
            elif end - utt.speech_end >= self._min_silence_samples:
                self._end_utterance(events)
        self._ring.push(frame)

        if self._state in (_State.SPEECH, _State.TRAILING) and (
            self._buffer.length >= self._max_utterance_samples
        ):
            if self._state is _State.TRAILING:
                self._end_utterance(events)  # the pause is as good a place to end as any
            else:
                self._cut(events)
        if self._spec_vad is not None and self._state is _State.SPEECH:
            self._speculate(heard, events)
        if self._state is _State.SPEECH and self._partial_samples and self._current().speculative is None:
            self._pump(events)
            utt = self._current()
            wanted = self._partial_wanted(utt)
            while self._pos >= utt.partial_tick:
                if wanted:  # a partial of a pause is not wanted, so not dropped either
                    self._dropped_partials += 1
                utt.partial_tick += self._partial_samples
        self._check_lag(events)

    def _speculate(self, heard: bool, events: list[Event]) -> None:
        """Manual commits: decode ahead after a pause; drop that decode when speech resumes."""
        utt = self._current()
        if heard:
            utt.heard_end = self._pos
            if utt.speculative is not None:
                self._drop_speculative(utt, events)
                utt.partial_tick = max(utt.partial_tick, self._pos)  # the pause skipped no partials
        elif (
            utt.speculative is None
            and utt.heard_end is not None
            and self._pos - utt.heard_end >= self._spec_samples
            and self._final_goes_out_now()
        ):
            # Only when it can start at once (else the next frames try again): a queued early final
            # would hold the commit's final behind it, where a digit string pauses at every digit.
            utt.speculative = self._final_job(utt, speculative=True)
            self._enqueue(utt.speculative, events)

    def _partial_wanted(self, utt: _Utterance) -> bool:
        """Whether a partial is wanted now. Manual commits with speculation: only while the VAD hears
        speech (in its last frame: a dip only delays a partial by a frame), and only if it heard some
        since the last partial's audio. Between a client's turns the "utterance" is silence: its
        partials were "" or the prompt made up again ("1. Three. 8. 8. 8."), and they kept a worker
        busy that the next early final needed (a pipecat session: 0.9–1.1 s decodes beside them). In
        a pause, as with server VAD once speech stops, the early final is the next decode: a partial
        started there held a worker until after it began, so it ran on one core, not every core."""
        if self._spec_vad is None:
            return True
        return (
            utt.heard_end is not None
            and utt.heard_end > utt.last_partial_end
            and self._pos - utt.heard_end < self._frame
        )

    def _final_goes_out_now(self) -> bool:
        """Whether a final enqueued now would be sent at once (the slot is free, or a partial holds it
        and may be preempted)."""
        if self._queue:
            return False
        inflight = self._inflight
        if inflight is None:
            return True
        return inflight.job is None and self._config.preempt_partials and self._abandoned is None

    def _append(self, frame: FloatAudio, score: float) -> None:
        self._buffer.append(frame)
        self._scores[self._n_scores] = score
        self._n_scores += 1

    def _begin_candidate(self, start: int) -> None:
        prefix = self._ring.last(self._prefix_samples) if self._vad is not None else EMPTY
        self._buffer.clear()
        self._buffer.append(prefix)
        self._buffer_start = start - prefix.size
        self._n_scores = 0
        self._scores_start = start
        self._candidate_start = start
        self._candidate_run = 0
        self._state = _State.CANDIDATE

    def _confirm(self, events: list[Event]) -> None:
        start = self._candidate_start
        self._utt = self._new_utterance(start)
        self._state = _State.SPEECH
        events.append(SpeechStarted(self._utt.id, start / self._sr))

    def _new_utterance(self, start: int) -> _Utterance:
        uid = self._next_utterance_id
        self._next_utterance_id += 1
        return _Utterance(
            id=uid,
            start=start,
            speech_end=self._pos,
            last_partial_end=start,
            partial_tick=start + self._first_partial_samples,
        )

    def _resume(self, utt: _Utterance, events: list[Event]) -> None:
        self._drop_speculative(utt, events)
        utt.speech_end = self._pos
        utt.partial_tick = max(utt.partial_tick, self._pos)  # the pause skipped no partials
        self._state = _State.SPEECH

    def _drop_speculative(self, utt: _Utterance, events: list[Event]) -> None:
        """Speech goes on after a pause: its speculative final, if any, will not be the Final."""
        job = utt.speculative
        if job is None:
            return
        utt.speculative = None
        self._early_dropped += 1
        # The early final heard the utterance up to the pause: a good partial. Speech with short
        # pauses (digits, lists) would otherwise show nothing until its end, as each pause's
        # speculative final takes the decode slot from the partials.
        inflight = self._inflight
        running = inflight is not None and inflight.job is job and not inflight.cancelled
        if self._partial_samples and job.result is not None:
            self._partial_text(utt, job.result.text, job.end_s, events)
        elif self._partial_samples and running:
            assert inflight is not None
            if self._spec_vad is not None:
                # Manual commits: its answer is a partial, and the next pause's early final need not
                # wait for it (a decode takes ~0.7 s on 2 cores: at every pause it would).
                inflight.job = None
            else:
                # Server VAD: it keeps the slot (its answer is a partial), as before manual-commit
                # speculation came: stt_bench measured both ways within its noise (final p50/p90
                # 0.76/1.41 s this way, 0.68/1.27 s preemptable), so the tested behaviour stays.
                inflight.demoted = True
        else:  # no partials wanted, or it never went out: just drop it
            self._discard_speculative(job)
            if running and self._spec_vad is not None:
                assert inflight is not None
                inflight.job = None  # manual commits: preemptable, as above

    def _flush_remainder(self, events: list[Event]) -> None:
        """Consume the partial frame (no VAD decision) into the current utterance, if any."""
        rest = self._remainder
        if rest.size == 0:
            return
        self._remainder = EMPTY
        start = self._pos
        self._pos += rest.size
        if self._vad is None and self._state is _State.IDLE:
            self._begin_candidate(start)
            self._confirm(events)
        if self._state is not _State.IDLE:
            self._buffer.append(rest)
        self._ring.push(rest)

    # --- ending and cutting utterances ----------------------------------------------------------

    def _end_now(self, events: list[Event]) -> None:
        if self._state is _State.SPEECH:
            self._current().speech_end = self._pos  # speech was going on until now
            self._end_utterance(events)
        elif self._state is _State.TRAILING:
            self._end_utterance(events)

    def _end_utterance(self, events: list[Event]) -> None:
        utt = self._current()
        events.append(SpeechStopped(utt.id, utt.speech_end / self._sr))
        start_s = utt.start / self._sr
        # What came before it, taken before its own Final adds to that (for the finals that hear it).
        prompt = self._prompt(start_s) if self._heard.enabled else ""
        job = utt.speculative
        new_job: _FinalJob | None = None
        if job is None:
            new_job = self._final_job(utt, speculative=False)
        else:
            job.speculative = False
            self._early_used += 1
            # A manual commit may come after more silence than the early decode heard: the Final
            # ends at the commit all the same (with server VAD nothing moved: the same end).
            job.end_s = utt.speech_end / self._sr
            if job.result is not None:
                result = dataclasses.replace(job.result, end_s=job.end_s)
                events.append(result)
                self._remember(result)
            elif job in self._queue:
                # Not sent yet: send it with the full tail padding instead.
                audio = self._final_audio(utt)
                self._queued_samples += audio.size - job.audio.size
                job.audio = audio
            # Otherwise it is in flight and its result becomes the Final.
        if self._heard.enabled:
            # Later finals hear it again: the utterance with all its tail padding (an early decode
            # heard only the silence fed when it began), kept now rather than when its Final is out,
            # so that a final decoded ahead of it (finals_ahead) hears it too.
            audio = new_job.audio if new_job is not None else self._final_audio(utt)
            end_s = utt.speech_end / self._sr
            self._heard.add(Heard(audio, self._buffer_start / self._sr, start_s, end_s, prompt))
        self._reset_utterance_state()
        if new_job is not None:
            self._enqueue(new_job, events)
        else:
            self._pump(events)  # a queued early final is now a final: it may go ahead

    def _cut(self, events: list[Event]) -> None:
        """Split an over-long utterance at its quietest recent point; the rest goes on as a new one."""
        utt = self._current()
        if utt.speculative is not None:  # manual commits: the cut's own final replaces it
            self._discard_speculative(utt.speculative)
            utt.speculative = None
            self._early_dropped += 1
        frame, first, n = self._frame, self._scores_start, self._n_scores
        window_start = max(self._pos - self._cut_search_samples, utt.start + 1)
        i0 = min(max(0, -(-(window_start - first) // frame)), n - 1)
        window = self._scores[i0:n]
        low = float(window.min())
        if self._vad is not None and low >= self._threshold:
            cut_index = n - 1  # no pause at all: keep as much as possible in the first part
        else:
            b = int(np.flatnonzero(window == low)[-1])
            a = b
            while a > 0 and window[a - 1] == low:
                a -= 1
            cut_index = i0 + a + (b - a + 1) // 2  # the middle of the last quietest run
        cut_index = max(cut_index, 1)
        cut = first + cut_index * frame

        before = self._scores[:cut_index]
        after = self._scores[cut_index:n]
        if self._vad is not None:
            speech_before = np.flatnonzero(before >= self._threshold)
            speech_after = np.flatnonzero(after >= self._threshold)
            end_a = first + (int(speech_before[-1]) + 1) * frame if speech_before.size else cut
            start_b = cut + int(speech_after[0]) * frame if speech_after.size else cut
        else:
            end_a = start_b = cut
        utt.speech_end = end_a
        audio_a = self._buffer.view()[: cut - self._buffer_start].copy()
        job_a = _FinalJob(
            utt.id, utt.start / self._sr, end_a / self._sr, audio_a, self._buffer_start / self._sr, False
        )
        events.append(SpeechStopped(utt.id, end_a / self._sr))

        self._buffer.drop_front(cut - self._buffer_start)
        self._buffer_start = cut
        self._scores[: n - cut_index] = after.copy()
        self._n_scores = n - cut_index
        self._scores_start = cut
        # A partial of the first part that is still in flight is now stale (its id is not current).
        self._utt = self._new_utterance(start_b)
        self._enqueue(job_a, events)
        events.append(SpeechStarted(self._utt.id, start_b / self._sr))

    def _reset_utterance_state(self) -> None:
        self._utt = None
        self._state = _State.IDLE
        self._buffer.clear()
        self._n_scores = 0
        self._candidate_run = 0

    # --- decodes --------------------------------------------------------------------------------

    def _final_audio(self, utt: _Utterance) -> FloatAudio:
        buffer_end = self._buffer_start + self._buffer.length
        stop = min(utt.speech_end + self._pad_samples, buffer_end) - self._buffer_start
        return self._buffer.view()[:stop].copy()

    def _final_job(self, utt: _Utterance, *, speculative: bool) -> _FinalJob:
        return _FinalJob(
            utterance_id=utt.id,
            start_s=utt.start / self._sr,
            end_s=utt.speech_end / self._sr,
            audio=self._final_audio(utt),
            audio_start_s=self._buffer_start / self._sr,
            speculative=speculative,
        )

    def _enqueue(self, job: _FinalJob, events: list[Event]) -> None:
        self._queue.append(job)
        self._queued_samples += job.audio.size
        self._pump(events)

    def _discard_speculative(self, job: _FinalJob) -> None:
        if job in self._queue:
            self._queue.remove(job)
            self._queued_samples -= job.audio.size
        elif self._inflight is not None and self._inflight.job is job:
            self._inflight.cancelled = True
        # Otherwise its result is stored in the job, which is dropped with it.

    def _pump(self, events: list[Event]) -> None:
        """Start the next decode if the slot is free: a waiting final first, else a due partial.

        With ``preempt_partials`` a waiting final takes the slot from an in-flight partial, which
        is abandoned (at most one at a time: no partial is requested while one is).
        """
        inflight = self._inflight
        if inflight is not None:
            if not (
                self._queue
                and inflight.job is None
                and self._config.preempt_partials
                and self._abandoned is None
            ):
                self._pump_ahead(inflight, events)
                return
            self._abandoned = inflight
            self._inflight = None
        if self._queue:
            self._inflight = self._send_next_final(events)
            return
        utt = self._utt
        if (
            utt is not None
            and self._abandoned is None
            and self._state is _State.SPEECH
            and self._partial_samples
            and self._pos - utt.last_partial_end
            >= (self._partial_samples if utt.partial_sent else self._first_partial_samples)
            and self._partial_wanted(utt)
        ):
            utt.partial_sent = True
            utt.last_partial_end = self._pos
            utt.partial_tick = self._pos + self._partial_samples
            self._inflight = self._issue(utt.id, self._pos / self._sr, None)
            events.append(
                DecodeRequest(
                    self._inflight.request_id,
                    utt.id,
                    "partial",
                    self._buffer.view().copy(),
                    self._buffer_start / self._sr,
                    self._prompt(utt.start / self._sr),
                )
            )

    def _pump_ahead(self, inflight: _InFlight, events: list[Event]) -> None:
        """With :attr:`SessionConfig.finals_ahead`: send the next waiting final while the slot holds
        a final (first attempts only; a retry waits for the slot). At most two decodes at once."""
        if not (
            self._config.finals_ahead
            and self._ahead is None
            and self._abandoned is None
            and self._queue
            and inflight.job is not None
            and not inflight.cancelled
            and not self._queue[0].speculative
            and self._queue[0].attempts == 0
        ):
            return
        self._ahead = self._send_next_final(events)

    def _send_next_final(self, events: list[Event]) -> _InFlight:
        """Take the first waiting final and request its decode."""
        job = self._queue.popleft()
        self._queued_samples -= job.audio.size
        job.attempts += 1
        inflight = self._issue(job.utterance_id, job.audio_start_s + job.audio.size / self._sr, job)
        joined = (
            self._heard.join(job.audio, job.audio_start_s, job.start_s)
            if self._heard.enabled and job.end_s - job.start_s < self._config.context_audio_below_s
            else None
        )
        if joined is None:
            audio, start_s, keep_from_s = job.audio, job.audio_start_s, None
            prompt = self._prompt(job.start_s)
        else:
            inflight.joined = joined
            # start_s: where the joined audio would begin in the stream if its earlier speech sat
            # right before the job's own piece (the session maps the kept words to the job's audio).
            audio, prompt, keep_from_s = joined.audio, joined.prompt, joined.keep_from_s
            start_s = job.audio_start_s + joined.offset_s - joined.keep_from_s
        events.append(
            DecodeRequest(
                inflight.request_id,
                job.utterance_id,
                "final",
                audio,
                start_s,
                prompt,
                keep_from_s=keep_from_s,
            )
        )
        return inflight

    def _take_abandoned(self, request_id: int) -> _InFlight | None:
        """The abandoned partial, forgotten, if ``request_id`` is it (else None)."""
        abandoned = self._abandoned
        if abandoned is None or abandoned.request_id != request_id:
            return None
        self._abandoned = None
        return abandoned

    def _issue(self, utterance_id: int, audio_end_s: float, job: _FinalJob | None) -> _InFlight:
        request_id = self._next_request_id
        self._next_request_id += 1
        return _InFlight(request_id, utterance_id, audio_end_s, self._pos, job)

    def _deliver_partial(self, inflight: _InFlight, segments: Sequence[Segment], events: list[Event]) -> None:
        utt = self._utt
        if utt is None or utt.id != inflight.utterance_id:
            return  # stale: that utterance has ended (its Final is what counts now)
        if inflight.audio_end_s <= utt.shown_end_s:
            return  # an abandoned partial answered after a newer one was shown
        self._partial_text(utt, _transcript(segments), inflight.audio_end_s, events)

    def _partial_text(self, utt: _Utterance, text: str, audio_end_s: float, events: list[Event]) -> None:
        utt.shown_end_s = audio_end_s
        _, tail = utt.agreement.update(text.split())
        events.append(
            Partial(
                utterance_id=utt.id,
                committed_text=" ".join(utt.agreement.committed),
                tentative_text=" ".join(tail),
                stability=utt.agreement.stability(tail),
                start_s=utt.start / self._sr,
                end_s=audio_end_s,
            )
        )

    def _deliver_final(self, job: _FinalJob, segments: Sequence[Segment], events: list[Event]) -> None:
        offset = job.audio_start_s
        words = tuple(
            dataclasses.replace(w, start_s=w.start_s + offset, end_s=w.end_s + offset)
            for s in segments
            for w in s.words
        )
        final = Final(
            job.utterance_id, _transcript(segments), job.start_s, job.end_s, words, _confidence(segments)
        )
        job.audio = EMPTY  # no retry needed any more
        if job.speculative:
            job.result = final  # becomes the Final if the silence lasts
        else:
            events.append(final)
            self._remember(final)

    def _check_lag(self, events: list[Event]) -> None:
        lag = self.lag_s
        if lag > LAG_REPORT_S and (
            self._last_lag_report is None or self._pos - self._last_lag_report >= self._sr
        ):
            self._last_lag_report = self._pos
            events.append(Lag(lag, self._dropped_partials))

    # --- helpers --------------------------------------------------------------------------------

    def _current(self) -> _Utterance:
        if self._utt is None:  # pragma: no cover - a state-machine bug
            raise RuntimeError("no current utterance")
        return self._utt

    def _held_samples(self) -> int:
        active = self._buffer.length if self._state is not _State.IDLE else 0
        return self._queued_samples + active + self._remainder.size

    def _prompt(self, start_s: float) -> str:
        recent = start_s - self._context_end_s <= self._config.context_max_gap_s
        return " ".join(p for p in (self._config.prompt.strip(), self._context if recent else "") if p)

    def _remember(self, final: Final) -> None:
        self._context_end_s = final.end_s
        context = f"{self._context} {final.text}".strip()
        if len(context) > PROMPT_CONTEXT_CHARS:
            context = context[-PROMPT_CONTEXT_CHARS:]
            _, space, rest = context.partition(" ")
            context = rest if space else context  # do not start with half a word
        self._context = context
