"""Word error rate with the normalisation speech_dev's README asks for."""

from __future__ import annotations

import re

from voxserve.text.numwords import integer_words


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, numbers as words: Whisper writes "twenty two" as "22"
    and "7:30" as "7 30", which are not errors of what was spoken."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    out: list[str] = []
    for w in words:
        out.extend(integer_words(w).replace("-", " ").split() if w.isdigit() and len(w) <= 9 else [w])
    return out


def errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    e, n = errors(reference, hypothesis)
    return e / max(1, n)
