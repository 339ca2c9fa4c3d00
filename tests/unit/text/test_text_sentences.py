"""Tests for voxserve.text.sentences: sentence boundaries, fragment limits, streaming, linear time."""

from __future__ import annotations

import gc
import random

import pytest
from tests.timing import cpu_seconds, scaled

from voxserve.text.sentences import IncrementalSplitter, split_fragments

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency; the seeded test still runs
    given = None


def _words(fragments: list[str]) -> list[str]:
    return " ".join(fragments).split()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
        ("One… Two... Three?! Four", ["One…", "Two...", "Three?!", "Four"]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(An aside.) Next.", ["(An aside.)", "Next."]),
        ("Mr. Smith met Mrs. Jones and Dr. Who.", ["Mr. Smith met Mrs. Jones and Dr. Who."]),
        (
            "St. Louis, e.g. a city, i.e. a place, etc. and more.",
            ["St. Louis, e.g. a city, i.e. a place, etc. and more."],
        ),
        ("Red vs. blue.", ["Red vs. blue."]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        ("The U.S. is big. Yes.", ["The U.S. is big.", "Yes."]),
        ("Pi is 3.14 today. Ok.", ["Pi is 3.14 today.", "Ok."]),
        ("Visit example.com now. Ok.", ["Visit example.com now.", "Ok."]),
        ("I said no. Then left.", ["I said no.", "Then left."]),
        ("1. Preheat the oven\n2. Bake", ["1. Preheat the oven", "2. Bake"]),
        ("I have 3. You have 4.", ["I have 3.", "You have 4."]),
        ("First line\nSecond line\n\nThird", ["First line", "Second line", "Third"]),
        ("No end punctuation", ["No end punctuation"]),
        ("Trailing dot.", ["Trailing dot."]),
        ("  \n  ", []),
        ("", []),
    ],
)
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert split_fragments(text) == expected


def test_long_first_sentence_is_cut_at_its_last_clause_boundary() -> None:
    text = (
        "When the quick brown fox, who was very hungry after a long day, jumped over the lazy dog, "
        "the farmer woke up and shouted loudly. Second sentence."
    )
    assert split_fragments(text) == [
        "When the quick brown fox, who was very hungry after a long day,",
        "jumped over the lazy dog, the farmer woke up and shouted loudly.",
        "Second sentence.",
    ]


def test_long_first_sentence_without_clauses_is_cut_at_a_word_boundary() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen end."
    fragments = split_fragments(text, first_fragment_max_chars=40)
    assert fragments == [
        "one two three four five six seven eight",
        "nine ten eleven twelve thirteen fourteen fifteen end.",
    ]


def test_a_first_sentence_is_not_cut_to_leave_a_few_words_behind() -> None:
    # Cut at 60 characters this left "river bank." to be rendered on its own after the head.
    text = "The quick brown fox jumps over the lazy dog near the quiet river bank."
    assert split_fragments(text, first_fragment_max_chars=60) == [text]
    assert split_fragments(f"{text} Next one.", first_fragment_max_chars=60) == [text, "Next one."]
    # Four words after the cut: cut.
    text = "The quick brown fox jumps over the lazy dog near the quiet green river bank."
    assert split_fragments(text, first_fragment_max_chars=40) == [
        "The quick brown fox jumps over the lazy",
        "dog near the quiet green river bank.",
    ]
    assert split_fragments(text, first_fragment_max_chars=58) == [text]  # "green river bank." left
    # A clause boundary too: "…, my friend." stays with its sentence.
    text = "We will meet again at the station tomorrow morning, my friend."
    assert split_fragments(text, first_fragment_max_chars=55) == [text]
    # A sentence longer than a fragment is cut whatever is left.
    text = "one two three four five six seven eight nine ten eleven twelve."
    assert split_fragments(text, first_fragment_max_chars=50, max_fragment_chars=60) == [
        "one two three four five six seven eight nine ten",
        "eleven twelve.",
    ]


def test_first_fragment_keeps_three_words_when_it_can() -> None:
    # The only clause boundary within the limit comes after one word: a word boundary is used instead.
    text = "Well, the results of the experiment were inconclusive and we need to run it again tomorrow."
    assert split_fragments(text, first_fragment_max_chars=30) == [
        "Well, the results of the",
        "experiment were inconclusive and we need to run it again tomorrow.",
    ]
    # Very long words: three words even past the limit, rather than one.
    text = "Supercalifragilistic antidisestablishment floccinaucinihilipilification and more words here."
    assert split_fragments(text, first_fragment_max_chars=30) == [
        "Supercalifragilistic antidisestablishment floccinaucinihilipilification",
        "and more words here.",
    ]


def test_only_the_first_sentence_gets_the_short_limit() -> None:
    first = "Short first."
    second = "This second sentence is well over forty characters long, but under the maximum."
    assert split_fragments(f"{first} {second}", first_fragment_max_chars=40) == [first, second]


