"""Transcription hints (OpenAI's ``keywords`` and ``languages``) and token log probabilities.

One place checks the hints a client sends, for REST and Realtime alike, against the server's named
limits (``max_keywords``, ``max_keyword_chars``, ``max_keywords_total_chars``, ``max_languages``) and
Whisper's language codes; the engine then reads keywords as hotwords and restricts language detection
to the set (:mod:`voxserve.engines.whisper`).

Logprobs are per token, from the model's own numbers: Whisper's alignment pass (faster-whisper's
word timestamps) computes each text token's probability given the audio and the tokens before it, and
:func:`token_logprobs` reports ``ln`` of it with the token's text (leading space included, as Whisper
spelled it) and its exact bytes, in OpenAI's ``{token, logprob, bytes}`` shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

from voxserve.config import Settings
from voxserve.engines.base import Word
from voxserve.errors import InvalidRequest

__all__ = [
    "MIN_LOGPROB",
    "WHISPER_LANGUAGES",
    "check_keywords",
    "check_languages",
    "english_only",
    "token_logprobs",
]

# fmt: off
WHISPER_LANGUAGES: Final[frozenset[str]] = frozenset({
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy", "da", "de",
    "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw", "he", "hi", "hr", "ht",
    "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb", "ln", "lo", "lt",
    "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "oc", "pa", "pl",
    "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta",
    "te", "tg", "th", "tk", "tl", "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh", "yue",
})
# fmt: on
"""The language codes multilingual Whisper models know (faster-whisper's list)."""

MIN_LOGPROB: Final = math.log(1e-30)
"""The floor of a reported logprob: a probability that underflowed to 0 is reported as 1e-30
(JSON has no ``-inf``)."""


def english_only(model_id: str) -> bool:
    """Whether a served Whisper model id names an English-only model (``tiny.en``, ``small.en``:
    Whisper's ``.en`` convention; a folder not named so is checked by the engine when it decodes)."""
    return model_id.lower().endswith(".en")


def check_keywords(settings: Settings, keywords: Iterable[Any], param: str = "keywords") -> tuple[str, ...]:
    """The keywords, stripped, empty ones dropped; ``invalid_value`` for a non-string,
    ``too_many_keywords`` over ``max_keywords``, ``keyword_too_long`` for one over
    ``max_keyword_chars`` characters, ``keywords_too_long`` when together (joined by ``", "``) they
    are over ``max_keywords_total_chars``."""
    items = list(keywords)
    if any(not isinstance(k, str) for k in items):
        raise InvalidRequest(f"{param} must be a list of strings", code="invalid_value", param=param)
    kept = tuple(k.strip() for k in items if k.strip())
    if len(kept) > settings.max_keywords:
        raise InvalidRequest(
            f"{param}: at most {settings.max_keywords} keywords (got {len(kept)})",
            code="too_many_keywords",
            param=param,
        )
    for k in kept:
        if len(k) > settings.max_keyword_chars:
            raise InvalidRequest(
                f"{param}: a keyword has at most {settings.max_keyword_chars} characters "
                f"({k[:20]!r}... has {len(k)})",
                code="keyword_too_long",
                param=param,
            )
    total = len(", ".join(kept))
    if total > settings.max_keywords_total_chars:
        raise InvalidRequest(
            f"{param}: the keywords have at most {settings.max_keywords_total_chars} characters in all "
            f"(joined by ', '; got {total})",
            code="keywords_too_long",
            param=param,
        )
    return kept


def check_languages(
    settings: Settings, languages: Iterable[Any], model_id: str | None = None, param: str = "languages"
) -> tuple[str, ...]:
    """The language codes, lower-cased, without repeats; ``invalid_value`` for a non-string,
    ``too_many_languages`` over ``max_languages``, ``unsupported_language`` for a code Whisper does
    not know, or, for an English-only ``model_id``, a set without ``en``."""
    items = list(languages)
    if any(not isinstance(code, str) for code in items):
        raise InvalidRequest(f"{param} must be a list of ISO 639-1 codes", code="invalid_value", param=param)
    codes = tuple(dict.fromkeys(code.strip().lower() for code in items if code.strip()))
    if len(codes) > settings.max_languages:
        raise InvalidRequest(
            f"{param}: at most {settings.max_languages} languages (got {len(codes)})",
            code="too_many_languages",
            param=param,
        )
    unknown = [code for code in codes if code not in WHISPER_LANGUAGES]
    if unknown:
        raise InvalidRequest(
            f"{param}: {', '.join(repr(c[:16]) for c in unknown[:5])} is not a language Whisper knows "
            "(ISO 639-1 codes such as en, fr, de)",
            code="unsupported_language",
            param=param,
        )
    if codes and model_id is not None and english_only(model_id) and "en" not in codes:
        raise InvalidRequest(
            f"{param}: the model {model_id!r} is English-only, so detection can only pick 'en', "
            f"which {', '.join(codes)} does not include",
            code="unsupported_language",
            param=param,
        )
    return codes


def token_logprobs(words: Sequence[Word]) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs`` entries, one per token: ``{"token": text, "logprob": ln(probability),
    "bytes": [...]}``. A word the engine gave no tokens for (an engine without them) is one entry,
    with the mean probability of its tokens."""
    out: list[dict[str, Any]] = []
    for w in words:
        if w.tokens:
            out.extend(
                {"token": t.text, "logprob": round(max(MIN_LOGPROB, t.logprob), 6), "bytes": list(t.utf8)}
                for t in w.tokens
            )
            continue
        p = w.probability
        logprob = MIN_LOGPROB if not math.isfinite(p) or p <= 1e-30 else math.log(min(p, 1.0))
        out.append({"token": w.word, "logprob": round(logprob, 6), "bytes": list(w.word.encode("utf-8"))})
    return out
