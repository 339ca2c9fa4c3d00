"""Map the words of normalised text back to the characters of the text a client sent (pure).

The normaliser rewrites ``$100`` into "one hundred dollars" and ``9:30PM`` into "nine thirty PM"; word
timestamps name the spoken words, and a client that highlights its own text needs to know which
characters of *its* text each spoken word came from. :func:`source_spans` answers that by aligning the
two word sequences: words the normaliser left alone (the vast majority) anchor the alignment, and the
spoken words between two anchors map to the source words between them ("one", "hundred", "dollars" all
map to ``$100``).

Words are compared by their letters and digits, case-folded, so punctuation and markdown around a word
("**bold**,") do not break an anchor. The alignment walks both texts once; after a mismatch it looks a
bounded distance ahead for the next anchor, so it runs in time linear in the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SourceWord", "source_spans", "word_key"]

_Token = tuple[int, int, str]
"""A source word: its range (punctuation trimmed) and its key."""

_TOKEN_RE = re.compile(r"\S+")
_LEADING = "\"'“‘([{*_~`"
_TRAILING = ".,;:!?…\"'”’)]}*_~`"
_REACH_SOURCE = 16
"""How many source words one rewrite may replace (markdown table rules and emoji are dropped)."""
_REACH_SPOKEN = 64
"""How many spoken words one rewrite may produce (a 40-digit run is read digit by digit)."""


def word_key(word: str) -> str:
    """What two spellings of a word must share to be the same word: letters and digits, case-folded."""
    return "".join(ch for ch in word.casefold() if ch.isalnum())


@dataclass(frozen=True)
class SourceWord:
    """One whitespace-separated word of the spoken text and the source characters it came from."""

    word: str
    key: str
    source_start: int
    source_end: int


def source_spans(source: str, spoken: str, base: int = 0) -> list[SourceWord]:
    """Every word of ``spoken`` with the ``[start, end)`` character range of ``source`` it speaks.

    ``base`` is added to every offset (for ``source`` that is a slice of a longer text). A spoken word
    the normaliser invented (an expansion) gets the range of the source words it replaced; a spoken word
    with no source counterpart at all gets the empty range at the nearest position.
    """
    src = [(*_core(m.start(), m.end(), m.group()), word_key(m.group())) for m in _TOKEN_RE.finditer(source)]
    out_words = [m.group() for m in _TOKEN_RE.finditer(spoken)]
    keys = [word_key(w) for w in out_words]
    spans: list[tuple[int, int]] = []
    i = j = 0  # the next source and spoken word not yet aligned
    while j < len(keys):
        if i < len(src) and keys[j] and keys[j] == src[i][2]:
            spans.append((src[i][0], src[i][1]))
            i, j = i + 1, j + 1
            continue
        anchor = _next_anchor(src, keys, i, j)
        if anchor is None:
            if len(src) - i <= _REACH_SOURCE and len(keys) - j <= _REACH_SPOKEN:
                # The rewrite runs to the end of both texts ("... after 9:30PM.").
                _fill_gap(src, spans, i, len(src), len(keys) - j)
                break
            # Nothing in reach matches: take the words as substitutes, one for one, and go on.
            _fill_gap(src, spans, i, min(i + 1, len(src)), 1)
            i, j = min(i + 1, len(src)), j + 1
            continue
        a, b = anchor
        _fill_gap(src, spans, i, a, b - j)
        i, j = a, b
    return [
        SourceWord(word, key, base + a, base + b)
        for word, key, (a, b) in zip(out_words, keys, spans, strict=True)
    ]


def _next_anchor(src: list[_Token], keys: list[str], i: int, j: int) -> tuple[int, int] | None:
    """The nearest ``(source, spoken)`` pair of equal words after a rewrite that starts at ``(i, j)``.

    A pair counts when the words after it are equal too (or both texts end there), so that a spelled
    number ("two" from ``2``) does not anchor on a later literal "two"; failing that, the nearest
    single equal pair. Bounded by :data:`_REACH_SOURCE` x :data:`_REACH_SPOKEN`, so this is O(1).
    """
    positions: dict[str, list[int]] = {}
    for a in range(i, min(len(src), i + _REACH_SOURCE)):
        if src[a][2]:
            positions.setdefault(src[a][2], []).append(a)
    fallback: tuple[int, int] | None = None
    for b in range(j, min(len(keys), j + _REACH_SPOKEN)):
        for a in positions.get(keys[b], ()):
            after_src, after_out = a + 1, b + 1
            confirmed = (after_src == len(src) and after_out == len(keys)) or (
                after_src < len(src) and after_out < len(keys) and src[after_src][2] == keys[after_out]
            )
            if confirmed:
                return a, b
            if fallback is None:
                fallback = (a, b)
    return fallback


def _core(start: int, end: int, token: str) -> tuple[int, int]:
    """The token's range without the punctuation and markdown around it (``**Smith**,`` → ``Smith``)."""
    lead = len(token) - len(token.lstrip(_LEADING))
    trail = len(token) - len(token.rstrip(_TRAILING))
    if lead + trail >= len(token):
        return start, end
    return start + lead, end - trail


def _fill_gap(src: list[_Token], spans: list[tuple[int, int]], lo: int, hi: int, n: int) -> None:
    """Append ``n`` spans for spoken words that replace source words ``lo:hi`` (all of them each)."""
    if n <= 0:
        return
    if hi > lo:
        span = (src[lo][0], src[hi - 1][1])
    else:
        at = spans[-1][1] if spans else (src[lo][0] if lo < len(src) else (src[-1][1] if src else 0))
        span = (at, at)
    spans.extend([span] * n)