def test_later_long_sentences_are_cut_at_clauses_then_words() -> None:
    clause = "this clause has some words in it, "
    text = "Hi. " + clause * 20 + "end."
    fragments = split_fragments(text, max_fragment_chars=100)
    assert fragments[0] == "Hi."
    assert all(len(f) <= 100 for f in fragments)
    assert all(f.endswith((",", ".")) for f in fragments)
    assert _words(fragments) == text.split()

    words = "Hi. " + "word " * 100
    fragments = split_fragments(words, max_fragment_chars=50)
    assert all(len(f) <= 50 for f in fragments)
    assert all(f.split() == ["word"] * len(f.split()) for f in fragments[1:])
    assert _words(fragments) == words.split()


def test_a_word_longer_than_the_maximum_is_hard_cut() -> None:
    fragments = split_fragments("Hi. " + "x" * 250, max_fragment_chars=100)
    assert fragments == ["Hi.", "x" * 100, "x" * 100, "x" * 50]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_fragments("x", max_fragment_chars=0)
    with pytest.raises(ValueError, match="at least 1"):
        IncrementalSplitter(first_fragment_max_chars=0)
    with pytest.raises(ValueError, match="min_first_fragment_words"):
        IncrementalSplitter(min_first_fragment_words=0)


# --------------------------------------------------------------------------------------------------
# IncrementalSplitter
# --------------------------------------------------------------------------------------------------


def _feed_all(splitter: IncrementalSplitter, pieces: list[str]) -> list[str]:
    fragments: list[str] = []
    for piece in pieces:
        fragments.extend(splitter.feed(piece))
        assert splitter.buffered_chars <= 300
    fragments.extend(splitter.flush())
    return fragments


def test_streaming_emits_sentences_as_they_complete() -> None:
    splitter = IncrementalSplitter()
    assert splitter.feed("Hello there") == []
    assert splitter.feed(".") == []  # "3." might still become "3.14"
    assert splitter.feed(" How") == ["Hello there."]
    assert splitter.feed(" are you? I") == ["How are you?"]
    assert splitter.feed(" met Mr") == []
    assert splitter.feed(". Smith.\nBye") == ["I met Mr. Smith."]
    assert splitter.flush() == ["Bye"]
    assert splitter.buffered_chars == 0


def test_streaming_first_fragment_is_cut_at_an_early_clause() -> None:
    splitter = IncrementalSplitter()
    out: list[str] = []
    for token in ["Well", ",", " I", " think", " so", ",", " yes", " indeed", "."]:
        out.extend(splitter.feed(token))
    # "Well," is too short to go alone; "Well, I think so," is not.
    assert out == ["Well, I think so,"]
    assert splitter.flush() == ["yes indeed."]
    # Only the first fragment is cut early.
    splitter = IncrementalSplitter()
    assert splitter.feed("First one. Then, after that, more") == ["First one."]
    assert splitter.flush() == ["Then, after that, more"]


def test_streaming_first_fragment_is_cut_at_a_word_once_too_long() -> None:
    splitter = IncrementalSplitter(first_fragment_max_chars=20)
    assert splitter.feed("one two three four five") == ["one two three four"]
    assert splitter.flush() == ["five"]


def test_streaming_buffer_is_bounded() -> None:
    splitter = IncrementalSplitter(max_fragment_chars=50)
    out: list[str] = []
    for _ in range(100):
        out.extend(splitter.feed("word "))
        assert splitter.buffered_chars <= 50
    out.extend(splitter.flush())
    assert all(len(f) <= 50 for f in out)
    assert _words(out) == ["word"] * 100


def test_normalised_markdown_streamed_token_by_token() -> None:
    from voxserve.text.normalize import normalize_text

    text = normalize_text(
        "## Answer\n\nSure! It costs **$12.50**, e.g. at 9:30 pm. See [docs](https://x.com).\n\n- one\n- two"
    )
    assert text == (
        "Answer\nSure! It costs twelve dollars and fifty cents, e.g. at nine thirty PM. See docs.\none\ntwo"
    )
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    expected = [
        "Answer",
        "Sure!",
        "It costs twelve dollars and fifty cents, e.g. at nine thirty PM.",
        "See docs.",
        "one",
        "two",
    ]
    assert split_fragments(text) == expected
    # The heading is the first fragment, so no later sentence is cut early.
    assert _feed_all(IncrementalSplitter(), tokens) == expected


def test_flush_resets_for_a_new_stream() -> None:
    splitter = IncrementalSplitter(first_fragment_max_chars=20)
    splitter.feed("A first stream. ")
    splitter.flush()
    assert splitter.feed("one two three four five") == ["one two three four"]


SAMPLE_TOKENS = [
    "Hello",
    "world",
    "Mr.",
    "e.g.",
    "3.14",
    "J.",
    "U.S.",
    "a",
    "supercalifragilistic",
    "x" * 120,
    ",",
    ".",
    "!",
    "?",
    "…",
    "...",
    ";",
    ":",
    "—",
    '"',
    ")",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
]


