"""espeak-ng, in-process: the tiny engine that is always there.

The shared library and its data come from the ``espeakng-loader`` package and are driven through
ctypes. espeak-ng keeps all of its state in globals and is not re-entrant, so every call into it holds
one module-level lock. The library is loaded and initialised on first use (constructing an
:class:`EspeakEngine` does it); importing this module does nothing.

Facts worth knowing:

* Speed maps to espeak's speaking rate, 175 words per minute × ``speed``, clamped to the range espeak
  supports (80–450 wpm). Beyond that range the audio is simply as slow or as fast as espeak goes; it is
  not time-stretched.
* Word timings are real: they come from espeak's word events, not from estimates.
* :meth:`EspeakEngine.phonemize` returns IPA; its ``tokens`` are the Unicode code points of that IPA,
  since espeak has no token ids of its own.
* espeak reads phonemes only in its own ASCII notation, not IPA, so :meth:`EspeakEngine.synthesize_phonemes`
  always refuses with ``phonemes_not_supported``.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voxserve.engines.base import WARM_UP_TEXTS, AudioPiece, FloatAudio, PhonemeResult, VoiceInfo, WordTiming
from voxserve.errors import EngineFailure, InvalidValue, UnknownVoice

__all__ = ["DEFAULT_WPM", "EspeakEngine", "MAX_WPM", "MIN_WPM"]

DEFAULT_WPM = 175
"""espeak's own default speaking rate; ``speed=1.0``."""
MIN_WPM = 80
MAX_WPM = 450

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit() inside the server
_BUFFER_MS = 200
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # keep the clause-final pause, so consecutive sentences do not run together
_POS_CHARACTER = 1
_RATE = 1
_PHONEMES_IPA = 0x02
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6

# Engine-local voice name -> (espeak voice identifier, language tag). Identifiers, not names: espeak's
# name lookup quietly falls back to some other voice for names it does not know.
_CURATED: dict[str, tuple[str, str]] = {
    "en-us": ("gmw/en-US", "en-US"),
    "en": ("gmw/en", "en-GB"),
    "de": ("gmw/de", "de"),
    "fr": ("roa/fr", "fr-FR"),
    "es": ("roa/es", "es"),
    "it": ("roa/it", "it"),
    "pt-br": ("roa/pt-BR", "pt-BR"),
    "nl": ("gmw/nl", "nl"),
    "pl": ("zlw/pl", "pl"),
    "ru": ("zle/ru", "ru"),
    "hi": ("inc/hi", "hi"),
    "ja": ("jpx/ja", "ja"),
    "cmn": ("sit/cmn", "zh"),
}
_LANGUAGE_SWITCH = re.compile(r"\([^)]*\)")  # "(en)...(fr)" flags around foreign words

_LOCK = threading.Lock()
_library: _Espeak | None = None


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class _WordEvent:
    text_position: int
    """1-based character offset into the synthesized text."""
    length: int
    audio_ms: int


class _Espeak:
    """The loaded library. One per process; use only while holding ``_LOCK``."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))

        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EngineFailure("espeak-ng failed to initialise", code="engine_unavailable")
        self.lib = lib
        self.sample_rate: int = rate
        self._chunks: list[bytes] = []
        self._words: list[_WordEvent] = []
        self._ends: list[int] = []
        # The C side holds only a raw pointer: this attribute keeps the callback object alive.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self.voice_names = self._list_voices()
        self._voice = ""

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        # Called from inside espeak_Synth on this thread; an exception here could not propagate.
        if count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._words.append(_WordEvent(ev.text_position, ev.length, ev.audio_position))
            elif ev.type in (_EVENT_END, _EVENT_MSG_TERMINATED):
                self._ends.append(ev.audio_position)
            i += 1
        return 0  # 0 = go on synthesizing

    def _list_voices(self) -> dict[str, str]:
        """Every installed voice: identifier -> human name."""
        out: dict[str, str] = {}
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            v = voices[i].contents
            if v.identifier:
                out[v.identifier.decode()] = (v.name or b"").decode()
            i += 1
        return out

    def set_voice(self, identifier: str) -> None:
        if identifier != self._voice:
            if self.lib.espeak_SetVoiceByName(identifier.encode()) != 0:
                raise EngineFailure("espeak-ng could not load the voice", code="synthesis_failed")
            self._voice = identifier

    def synth(self, text: str, wpm: int) -> tuple[npt.NDArray[np.int16], list[_WordEvent], list[int]]:
        self.lib.espeak_SetParameter(_RATE, wpm, 0)
        self._chunks, self._words, self._ends = [], [], []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if err != 0:
            raise EngineFailure("espeak-ng failed to synthesize", code="synthesis_failed")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        return samples, self._words, self._ends

    def phonemes(self, text: str) -> str:
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        clauses: list[str] = []
        # espeak converts one clause per call and advances the pointer; NULL means the text is done.
        while ptr.value:
            raw = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
            clause = _LANGUAGE_SWITCH.sub("", (raw or b"").decode("utf-8", "replace")).strip()
            if clause:
                clauses.append(clause)
        return " ".join(clauses)


def _espeak() -> _Espeak:
    """The process's library, loaded on first use. Call with ``_LOCK`` held."""
    global _library
    if _library is None:
        _library = _Espeak()
    return _library


