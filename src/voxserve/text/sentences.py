"""Splitting text into fragments to synthesise one at a time.

Latency to first audio is set by the first fragment, so it is kept short: a long first sentence is cut
at a clause boundary (or a word boundary) near ``first_fragment_max_chars``. Later fragments are whole
sentences, cut only when longer than ``max_fragment_chars``, since every cut costs some prosody.

Fragments are slices of the input between whitespace, so joining them with spaces gives back the same
words; the one exception is a single "word" longer than ``max_fragment_chars``, which is hard-cut.

Both :func:`split_fragments` (whole text) and :class:`IncrementalSplitter` (LLM token streams) run in
time linear in the input: the regular expressions use possessive quantifiers and look-behind guards so
that no run of characters is scanned more than a bounded number of times.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["IncrementalSplitter", "split_fragments"]

# A sentence ends at a run of terminal punctuation (plus closing quotes or brackets) followed by
# whitespace, or at a newline. The look-behind makes a match start only at the beginning of a run, so
# ".........." is scanned once, not once per dot.
_SENTENCE_END_RE = re.compile(r"(?<![.!?…])[.!?…]++[\"'”’)\]]*+(?=\s)|\n")
_CLAUSE_END_RE = re.compile(r"[,;:—–](?=\s)")
_WORD_RE = re.compile(r"\S++")
_NON_SPACE_RE = re.compile(r"\S")
_CLAUSE_CHARS = frozenset(",;:—–")
_TRAILING_PUNCTUATION = ".!?…\"'”’)]"
# Lower case, without the final full stop. "no" is left out: "I said no." ends sentences far more
# often than "No. 5" occurs.
_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "prof",
        "sr",
        "jr",
        "mt",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "approx",
        "fig",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "rev",
        "hon",
        "sen",
        "rep",
        "gov",
    }
)
_ABBREVIATION_WINDOW = 12
"""How far back to look for the word before a full stop; longer words are never abbreviations."""
_OPENING_PUNCTUATION = "\"'“‘([{"
_MIN_FIRST_WORDS = 3
# A first sentence that fits one fragment is not cut when fewer words than this would follow the cut:
# the tail would cost a render of its own after the head (peers_bench's "The quick brown fox … near
# the quiet | river bank.": total 235 ms against 180 for the whole sentence on the lone session, 1.30 x
# wyoming-piper) to save the head a few words, and it breaks the sentence's melody for nothing.
_MIN_TAIL_WORDS = 4


def split_fragments(
    text: str, *, first_fragment_max_chars: int = 80, max_fragment_chars: int = 300
) -> list[str]:
    """Split ``text`` (normally already normalised) into fragments to synthesise, in order.

    Sentences end at ``. ! ? …`` followed by whitespace (not after abbreviations such as "Mr." or
    "e.g.", initials, or a list number at the start of a line) and at newlines. A first sentence longer
    than ``first_fragment_max_chars`` is cut at its last clause boundary (``, ; : — –``) within that
    length, else at the last word boundary, keeping at least three words where it can; it is left
    whole when it fits ``max_fragment_chars`` and fewer than four words would follow the cut. Any sentence
    longer than ``max_fragment_chars`` is cut at clause boundaries, then word boundaries; a single word
    longer than that is hard-cut.
    """
    _check_limits(first_fragment_max_chars, max_fragment_chars)
    fragments: list[str] = []
    first = True
    for sentence in _sentences(text):
        fragments.extend(
            _shape_sentence(sentence, first, first_fragment_max_chars, max_fragment_chars, _MIN_FIRST_WORDS)
        )
        first = False
    return fragments


class IncrementalSplitter:
    """Split a stream of text (an LLM's tokens) into fragments as soon as each one is complete.

    :meth:`feed` returns the fragments that its text completed; :meth:`flush` returns the rest and
    resets the splitter for a new stream. A fragment is complete at a sentence end followed by
    whitespace; the first fragment also at its first clause boundary once it has
    ``min_first_fragment_words`` words, or at a word boundary once it outgrows
    ``first_fragment_max_chars``; any fragment is cut when the buffered text outgrows
    ``max_fragment_chars``. The buffer therefore never holds more than ``max_fragment_chars``
    characters between calls, and the work done is linear in the text fed.
    """

    def __init__(
        self,
        first_fragment_max_chars: int = 80,
        max_fragment_chars: int = 300,
        min_first_fragment_words: int = 3,
    ) -> None:
        _check_limits(first_fragment_max_chars, max_fragment_chars)
        if min_first_fragment_words < 1:
            raise ValueError("min_first_fragment_words must be at least 1")
        self._first_max = first_fragment_max_chars
        self._max = max_fragment_chars
        self._min_words = min_first_fragment_words
        self._buffer = ""
        # Where to resume looking for a sentence end: everything before it has been ruled out.
        self._scan_from = 0
        self._first = True

    @property
    def buffered_chars(self) -> int:
        """How many characters have been fed but not yet returned (at most ``max_fragment_chars``)."""
        return len(self._buffer)

    def feed(self, text: str) -> list[str]:
        """Add ``text`` to the stream; return the fragments it completed (possibly none)."""
        if not text:
            return []
        buffer = self._buffer + text
        out: list[str] = []
        start = _skip_space(buffer, 0)  # what is before this in ``buffer`` has been returned
        scan = max(start, self._scan_from)
        searching = True
        while True:
            if searching:
                found = _find_sentence_end(buffer, scan, start)
                if found is not None:
                    sentence_end, next_start = found
                    if sentence := buffer[start:sentence_end].strip():
                        out.extend(self._shape(sentence))
                    start = scan = _skip_space(buffer, next_start)
                    continue
                # No sentence ends in what is buffered, and cutting pieces off its front will not make
                # one: stop searching until more text comes. Only a run of punctuation at the very end
                # might still end a sentence, once the whitespace after it arrives.
                searching = False
                scan = max(start, _trailing_punctuation_start(buffer))
            cut = self._early_first_cut(buffer, start) if self._first else None
            if cut is None and len(buffer) - start > self._max:
                piece, length = _cut_long(buffer[start : start + self._max + 1], self._max)
                out.append(piece)
                cut = start + length
            elif cut is not None:
                out.append(buffer[start:cut].strip())
            if cut is None:
                break
            self._first = False
            start = _skip_space(buffer, cut)
            scan = max(scan, start)
        self._buffer = buffer[start:]
        self._scan_from = scan - start
        return out

    def flush(self) -> list[str]:
        """End the stream: return what is left, split as :func:`split_fragments` would, and reset."""
        fragments: list[str] = []
        for sentence in _sentences(self._buffer):
            fragments.extend(self._shape(sentence))
        self._buffer = ""
        self._scan_from = 0
        self._first = True
        return fragments

    def _shape(self, sentence: str) -> list[str]:
        fragments = _shape_sentence(sentence, self._first, self._first_max, self._max, self._min_words)
        self._first = False
        return fragments

    def _early_first_cut(self, buffer: str, start: int) -> int | None:
        """Where the first fragment can end before its sentence does, if anywhere yet: its first
        clause boundary with enough words before it, or, once the buffer is longer than
        ``first_fragment_max_chars``, its last word boundary within that length."""
        window = buffer[start : start + self._first_max + 1]
        last_word_end = None
        for count, word in enumerate(_WORD_RE.finditer(window), start=1):
            if word.end() == len(window):
                break  # the word may go on in text not yet seen, or beyond the limit
            if count >= self._min_words:
                if window[word.end() - 1] in _CLAUSE_CHARS:
                    return start + word.end()
                last_word_end = word.end()
        if last_word_end is not None and len(buffer) - start > self._first_max:
            return start + last_word_end
        return None


def _check_limits(first_fragment_max_chars: int, max_fragment_chars: int) -> None:
    if first_fragment_max_chars < 1 or max_fragment_chars < 1:
        raise ValueError("fragment limits must be at least 1 character")


def _sentences(text: str) -> list[str]:
    """The non-empty, stripped sentences of ``text``, in order."""
    sentences: list[str] = []
    start = 0
    pos = 0
    while (found := _find_sentence_end(text, pos, start)) is not None:
        sentence_end, pos = found
        if sentence := text[start:sentence_end].strip():
            sentences.append(sentence)
        start = pos
    if rest := text[start:].strip():
        sentences.append(rest)
    return sentences


def _find_sentence_end(text: str, pos: int, floor: int) -> tuple[int, int] | None:
    """The first sentence end at or after ``pos``: (end of the sentence, start of what follows).

    ``floor`` is where the current sentence starts; the abbreviation check looks no further back.
    """
    while m := _SENTENCE_END_RE.search(text, pos):
        if m.group() == "\n":
            return m.start(), m.end()
        if not _is_abbreviation(text, m.start(), floor):
            return m.end(), m.end()
        pos = m.end()
    return None


def _is_abbreviation(text: str, dot: int, floor: int) -> bool:
    """Whether the full stop at ``dot`` (if it is a lone full stop) belongs to the word before it."""
    if text[dot] != "." or text[dot + 1 : dot + 2] in (".", "!", "?", "…"):
        return False
    start = dot
    floor = max(floor, dot - _ABBREVIATION_WINDOW)
    while start > floor and not text[start - 1].isspace():
        start -= 1
    if start == floor and start > 0 and not text[start - 1].isspace():
        return False  # a long token: not an abbreviation
    word = text[start:dot].lstrip(_OPENING_PUNCTUATION)
    if not word:
        return False
    if word.lower() in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():
        return True  # an initial: "J. R. R. Tolkien"
    if "." in word and all(part.isalpha() and len(part) <= 3 for part in word.split(".")):
        return True  # "U.S.", "Ph.D."
    # "1. Preheat the oven": a list number at the start of a line.
    return word.isdigit() and len(word) <= 3 and (start == 0 or text[start - 1] == "\n")


def _shape_sentence(sentence: str, first: bool, first_max: int, max_chars: int, min_words: int) -> list[str]:
    """Cut one stripped sentence into fragments: a short head if it is the first sentence, then pieces
    of at most ``max_chars``. Works on bounded windows, so a huge sentence costs linear time."""
    fragments: list[str] = []
    pos = 0
    size = len(sentence)
    if first and size > first_max:
        cut = _first_cut(sentence[: max(first_max, max_chars) + 2], first_max, max_chars, min_words)
        if cut is not None and not _short_tail(sentence, cut, max_chars):
            fragments.append(sentence[:cut].rstrip())
            pos = _skip_space(sentence, cut)
    while size - pos > max_chars:
        piece, length = _cut_long(sentence[pos : pos + max_chars + 1], max_chars)
        fragments.append(piece)
        pos = _skip_space(sentence, pos + length)
    if pos < size:
        fragments.append(sentence[pos:])
    return fragments


def _short_tail(sentence: str, cut: int, max_chars: int) -> bool:
    """Whether ``sentence`` fits one fragment and fewer than ``_MIN_TAIL_WORDS`` words follow ``cut``
    (bounded work: the sentence is at most ``max_chars`` long when it is counted)."""
    if len(sentence) > max_chars:
        return False
    return sum(1 for _ in _WORD_RE.finditer(sentence, cut)) < _MIN_TAIL_WORDS


def _first_cut(window: str, first_max: int, max_chars: int, min_words: int) -> int | None:
    """Where a long first sentence's first fragment ends: after its last clause boundary within
    ``first_max`` characters, else its last word within them, with at least ``min_words`` words
    either way; else (very long words) after its ``min_words``-th word if that fits ``max_chars``.

    ``window`` is the start of the sentence, longer than ``first_max`` and ``max_chars``.
    """
    last_clause = last_word = None
    for count, word in enumerate(_WORD_RE.finditer(window), start=1):
        end = word.end()
        if end > first_max:
            if count == min_words and last_word is None and end <= max_chars and end < len(window):
                return end
            if count >= min_words:
                break
            continue
        if count >= min_words:
            last_word = end
            if window[end - 1] in _CLAUSE_CHARS:
                last_clause = end
    return last_clause if last_clause is not None else last_word


def _cut_long(text: str, max_chars: int) -> tuple[str, int]:
    """Cut a piece of at most ``max_chars`` off the front of ``text`` (at least ``max_chars + 1``
    long): (the piece, its length in ``text``).

    Prefers the last clause boundary, then the last word boundary, in the back two thirds of the
    window, so that a cut rarely takes less than a third of it: that keeps repeated cutting linear.
    """
    floor = max(1, max_chars // 3)
    last_clause = None
    for m in _CLAUSE_END_RE.finditer(text, floor, max_chars + 1):
        last_clause = m.end()
    if last_clause is not None:
        return text[:last_clause].rstrip(), last_clause
    space = _last_space(text, floor, max_chars + 1)
    if space < 0:
        space = _last_space(text, 1, floor)
    if space > 0:
        return text[:space].rstrip(), space
    cut = max_chars
    # Do not strand combining marks at the start of the next piece (bounded: marks come in short runs).
    for _ in range(8):
        if cut > 1 and unicodedata.combining(text[cut]):
            cut -= 1
    return text[:cut], cut


def _last_space(text: str, lo: int, hi: int) -> int:
    """Index of the last whitespace character in ``text[lo:hi]``, or -1.

    Any whitespace counts (``\r``, no-break and other Unicode spaces too, as ``str.split`` sees them),
    so a cut never falls inside what a client sees as two words. The window is one fragment long.
    """
    for i in range(min(hi, len(text)) - 1, max(lo, 0) - 1, -1):
        if text[i].isspace():
            return i
    return -1


def _skip_space(text: str, pos: int) -> int:
    """The index of the first non-whitespace character at or after ``pos`` (or ``len(text)``)."""
    m = _NON_SPACE_RE.search(text, pos)
    return m.start() if m else len(text)


def _trailing_punctuation_start(text: str) -> int:
    return len(text.rstrip(_TRAILING_PUNCTUATION))
