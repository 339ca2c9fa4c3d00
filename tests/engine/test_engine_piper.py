"""The Piper engine with the bundled en_US-joe-medium voice."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.tts_checks import assert_interrupt_stops_synthesis, assert_warm_up_leaves_engine_usable

from voxserve.engines.base import TTSEngine
from voxserve.engines.piper import PiperEngine
from voxserve.errors import InvalidValue, UnknownVoice

pytestmark = pytest.mark.engine

VOICE = "en_US-joe-medium"


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    return PiperEngine(threads=1)


def test_satisfies_the_protocol(engine: PiperEngine) -> None:
    assert isinstance(engine, TTSEngine)
    (voice,) = engine.voices()
    assert (voice.id, voice.sample_rate, voice.language) == (f"piper/{VOICE}", 22050, "en-US")


def test_synthesize_one_fragment(engine: PiperEngine) -> None:
    pieces = list(engine.synthesize("Hello world, this is a test.", VOICE, 1.0))
    assert len(pieces) == 1
    audio = pieces[0].audio
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert 1.0 < len(audio) / 22050 < 4.0
    assert float(np.abs(audio).max()) > 0.3


def test_word_timings_cover_the_audio(engine: PiperEngine) -> None:
    (piece,) = engine.synthesize("The quick brown fox.", VOICE, 1.0)
    words = piece.words
    assert [w.word for w in words] == ["The", "quick", "brown", "fox"]
    assert words[0].start_s == 0.0
    assert all(a.end_s == pytest.approx(b.start_s, abs=0.002) for a, b in zip(words, words[1:], strict=False))
    assert words[-1].end_s == pytest.approx(len(piece.audio) / 22050, abs=0.01)


def test_speed_changes_duration(engine: PiperEngine) -> None:
    text = "Speed changes how long this takes."
    slow = sum(len(p.audio) for p in engine.synthesize(text, VOICE, 0.5))
    fast = sum(len(p.audio) for p in engine.synthesize(text, VOICE, 2.0))
    assert slow > 2.5 * fast


def test_unknown_voice(engine: PiperEngine) -> None:
    with pytest.raises(UnknownVoice):
        engine.check_voice("en_US-nobody")


def test_phonemize_and_speak_phonemes(engine: PiperEngine) -> None:
    result = engine.phonemize("Hello world. How are you?", VOICE)
    assert result.phonemes.startswith("həlˈoʊ") and result.phonemes.endswith("?")
    assert len(result.tokens) > len(result.phonemes)  # ids include pads between phonemes
    (piece,) = engine.synthesize_phonemes(result.phonemes, VOICE, 1.0)
    assert len(piece.audio) / 22050 > 0.8


@pytest.mark.parametrize("phonemes", ["həlˈoʊ ☃", "", "   "])
def test_invalid_phonemes(engine: PiperEngine, phonemes: str) -> None:
    with pytest.raises(InvalidValue) as info:
        list(engine.synthesize_phonemes(phonemes, VOICE, 1.0))
    assert info.value.code == "invalid_phonemes"


def test_every_openai_voice_name_is_a_bundled_english_voice_that_speaks(engine: PiperEngine) -> None:
    """The default alias table points only at voices this engine loads offline from site-packages,
    and each says the words (Whisper round trip)."""
    import soxr
    from tests.wer import wer

    from voxserve.config import DEFAULT_VOICE_ALIASES
    from voxserve.engines.base import TranscribeOptions
    from voxserve.engines.whisper import WhisperEngine

    loaded = {v.id: v for v in engine.voices()}
    targets = set(DEFAULT_VOICE_ALIASES.values())
    assert targets <= set(loaded), targets - set(loaded)
    whisper = WhisperEngine("tiny.en", threads=1)
    text = "Please call Stella and ask her to bring these things with her from the store."
    for target in sorted(targets):
        info = loaded[target]
        assert info.language.startswith("en-")
        audio = np.concatenate([p.audio for p in engine.synthesize(text, info.name, 1.0)])
        _, segments = whisper.transcribe(
            soxr.resample(audio, info.sample_rate, 16000).astype(np.float32), TranscribeOptions()
        )
        assert wer(text, "".join(s.text for s in segments)) <= 0.1, target


def test_warm_up_runs_and_leaves_the_engine_usable(engine: Any) -> None:
    assert_warm_up_leaves_engine_usable(engine)


def test_interrupt_stops_a_synthesis_and_rearm_resumes(engine: Any) -> None:
    assert_interrupt_stops_synthesis(engine)


@pytest.fixture(scope="module")
def lone_engine() -> PiperEngine:
    return PiperEngine(threads=1, lone_threads=2)


def test_a_lone_request_speaks_on_the_sessions_on_every_core(lone_engine: PiperEngine) -> None:
    """use_lone switches synthesis to the second session (same model, more threads) and back."""
    assert lone_engine.lone_threads == 2
    voice = lone_engine._voice(VOICE)
    assert voice.lone_voice is not None and len(voice.sessions) == 2
    calls: list[str] = []
    for name, speaker in (("plain", voice.voice), ("lone", voice.lone_voice)):
        original = speaker.synthesize
        speaker.synthesize = lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1]
    text = "Hello world, this is a test."
    plain = np.concatenate([p.audio for p in lone_engine.synthesize(text, VOICE, 1.0)])
    lone_engine.use_lone(True)
    lone = np.concatenate([p.audio for p in lone_engine.synthesize(text, VOICE, 1.0)])
    lone_engine.use_lone(False)
    lone_engine.synthesize(text, VOICE, 1.0)  # a generator: nothing runs until read
    list(lone_engine.synthesize(text, VOICE, 1.0))
    assert calls == ["plain", "lone", "plain"]
    # Piper's noise makes each rendering differ slightly; the same model says the same thing.
    assert abs(len(lone) - len(plain)) < 0.2 * len(plain) and float(np.abs(lone).max()) > 0.3
    assert PiperEngine(threads=1).lone_threads == 0


def test_interrupt_stops_the_lone_session_too(lone_engine: Any) -> None:
    lone_engine.use_lone(True)
    try:
        assert_interrupt_stops_synthesis(lone_engine)
    finally:
        lone_engine.use_lone(False)


_PROBE_HEAD = """
import sys
from voxserve.engines.piper import PiperEngine
from voxserve.runtime.worker import release_free_memory

