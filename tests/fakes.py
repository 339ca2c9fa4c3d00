"""A deterministic fake TTS engine for fast runtime tests (never used for a feature called done).

Each fragment yields a 440 Hz sine of ``0.05 s × words`` in ``steps`` pieces, sleeping ``step_s`` of
"compute" per piece. Magic texts: ``CRASH`` exits the process, ``HANG`` sleeps 30 s in one piece
(ignoring cancels), ``FAIL`` raises an unexpected exception.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from voxserve.engines.base import (
    AudioPiece,
    ChatTurn,
    GenerateEnd,
    GenerateInfo,
    GenerateOptions,
    PhonemeResult,
    Segment,
    TextDelta,
    TranscribeOptions,
    TranscriptInfo,
    VoiceInfo,
    WordTiming,
)
from voxserve.errors import InvalidRequest, InvalidValue, UnknownVoice

RATE = 16000


class FakeEngine:
    name = "fake"

    def __init__(self, step_s: float = 0.02, steps: int = 2, word_s: float = 0.05) -> None:
        self.step_s = step_s
        self.steps = steps
        self.word_s = word_s  # seconds of audio per word
        self._stop = threading.Event()
        self._lone = False

    def use_lone(self, on: bool) -> None:
        """Like Piper's lone-request sessions: while on, every word spoken is marked ``@lone``."""
        self._lone = on

    def interrupt(self) -> None:
        """Like onnxruntime's ``RunOptions.terminate``: the "inference" in progress raises."""
        self._stop.set()

    def rearm(self) -> None:
        self._stop.clear()

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(id="fake/a", name="a", engine="fake", language="en", sample_rate=RATE)]

    def check_voice(self, voice: str) -> None:
        if voice != "a":
            raise UnknownVoice(f"unknown voice {voice!r}", param="voice")

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        if text == "CRASH":
            os._exit(3)
        if text == "FAIL":
            raise RuntimeError("boom /secret/path")
        if text == "HANG":
            time.sleep(30)  # deaf to interrupt(), like an engine that is not Interruptible
        if text == "INFER" and self._stop.wait(30):  # one 30 s "inference" that interrupt() stops
            raise RuntimeError("Exiting due to terminate flag being set to true.")
        if text == "SILENT":  # an engine that fails quietly
            yield AudioPiece(audio=np.zeros(RATE // 10, np.float32), sample_rate=RATE, text=text, words=[])
            return
        n = int(RATE * self.word_s * max(1, len(text.split())) / speed)
        t = np.arange(n, dtype=np.float32) / RATE
        audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for part in np.array_split(audio, self.steps):
            time.sleep(self.step_s)
            word = text + ("@lone" if self._lone else "")
            yield AudioPiece(audio=part, sample_rate=RATE, text=text, words=[WordTiming(word, 0.0, 0.01)])

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        """One segment "word<i>" per 0.5 s of audio, none for all-zero audio with ``skip_silence``
        (as a VAD in front would); ``options.prompt == "CRASH"`` exits. The info's language is
        ``"lone:<pid>"`` for a decode the runtime marked lone (it may use every core), else ``"en"``."""
        if options.prompt == "CRASH":
            os._exit(3)
        duration = len(audio) / 16000
        silent = options.skip_silence and not np.any(audio)

        def segments() -> Iterator[Segment]:
            for i in range(0 if silent else int(duration / 0.5)):
                time.sleep(self.step_s)
                yield Segment(id=i, start_s=i * 0.5, end_s=(i + 1) * 0.5, text=f" word{i}")

        language = f"lone:{os.getpid()}" if options.lone else "en"
        return TranscriptInfo(language=language, language_probability=1.0, duration_s=duration), segments()

    def phonemize(self, text: str, voice: str) -> PhonemeResult:
        return PhonemeResult(phonemes=text.lower(), tokens=[ord(c) for c in text])

    def check_phonemes(self, phonemes: str, voice: str) -> None:
        if "!" in phonemes:
            raise InvalidValue("bad phonemes", code="invalid_phonemes")

    def synthesize_phonemes(self, phonemes: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        self.check_phonemes(phonemes, voice)
        for piece in self.synthesize(phonemes, voice, speed):
            piece.words = []  # as the real engines: no word times for raw phonemes
            yield piece


class EnergyVad:
    """A VAD for session tests: a 512-sample frame is speech when its RMS is over 0.01."""

    frame_samples = 512

    def process(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame**2))) > 0.01 else 0.0


class FakeLLM:
    """A deterministic fake language model (the worker-side engine of ``/v1/chat/completions`` tests).

    A token is one word. The answer is ``You said <last user message>`` and then ``word1 word2 ...``
    up to the token budget, one token every ``step_s``; the context window is ``context_tokens`` words
    of the joined messages. A user message ``CRASH`` exits the process after two tokens."""

    name = "llama"

    def __init__(self, step_s: float = 0.01, context_tokens: int = 64) -> None:
        self.model = "fake-llm"
        self.step_s = step_s
        self.context_tokens = context_tokens
        self.generated = 0
        """Tokens produced by this process so far (a cancelled answer stops adding to it)."""

    def generate(
        self, messages: list[ChatTurn], options: GenerateOptions
    ) -> tuple[GenerateInfo, Iterator[Any]]:
        prompt = sum(len(m.content.split()) + 1 for m in messages)
        if prompt >= self.context_tokens:
            raise InvalidRequest(
                f"the messages take {prompt} tokens", code="context_length_exceeded", param="messages"
            )
        budget = self.context_tokens - prompt
        limit = budget if options.max_tokens is None else min(options.max_tokens, budget)
        user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        words = ["You", "said", *user.split(), *(f"word{i}" for i in range(1, 10_000))][:limit]

        def run() -> Iterator[Any]:
            text = ""
            for i, word in enumerate(words):
                if user == "CRASH" and i == 2:
                    os._exit(3)
                time.sleep(self.step_s)
                self.generated += 1
                piece = word if i == 0 else " " + word
                if any(s in text + piece for s in options.stop):
                    yield GenerateEnd("stop", prompt, i)
                    return
                text += piece
                yield TextDelta(piece)
            yield GenerateEnd("length" if len(words) == limit else "stop", prompt, len(words))

        return GenerateInfo(self.model, prompt, self.context_tokens), run()