def _random_text(rng: random.Random) -> str:
    return "".join(
        rng.choice(SAMPLE_TOKENS) + rng.choice(["", " ", " "]) for _ in range(rng.randrange(0, 120))
    )


def _random_pieces(rng: random.Random, text: str) -> list[str]:
    cuts = sorted(rng.randrange(0, len(text) + 1) for _ in range(rng.randrange(0, 40)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _check_same_words(text: str, fragments: list[str], max_chars: int) -> None:
    assert all(f and f == f.strip() for f in fragments)
    assert all(len(f) <= max_chars for f in fragments)
    if all(len(word) <= max_chars for word in text.split()):
        assert _words(fragments) == text.split()
    else:  # hard cuts split words, but lose and add nothing
        assert "".join(_words(fragments)) == "".join(text.split())


@pytest.mark.parametrize("limits", [(80, 300), (20, 60), (5, 100)])
def test_streaming_in_random_pieces_keeps_every_word(limits: tuple[int, int]) -> None:
    first_max, max_chars = limits
    rng = random.Random(1234)
    for _ in range(500):
        text = _random_text(rng)
        splitter = IncrementalSplitter(first_fragment_max_chars=first_max, max_fragment_chars=max_chars)
        fragments: list[str] = []
        for piece in _random_pieces(rng, text):
            fragments.extend(splitter.feed(piece))
            assert splitter.buffered_chars <= max_chars
        fragments.extend(splitter.flush())
        _check_same_words(text, fragments, max_chars)
        _check_same_words(
            text,
            split_fragments(text, first_fragment_max_chars=first_max, max_fragment_chars=max_chars),
            max_chars,
        )


if given is not None:

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        st.lists(st.sampled_from(SAMPLE_TOKENS), max_size=80).map(" ".join),
        st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
        st.sampled_from([(80, 300), (10, 40), (3, 150)]),
    )
    def test_streaming_keeps_every_word_hypothesis(
        text: str, cuts: list[int], limits: tuple[int, int]
    ) -> None:
        first_max, max_chars = limits
        bounds = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
        pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        splitter = IncrementalSplitter(first_fragment_max_chars=first_max, max_fragment_chars=max_chars)
        fragments: list[str] = []
        for piece in pieces:
            fragments.extend(splitter.feed(piece))
            assert splitter.buffered_chars <= max_chars
        fragments.extend(splitter.flush())
        _check_same_words(text, fragments, max_chars)


# --------------------------------------------------------------------------------------------------
# Linear time on hostile input
# --------------------------------------------------------------------------------------------------

PATHOLOGICAL = {
    "letter-dot": "a." * 50_000,
    "dot-letter": ".a" * 50_000,
    "letters": "a" * 100_000,
    "words": "a " * 50_000,
    "dots": "." * 100_000,
    "dot-space": ". " * 50_000,
    "abbreviations": "Mr. " * 25_000,
    "clauses": ", " * 50_000,
    "commas": "," * 100_000,
    "newlines": "\n" * 100_000,
    "bangs-quote": '!"' * 50_000,
    "long-words": ("x" * 500 + " ") * 200,
}


def _best_time(func: object, text: str, repeats: int = 3) -> float:
    assert callable(func)
    return cpu_seconds(lambda: func(text), repeats)


def _stream(text: str) -> None:
    splitter = IncrementalSplitter()
    for i in range(0, len(text), 7):
        splitter.feed(text[i : i + 7])
    splitter.flush()


def _stream_at_once(text: str) -> None:
    splitter = IncrementalSplitter()
    splitter.feed(text)
    splitter.flush()


@pytest.mark.parametrize(
    "func", [split_fragments, _stream, _stream_at_once], ids=["batch", "stream", "one-feed"]
)
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_input_is_linear(name: str, func: object) -> None:
    text = PATHOLOGICAL[name]
    quarter = text[: len(text) // 4]
    gc_was_enabled = gc.isenabled()
    gc.disable()  # collector pauses are noise here, not the code under test
    try:
        small = _best_time(func, quarter)
        full = _best_time(func, text, repeats=2)
    finally:
        if gc_was_enabled:
            gc.enable()
    assert full < scaled(1.0), f"{name}: {full:.3f}s for {len(text)} characters"
    # 4x the input: linear work costs ~4x, a quadratic pass 16x; 8x leaves room for a shared CPU's
    # cache and frequency noise (a loaded run measured 6.7x on CPU time).
    assert full <= 8 * small + 0.02, f"{name}: 4x the input took {full / small:.1f}x the time"


@pytest.mark.parametrize("space", ["\r", "\xa0", "\u2003", "\x1f"])
def test_long_sentences_are_cut_at_any_whitespace(space: str) -> None:
    # Only " ", "\t" and "\n" counted as word boundaries: "0\r0" was hard-cut into "0\r" and "0".
    text = space.join(["word"] * 30)
    fragments = split_fragments(text, first_fragment_max_chars=20, max_fragment_chars=40)
    assert " ".join(fragments).split() == text.split()
    assert all(f == f.strip() and len(f) <= 40 for f in fragments)