def rss():
    release_free_memory()
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
"""
"""What each memory probe below starts with: the engine, and this process's RSS in MB once its free
heap is handed back."""

_RSS_PROBE = (
    _PROBE_HEAD
    + """
before = rss()
engine = PiperEngine(threads=1, lone_threads=int(sys.argv[1]))
print(rss() - before)
"""
)


_ARENA_PROBE = (
    _PROBE_HEAD
    + """
LONG = "Many of the people who run this server do so on small boards, where every megabyte counts. " * 2
engine = PiperEngine(threads=1, lone_threads=2)
voice = next(iter(engine._voices))
list(engine.synthesize(LONG, voice, 1.0))
before = rss()
engine.use_lone(True)
list(engine.synthesize(LONG, voice, 1.0))
print(rss() - before)
"""
)


def _probe_mb(code: str, *args: str) -> int:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def _load_mb(lone_threads: int) -> int:
    return _probe_mb(_RSS_PROBE, str(lone_threads))


def test_the_lone_session_shares_the_weights_of_the_first(lone_engine: PiperEngine) -> None:
    voice = lone_engine._voice(VOICE)
    assert len(voice.weights) > 100  # the sessions were given the same arrays
    one, two = _load_mb(0), _load_mb(2)
    # Each session with its own weights held 60 MB more; sharing them, the second costs its graph only.
    assert two - one < 35, (one, two)


def test_the_sessions_of_a_worker_grow_one_memory_arena() -> None:
    # The plain session's arena already fits a long sentence: the lone session reuses it (its own
    # arena grew by 69 MB for the same sentence).
    assert _probe_mb(_ARENA_PROBE) < 30
