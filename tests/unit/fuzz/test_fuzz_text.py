"""Property tests for the text parsers: sentence splitting and normalisation never raise, keep the
words, respect their limits, and stay linear on adversarial repetitions."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings
from tests.timing import cpu_seconds, scaled

from voxserve.text.normalize import NormalizationOptions, normalize_text
from voxserve.text.sentences import IncrementalSplitter, split_fragments

# Text that exercises the splitter and the normaliser: sentence and clause punctuation, quotes,
# abbreviations, digits, currency, markdown, URLs, every kind of whitespace, plus arbitrary Unicode.
_PIECES = st.sampled_from(
    [
        "Mr.",
        "e.g.",
        "U.S.A.",
        "Dr",
        "No.",
        "3,497",
        "$12.50",
        "9:30PM",
        "40–60°C",
        "2024",
        "1st",
        "…",
        "...",
        "?!",
        ".",
        ",",
        ";",
        ":",
        "—",
        "–",
        '"',
        "'",
        "”",
        "(",
        ")",
        "[",
        "]",
        "*",
        "_",
        "#",
        "`",
        "|",
        "-",
        "http://example.com/a",
        "jo@example.com",
        "@",
        "&amp;",
        "&#x202E;",
        "%",
        "word",
        "Hello",
        "a",
        "9",
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "\u00a0",
        "\u2028",
        "\x00",
        "\x1b[31m",
        "\u202e",
        "\u200d",
        "\ud800",
        "😀",
        "👩‍👩‍👧",
        "\u0301",
        "𝐇𝐞𝐥𝐥𝐨",
        "שלום",
        "مرحبا",
        "日本語",
    ]  # fmt: skip
)
TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=60).map("".join),
)


def _nonspace(text: str) -> str:
    return "".join(text.split())


@fuzz_settings(150)
@given(text=TEXT, first_max=st.integers(1, 120), extra=st.integers(0, 300))
def test_split_fragments_keeps_the_words_within_the_limits(text: str, first_max: int, extra: int) -> None:
    max_chars = first_max + extra
    fragments = split_fragments(text, first_fragment_max_chars=first_max, max_fragment_chars=max_chars)
    assert _nonspace("".join(fragments)) == _nonspace(text)
    if all(len(word) <= max_chars for word in text.split()):
        assert " ".join(fragments).split() == text.split()
    for fragment in fragments:
        assert fragment and fragment == fragment.strip()
        assert len(fragment) <= max_chars


@fuzz_settings(150)
@given(
    text=TEXT,
    cuts=st.lists(st.integers(0, 300), max_size=40),
    first_max=st.integers(1, 120),
    extra=st.integers(0, 300),
)
def test_incremental_splitter_in_any_chunking_keeps_the_words(
    text: str, cuts: list[int], first_max: int, extra: int
) -> None:
    max_chars = first_max + extra
    splitter = IncrementalSplitter(first_fragment_max_chars=first_max, max_fragment_chars=max_chars)
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    fragments: list[str] = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        fragments.extend(splitter.feed(text[lo:hi]))
        assert splitter.buffered_chars <= max_chars  # the documented bound between calls
    fragments.extend(splitter.flush())
    assert splitter.buffered_chars == 0
    assert _nonspace("".join(fragments)) == _nonspace(text)
    if all(len(word) <= max_chars for word in text.split()):
        assert " ".join(fragments).split() == text.split()
    for fragment in fragments:
        assert fragment and len(fragment) <= max_chars


def _no_unsafe_characters(text: str) -> bool:
    # Control (except the line break the normaliser keeps), format (bidi, zero-width), surrogate,
    # private-use and unassigned characters never reach an engine.
    return all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


OPTIONS = st.builds(
    NormalizationOptions,
    normalize=st.booleans(),
    unit_normalization=st.booleans(),
    url_normalization=st.booleans(),
    email_normalization=st.booleans(),
    optional_pluralization_normalization=st.booleans(),
    phone_normalization=st.booleans(),
    replace_remaining_symbols=st.booleans(),
)


@fuzz_settings(200)
@given(text=TEXT, options=OPTIONS)
def test_normalize_text_never_raises_and_leaves_no_control_characters(
    text: str, options: NormalizationOptions
) -> None:
    out = normalize_text(text, options)
    assert isinstance(out, str)
    assert _no_unsafe_characters(out)
    assert out == out.strip()
    assert "  " not in out


@fuzz_settings(100)
@given(text=TEXT)
def test_making_text_safe_is_idempotent(text: str) -> None:
    # With normalisation off only the safety rules and whitespace collapsing apply: a second pass
    # changes nothing.
    safe = NormalizationOptions(normalize=False)
    once = normalize_text(text, safe)
    assert normalize_text(once, safe) == once


# Plain prose (letters, spaces and sentence punctuation) is already speakable: normalising it again
# changes nothing. (Not for any text: a line that starts with a number is kept apart as a list item,
# and once the number is a word the next pass joins it to the line before; a paragraph break comes out
# as the single line break that a second pass reads as a soft one.)
_PROSE = st.lists(
    st.one_of(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
        st.sampled_from([" ", ". ", ", ", "? ", "! ", "; "]),
    ),
    max_size=40,
).map("".join)


@fuzz_settings(100)
@given(text=_PROSE)
def test_normalizing_twice_changes_nothing_more(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


_ADVERSARIAL_UNITS = st.sampled_from(
    ["a", "a.", ".a", "a@", "9", "9,", "1.", "$1", "**", "[", "](", "http://", "@a.", "&#", "\u0301", "😀"]
)


def _best_time(text: str) -> float:
    return cpu_seconds(lambda: normalize_text(text), 3)


@fuzz_settings(12)
@given(unit=st.one_of(_ADVERSARIAL_UNITS, st.text(min_size=1, max_size=3)))
def test_normalize_text_is_linear_on_repetitions(unit: str) -> None:
    # K9: the anchors' normalisers took 10-65 s on such inputs. 4x the input may cost at most ~8x the
    # time (a quadratic pass costs 16x), with slack for a noisy, shared CPU.
    small = unit * (5000 // len(unit))
    large = unit * (20000 // len(unit))
    t_small, t_large = _best_time(small), _best_time(large)
    assert t_large <= 8 * t_small + 0.05, (unit, t_small, t_large)
    assert t_large < scaled(1.0)
