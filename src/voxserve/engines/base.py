"""The seams between voxserve and its model families.

An engine turns text (or phonemes) into float32 mono audio. Engines are plain synchronous objects that
live inside a worker process (see :mod:`voxserve.runtime.worker`); they never see the event loop.
Each engine module exposes one class that satisfies :class:`TTSEngine`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from voxserve.audio.pcm import STT_SAMPLE_RATE, FloatAudio

__all__ = [
    "STT_SAMPLE_RATE",
    "AudioPiece",
    "ChatTurn",
    "EngineSpec",
    "FloatAudio",
    "GenerateEnd",
    "GenerateInfo",
    "GenerateOptions",
    "LLMEngine",
    "PhonemeResult",
    "WARM_UP_TEXTS",
    "TTSEngine",
    "TextDelta",
    "VoiceInfo",
    "WarmUp",
    "WordTiming",
]


@dataclass(frozen=True)
class EngineSpec:
    """What a worker builds: an engine family and its constructor options."""

    engine: str
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    factory: str | None = None
    """``module:Class`` to build instead of a built-in engine (tests use this for fake engines)."""
    lone_threads: int = 0
    """Threads for a decode that runs while nothing else does (``TranscribeOptions.lone``): an STT
    engine given more than ``threads`` keeps a copy of its model on that many. The pool gives it to
    one worker of the pool only (each copy costs memory), and sends lone decodes there."""


@dataclass(frozen=True)
class VoiceInfo:
    """One voice an engine offers."""

    id: str
    """Namespaced id, ``engine/name`` (for example ``piper/en_US-joe-medium``)."""
    name: str
    """The engine-local name (``en_US-joe-medium``)."""
    engine: str
    """Engine family: ``piper``, ``kokoro`` or ``espeak``."""
    language: str
    """BCP-47-ish language tag (``en-US``, ``ja``)."""
    sample_rate: int
    """Native output rate in Hertz."""
    description: str = ""


@dataclass(frozen=True)
class WordTiming:
    """Where one word of the synthesized text lies in the audio."""

    word: str
    start_s: float
    """Seconds from the start of the piece's audio."""
    end_s: float


@dataclass
class AudioPiece:
    """A piece of synthesized audio, usually one text fragment."""

    audio: FloatAudio
    """float32 mono samples in [-1, 1] at ``sample_rate``."""
    sample_rate: int
    text: str = ""
    """The text fragment this audio speaks."""
    words: list[WordTiming] = field(default_factory=list)
    """Word timings relative to the start of ``audio``; empty when the engine cannot give them."""


@dataclass(frozen=True)
class PhonemeResult:
    """Phonemes for a text, and the model's token ids for them."""

    phonemes: str
    tokens: list[int]


