"""Earlier speech heard again: the audio of the last finals put before a new utterance's final decode.

A streaming session cuts speech at pauses, and Whisper decodes a short piece alone worse than the same
words inside a longer stretch: after "The cut on his chest is still dripping blood." and a pause,
"The ache of his overstrained eyes" came out as "The acavus overstrained eyes" when decoded alone,
and right when decoded after the first sentence's audio. The text of the earlier finals in the prompt
(which the session also gives) does not do this; the sound does.

So a final decode may hear the recent finals' audio first, with the pauses between the pieces
shortened to :data:`CONTEXT_PAUSE_S`, and keep only the words that the model places after the start
of the new utterance (word times, which the driver must then ask for). The earlier words are decoded
again and thrown away: the finals already sent never change.

Measured with ``benchmarks/stream_wer_bench.py`` (speech_dev, tiny.en; WER stream / batch): recordings
as streams 0.110 / 0.094 alone → 0.084 / 0.094 with up to 10 s heard again; pauses stretched to 1.2 s
0.121 / 0.095 → 0.106 / 0.095; one conversation, turns 2 s apart, 0.104 / 0.094 → 0.107 / 0.094 (no
change beyond the run-to-run spread). Through the server (``WS /v1/stream/transcribe`` at live pace,
the same 17 files): 0.117 → 0.100 against batch 0.087. Shorter reach is worse (6 s: 0.090 files, 0.117
paused; pauses up to 1.5 s only: 0.117 paused). The price is a longer final decode (the decoder reads
the earlier words again): p50 0.37 → 0.57 s on 2 threads, mostly hidden behind the silence that ends
an utterance (the final is decoded when the silence begins). So only utterances with under 3 s of
speech do it (``SessionConfig.context_audio_below_s``): the longer ones have context of their own.
One failure seen: a short noise after the last sentence, heard after it, became "We'll see." (decoded
alone it gave nothing).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxserve.engines.base import FloatAudio, Segment

__all__ = ["CONTEXT_PAUSE_S", "Heard", "HeardSpeech", "Joined", "keep_after"]

CONTEXT_PAUSE_S = 0.4
"""Longest pause left between the pieces of a joined decode: a long silence inside the audio makes
Whisper end a segment and lose the thread, as if the pieces were decoded apart."""


@dataclass(frozen=True, slots=True, eq=False)
class Heard:
    """One ended utterance's audio, kept to be heard again before the next utterances."""

    audio: FloatAudio
    audio_start_s: float
    """Stream time of ``audio[0]``."""
    speech_start_s: float
    speech_end_s: float
    prompt: str
    """The prompt its own decode had (what came before it), for a decode that starts with it."""


@dataclass(frozen=True, slots=True, eq=False)
class Joined:
    """A final's audio with earlier speech before it."""

    audio: FloatAudio
    keep_from_s: float
    """Time in ``audio`` where the new utterance's piece starts: words before it are dropped."""
    offset_s: float
    """Time in the utterance's own audio where its piece starts (0 unless its lead was shortened)."""
    prompt: str
    """The prompt of the first earlier utterance (the text before everything heard)."""


class HeardSpeech:
    """The recent utterances' audio, and how to put it before a new final.

    A final joins the earlier pieces whose pauses (speech end to the next speech start) are at most
    ``max_gap_s``, back to at most ``max_s`` before its own speech starts; the whole decode stays
    within ``max_total_s`` (Whisper's window is 30 s).
    """

    def __init__(self, *, max_s: float, max_gap_s: float, max_total_s: float, sample_rate: int) -> None:
        self._max_s = max_s
        self._max_gap_s = max_gap_s
        self._max_total_s = max_total_s
        self._sr = sample_rate
        self._pieces: deque[Heard] = deque()

    @property
    def enabled(self) -> bool:
        """Whether earlier speech is heard again at all (``max_s`` > 0)."""
        return self._max_s > 0

    def add(self, heard: Heard) -> None:
        """Keep ``heard`` (an utterance just ended); forget what no later final can reach."""
        if not self.enabled:
            return
        self._pieces.append(heard)
        while self._pieces and heard.speech_end_s - self._pieces[0].speech_start_s > self._max_s:
            self._pieces.popleft()

    def join(self, audio: FloatAudio, audio_start_s: float, speech_start_s: float) -> Joined | None:
        """``audio`` (an utterance's final audio from ``audio_start_s``, its speech from
        ``speech_start_s``) with the earlier pieces it may join before it, or None when none may."""
        chain: list[Heard] = []
        next_start = speech_start_s
        for piece in reversed(self._pieces):
            if piece.speech_start_s >= speech_start_s:
                continue  # the utterance itself (kept when it ended), or a later one
            if (
                piece.speech_end_s > next_start
                or next_start - piece.speech_end_s > self._max_gap_s
                or speech_start_s - piece.speech_start_s > self._max_s
            ):
                break
            chain.insert(0, piece)
            next_start = piece.speech_start_s
        own_s = audio.size / self._sr
        while chain and own_s + sum(p.audio.size for p in chain) / self._sr > self._max_total_s:
            chain.pop(0)
        if not chain:
            return None
        starts = [p.speech_start_s for p in chain[1:]] + [speech_start_s]
        parts: list[FloatAudio] = []
        lead = 0.0  # the pause kept before the piece being cut (half of a shortened pause)
        for piece, following in zip(chain, starts, strict=True):
            half = min(following - piece.speech_end_s, CONTEXT_PAUSE_S) / 2
            parts.append(
                self._cut(piece, piece.speech_start_s - lead if parts else None, piece.speech_end_s + half)
            )
            lead = half
        keep_from = sum(p.size for p in parts) / self._sr
        first = max(0, round((speech_start_s - lead - audio_start_s) * self._sr))
        first = min(first, audio.size)
        parts.append(audio[first:])
        return Joined(np.concatenate(parts), keep_from, first / self._sr, chain[0].prompt)

    def _cut(self, piece: Heard, start_s: float | None, end_s: float) -> FloatAudio:
        """``piece``'s audio from ``start_s`` (None: its beginning) to ``end_s``, within its audio."""
        a = 0 if start_s is None else max(0, round((start_s - piece.audio_start_s) * self._sr))
        b = min(piece.audio.size, round((end_s - piece.audio_start_s) * self._sr))
        return piece.audio[a : max(a, b)]


def keep_after(segments: Sequence[Segment], joined: Joined) -> list[Segment]:
    """The part of a joined decode that belongs to the new utterance, with times in its own audio.

    A word is kept when its middle is at or after :attr:`Joined.keep_from_s`; a segment without
    word times (an engine that gives none) is judged by its middle the same way."""
    shift = joined.offset_s - joined.keep_from_s
    out: list[Segment] = []
    for s in segments:
        if not s.words:
            if (s.start_s + s.end_s) / 2 >= joined.keep_from_s:
                out.append(
                    dataclasses.replace(
                        s, start_s=max(0.0, s.start_s + shift), end_s=max(0.0, s.end_s + shift)
                    )
                )
            continue
        words = tuple(
            dataclasses.replace(w, start_s=max(0.0, w.start_s + shift), end_s=max(0.0, w.end_s + shift))
            for w in s.words
            if (w.start_s + w.end_s) / 2 >= joined.keep_from_s
        )
        if words:
            # Whisper's words carry their leading space; another engine's may not.
            text = "".join(w.word if w.word[:1].isspace() else f" {w.word}" for w in words)
            out.append(
                dataclasses.replace(
                    s, start_s=words[0].start_s, end_s=words[-1].end_s, text=text, words=words
                )
            )
    return out