class EspeakEngine:
    """espeak-ng voices, synthesized in-process.

    Constructing the engine loads and initialises the library (once per process); it takes a few
    milliseconds.
    """

    name = "espeak"

    def __init__(self) -> None:
        with _LOCK:
            lib = _espeak()
            self.sample_rate = lib.sample_rate
            self._voices = {
                name: (ident, lang, lib.voice_names[ident])
                for name, (ident, lang) in _CURATED.items()
                if ident in lib.voice_names
            }

    def voices(self) -> list[VoiceInfo]:
        """The curated espeak voices that this installation has."""
        return [
            VoiceInfo(
                id=f"espeak/{name}",
                name=name,
                engine="espeak",
                language=lang,
                sample_rate=self.sample_rate,
                description=f"espeak-ng {human}",
            )
            for name, (_, lang, human) in self._voices.items()
        ]

    def check_voice(self, voice: str) -> None:
        """Raise :class:`UnknownVoice` unless ``voice`` is one of :meth:`voices`."""
        self._identifier(voice)

    def warm_up(self) -> None:
        """Speak the short warm-up sentence once (loads espeak-ng's voice data)."""
        for name in list(self._voices)[:1]:
            for _ in self.synthesize(WARM_UP_TEXTS[0], name, 1.0):
                pass

    def _identifier(self, voice: str) -> str:
        try:
            return self._voices[voice][0]
        except KeyError:
            raise UnknownVoice(
                f"unknown espeak voice {voice!r}; available: {', '.join(sorted(self._voices))}",
                param="voice",
            ) from None

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        """Speak ``text`` as one piece, with word timings from espeak's word events."""
        identifier = self._identifier(voice)
        wpm = _wpm(speed)
        clean = text.replace("\x00", "")  # a NUL would end the C string early
        with _LOCK:
            lib = _espeak()
            lib.set_voice(identifier)
            samples, words, ends = lib.synth(clean, wpm)
        audio: FloatAudio = (samples.astype(np.float32) / 32768.0).astype(np.float32)
        duration = len(audio) / self.sample_rate
        yield AudioPiece(
            audio=audio,
            sample_rate=self.sample_rate,
            text=text,
            words=_word_timings(clean, words, ends, duration),
        )

    def phonemize(self, text: str, voice: str) -> PhonemeResult:
        """espeak's IPA for ``text``; ``tokens`` are the IPA's Unicode code points."""
        identifier = self._identifier(voice)
        with _LOCK:
            lib = _espeak()
            lib.set_voice(identifier)
            ipa = lib.phonemes(text.replace("\x00", ""))
        return PhonemeResult(phonemes=ipa, tokens=[ord(c) for c in ipa])

    def synthesize_phonemes(self, phonemes: str, voice: str, speed: float) -> Iterator[AudioPiece]:
        """Always refused: espeak cannot speak IPA."""
        self.check_phonemes(phonemes, voice)
        return iter(())

    def check_phonemes(self, phonemes: str, voice: str) -> None:
        """Always refused: espeak cannot speak IPA."""
        raise InvalidValue(
            "the espeak engine cannot speak IPA phonemes; use a piper or kokoro voice",
            code="phonemes_not_supported",
            param="voice",
        )


def _wpm(speed: float) -> int:
    if not math.isfinite(speed) or speed <= 0:
        raise InvalidValue("speed must be a positive number", code="invalid_speed", param="speed")
    return max(MIN_WPM, min(MAX_WPM, round(DEFAULT_WPM * speed)))


def _word_timings(text: str, words: list[_WordEvent], ends: list[int], duration_s: float) -> list[WordTiming]:
    """Turn word events into timings: a word lasts until the next word or clause end."""
    boundaries = sorted({w.audio_ms for w in words} | set(ends))
    out: list[WordTiming] = []
    for w in words:
        later = [b for b in boundaries if b > w.audio_ms]
        end_s = min(later[0] / 1000.0, duration_s) if later else duration_s
        start = max(0, w.text_position - 1)
        word = text[start : start + w.length].strip()
        if word:
            out.append(WordTiming(word=word, start_s=round(w.audio_ms / 1000.0, 3), end_s=round(end_s, 3)))
    return out
