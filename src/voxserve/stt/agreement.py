"""LocalAgreement-2: which words of a growing transcript are safe to show as final.

While someone speaks, the streaming session re-decodes the whole utterance every few hundred
milliseconds. Each decode is a *hypothesis*: a list of words that may differ from the last one
anywhere, most often at the end, where the speaker is mid-word. LocalAgreement-2 (Macháček et al.,
"Turning Whisper into Real-Time Transcription System", 2023) commits a word once two successive
hypotheses agree on it and on everything before it::

    hypothesis 1:  to be                 committed: -            tentative: to be
    hypothesis 2:  to be or              committed: to be        tentative: or
    hypothesis 3:  to be or not          committed: to be or     tentative: not

Committed words never change and never shrink, which is what append-only clients need (OpenAI
Realtime ``delta`` events, Google-style ``stable`` text). Words are compared case-insensitively and
without punctuation, so ``Hello,`` and ``hello`` agree; the committed spelling is the newer one.

When a later hypothesis re-words text that is already committed (Whisper may write "gonna" once and
"going to" the next time), the committed words stay as they are and the new hypothesis is aligned
to them: the tail starts after the word matching the last committed word, searched near where it
should be; failing that, after as many words as are committed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

__all__ = ["LocalAgreement", "normalize_word"]

_ALIGN_SLACK = 3
"""How many words either side of the expected place to look for the last committed word."""

STABILITY_GROWING = 0.9
"""Stability when the first tentative word extends (or is extended by) the previous hypothesis's word."""
STABILITY_NEW = 0.5
"""Stability when the previous hypothesis ended where the tentative words begin."""
STABILITY_CHANGING = 0.1
"""Stability when the previous hypothesis said something else there, or there was none."""


def normalize_word(word: str) -> str:
    """The comparison key of a word: case-folded, punctuation and surrounding spaces removed."""
    return "".join(ch for ch in word.casefold() if not unicodedata.category(ch).startswith("P")).strip()


def _common_prefix_length(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LocalAgreement:
    """The LocalAgreement-2 stable-prefix policy over successive hypotheses of one utterance.

    Feed each new hypothesis to :meth:`update`; it returns the words that became committed and the
    tentative tail. Call :meth:`reset` when a new utterance begins.
    """

    def __init__(self) -> None:
        self._committed: list[str] = []
        self._committed_keys: list[str] = []
        self._previous_keys: list[str] | None = None
        # The previous hypothesis's words after everything committed so far (keys): what
        # :meth:`stability` compares the current tail with.
        self._previous_rest: list[str] | None = None

    @property
    def committed(self) -> tuple[str, ...]:
        """Every committed word so far, in the spelling of the hypothesis that committed it."""
        return tuple(self._committed)

    def reset(self) -> None:
        """Forget everything: the next :meth:`update` starts a new utterance."""
        self._committed.clear()
        self._committed_keys.clear()
        self._previous_keys = None
        self._previous_rest = None

    def update(self, words: Sequence[str]) -> tuple[list[str], list[str]]:
        """Take a new hypothesis of the whole utterance; return ``(newly_committed, tentative_tail)``.

        ``newly_committed`` is the longest common prefix of the previous and this hypothesis beyond
        what was already committed, spelled as in this hypothesis; ``tentative_tail`` is the rest of
        this hypothesis. Empty strings in ``words`` are ignored.
        """
        current = [w.strip() for w in words if w.strip()]
        keys = [normalize_word(w) for w in current]
        start = self._align(keys)
        rest, rest_keys = current[start:], keys[start:]
        if self._previous_keys is None:
            matched = 0
            self._previous_rest = None
        else:
            previous_rest = self._previous_keys[self._align(self._previous_keys) :]
            matched = _common_prefix_length(previous_rest, rest_keys)
            self._previous_rest = previous_rest[matched:]
        newly = rest[:matched]
        self._committed.extend(newly)
        self._committed_keys.extend(rest_keys[:matched])
        self._previous_keys = keys
        return newly, rest[matched:]

    def stability(self, tail: Sequence[str]) -> float:
        """A rough probability that ``tail`` (as just returned by :meth:`update`) survives unchanged.

        The heuristic looks only at the first tentative word and the previous hypothesis's word in
        the same place: 1.0 for an empty tail (nothing is tentative); :data:`STABILITY_GROWING` (0.9)
        when one is a prefix of the other (a word still being spoken: "wor" → "world");
        :data:`STABILITY_NEW` (0.5) when the previous hypothesis ended there (fresh words after full
        agreement); :data:`STABILITY_CHANGING` (0.1) when it said something else, or on the first
        hypothesis of an utterance.
        """
        if not tail:
            return 1.0
        if self._previous_rest is None:
            return STABILITY_CHANGING
        if not self._previous_rest:
            return STABILITY_NEW
        first, before = normalize_word(tail[0]), self._previous_rest[0]
        if first and before and (first.startswith(before) or before.startswith(first)):
            return STABILITY_GROWING
        return STABILITY_CHANGING

    def _align(self, keys: Sequence[str]) -> int:
        """Where the committed words end in a hypothesis (keys): the index its tail starts at."""
        n = len(self._committed_keys)
        if n == 0:
            return 0
        if list(keys[:n]) == self._committed_keys:
            return n
        # The decoder re-worded committed text; find the last committed word nearest its place.
        last = self._committed_keys[-1]
        places = [
            k
            for k in range(max(1, n - _ALIGN_SLACK), min(len(keys), n + _ALIGN_SLACK) + 1)
            if keys[k - 1] == last
        ]
        if places:
            return min(places, key=lambda k: abs(k - n))
        return min(n, len(keys))