@runtime_checkable
class TTSEngine(Protocol):
    """A text-to-speech model family.

    ``voice`` arguments are engine-local names (``VoiceInfo.name``), already validated by
    :meth:`check_voice`. Engines must be safe to call repeatedly from one thread; they are never
    called concurrently.
    """

    name: str
    """Engine family name; the namespace of its voice ids."""

    def voices(self) -> list[VoiceInfo]:
        """Every voice this engine can speak with."""
        ...

    def check_voice(self, voice: str) -> None:
        """Raise :class:`voxserve.errors.UnknownVoice` (or ``InvalidValue``) unless ``voice`` is usable."""
        ...

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        """Speak one text fragment; yield audio as it is produced (at least one piece)."""
        ...

    def phonemize(self, text: str, voice: str) -> PhonemeResult:
        """The phonemes (IPA) the engine would speak for ``text``, and their token ids."""
        ...

    def synthesize_phonemes(self, phonemes: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        """Speak IPA phonemes directly. Raise ``InvalidValue(code="invalid_phonemes")`` on bad input."""
        ...

    def check_phonemes(self, phonemes: str, voice: str) -> object:
        """Raise as :meth:`synthesize_phonemes` would for ``phonemes``, without synthesizing them."""
        ...


WARM_UP_TEXTS = ("Hello, this is a warm-up.",)
"""What a TTS engine speaks in :meth:`WarmUp.warm_up`: one short sentence, as long as a first
fragment (at most ``first_fragment_max_words``). onnxruntime initialises its kernels on the first run;
a longer warm-up sentence also grew each Piper worker's memory arena from 142 to 310 MB at idle, for
a gain a real request's first fragment does not need."""


@runtime_checkable
class WarmUp(Protocol):
    """An engine that can run its first, slow inferences before it serves anyone (optional: the
    worker calls :meth:`warm_up` before its ready handshake when the engine has it)."""

    def warm_up(self) -> None:
        """Synthesize something throw-away, so the first real request is as fast as later ones."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """An engine whose inference another thread can stop mid-run (optional: a worker cancels a job at
    once with it, instead of at the next audio piece; a long sentence is one run of up to a second)."""

    def interrupt(self) -> None:
        """Stop the run in progress (it raises) and any that starts before :meth:`rearm`. Thread-safe."""
        ...

    def rearm(self) -> None:
        """Let runs complete again (called before each job)."""
        ...


# --- speech-to-text -------------------------------------------------------------------------------

"""Every STT engine takes float32 mono audio at 16 kHz."""


@dataclass(frozen=True)
class Token:
    """One token of a recognised word, as the model spelled it, with the model's log probability."""

    text: str
    """The token's text (a token that ends inside a multi-byte character shows U+FFFD there)."""
    utf8: bytes
    """The token's exact bytes: joined in order, the tokens of a text give its UTF-8 encoding."""
    logprob: float
    """Natural log of the probability the model gave this token after the ones before it."""


@dataclass(frozen=True)
class Word:
    """A recognised word with its times in seconds from the start of the audio given to the engine."""

    word: str
    start_s: float
    end_s: float
    probability: float = 1.0
    """The mean probability of the word's tokens."""
    tokens: tuple[Token, ...] = ()
    """The word's tokens (Whisper with ``word_timestamps``); empty when the engine does not say."""


@dataclass(frozen=True)
class Segment:
    """A recognised stretch of speech."""

    id: int
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    confidence: float | None = None
    """How sure the model is of ``text``, from 0 to 1 (Whisper: its mean token probability);
    None when the engine does not say."""


@dataclass(frozen=True)
class TranscribeOptions:
    """How to transcribe (a subset of faster-whisper's options)."""

    language: str | None = None
    """ISO 639-1 code; None detects it (multilingual models only)."""
    task: str = "transcribe"
    """``transcribe`` or ``translate`` (to English)."""
    prompt: str | None = None
    temperature: float = 0.0
    temperature_fallback: bool = True
    """With ``temperature`` 0: decode again at higher temperatures when the result looks failed
    (OpenAI's default). False decodes greedily once (streaming partials)."""
    word_timestamps: bool = False
    beam_size: int = 1
    without_timestamps: bool = False
    keywords: tuple[str, ...] = ()
    """Words or phrases to expect (OpenAI ``keywords``): Whisper reads them as hotwords, a hint
    before its prompt, so they are spelled as given when heard."""
    languages: tuple[str, ...] = ()
    """ISO 639-1 codes the audio may be in (OpenAI ``languages``): detection picks among them;
    ignored when ``language`` is set. Empty: any language the model knows."""
    skip_silence: bool = False
    """Find the speech with a VAD first and decode only that (whole uploaded files; the streaming
    sessions run their own VAD). Whisper given long silence makes words up ("you you you ...") and
    spends a full decode on every 30 s of it."""
    lone: bool = False
    """Set by the runtime, never by a client: nothing else runs on this server now, so the decode may
    take the engine's lone-request threads (every core) instead of its share."""


@dataclass(frozen=True)
class TranscriptInfo:
    """What the engine learned about the audio before the first segment."""

    language: str
    language_probability: float
    duration_s: float


@runtime_checkable
class STTEngine(Protocol):
    """A speech-to-text model family (one model per instance)."""

    name: str
    model: str
    """The model id this instance serves (``tiny.en``, ``base``, or a folder name)."""
    multilingual: bool

    def transcribe(
        self, audio: FloatAudio, options: TranscribeOptions
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        """Transcribe 16 kHz mono float32 audio; segments are produced lazily."""
        ...


# --- language model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation, as the model's chat template reads it."""

    role: str
    """``system``, ``user`` or ``assistant``."""
    content: str


@dataclass(frozen=True)
class GenerateOptions:
    """How to generate (a subset of OpenAI's chat-completion parameters)."""

    max_tokens: int | None = None
    """At most this many new tokens; None: as many as the context window leaves."""
    temperature: float = 0.7
    """0 picks the most likely token every time (the same answer each time)."""
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_penalty: float = 1.1
    """llama.cpp's penalty on recently used tokens (1: none). The small default model loops at 1
    ("la Femme, la Femme, ..." for the capital of France, greedy); 1.1 ends its answer."""
    stop: tuple[str, ...] = ()
    """Generation ends before any of these strings (they are not part of the answer)."""
    seed: int | None = None
    lone: bool = False
    """Set by the runtime (as for :class:`TranscribeOptions`); a language model ignores it."""


@dataclass(frozen=True)
class GenerateInfo:
    """What the engine knows before the first token: the prompt is accepted and fits."""

    model: str
    prompt_tokens: int
    context_tokens: int
    """The model's context window as loaded: prompt and answer together."""


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the answer's text (one token, or a few held back by a stop string)."""

    text: str


@dataclass(frozen=True)
class GenerateEnd:
    """The last item of a generation."""

    finish_reason: str
    """``stop`` (the model ended its turn, or a stop string) or ``length`` (the token budget)."""
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class LLMEngine(Protocol):
    """A language model that answers a conversation (one model per instance)."""

    name: str
    model: str
    """The model id this instance serves."""
    context_tokens: int

    def generate(
        self, messages: list[ChatTurn], options: GenerateOptions
    ) -> tuple[GenerateInfo, Iterator[TextDelta | GenerateEnd]]:
        """Check the prompt (``context_length_exceeded`` when it does not fit) and return, lazily, the
        answer's deltas and then one :class:`GenerateEnd`."""
        ...
