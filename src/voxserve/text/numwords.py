"""Numbers to English words: cardinals, ordinals, years, decimals, digit strings and money.

The building blocks of :func:`voxserve.text.normalize.normalize_text`'s number passes (which find the
numbers in text and pick a reading); everything here takes digits or ints and returns words.
Cardinals use no "and": 3497 -> "three thousand four hundred ninety-seven". Integers of more than 18
digits, and zero-padded ones, are read digit by digit, so the cost stays linear in the digits.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "ONES",
    "cardinal",
    "decimal_words",
    "digit_words",
    "integer_words",
    "map_last_word",
    "money",
    "ordinalize",
    "pluralize",
    "under_hundred",
    "year_words",
]


ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ("", " thousand", " million", " billion", " trillion", " quadrillion")
_MAX_CARDINAL_DIGITS = 18
"""Integers with more digits than this (10^18 and up) are read digit by digit."""
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def under_hundred(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return under_hundred(rest)
    head = f"{ONES[hundreds]} hundred"
    return f"{head} {under_hundred(rest)}" if rest else head


def digit_words(digits: str) -> str:
    """ "905" -> "nine zero five"."""
    return " ".join(ONES[int(d)] for d in digits)


def cardinal(n: int) -> str:
    """Cardinal words without "and": 3497 -> "three thousand four hundred ninety-seven"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 1000:
        return _SMALL_CARDINALS[n]
    if n >= 10**_MAX_CARDINAL_DIGITS:
        return digit_words(str(n))
    groups: list[str] = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_under_thousand(group) + _SCALES[scale])
        scale += 1
    return " ".join(reversed(groups))


_SMALL_CARDINALS = ["zero", *(_under_thousand(n) for n in range(1, 1000))]


def integer_words(digits: str) -> str:
    """Words for a string of ASCII digits: too long or zero-padded ones are read digit by digit."""
    if 0 < len(digits) <= 3 and (digits[0] != "0" or len(digits) == 1):
        return _SMALL_CARDINALS[int(digits)]
    if len(digits) > _MAX_CARDINAL_DIGITS or (len(digits) > 1 and digits[0] == "0"):
        return digit_words(digits)
    return cardinal(int(digits))


def year_words(n: int) -> str:
    """Year reading for 1100-2099: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand five"."""
    if 2000 <= n <= 2009:
        return cardinal(n)
    century, rest = divmod(n, 100)
    if rest == 0:
        return f"{cardinal(century)} hundred"
    if rest < 10:
        return f"{cardinal(century)} oh {ONES[rest]}"
    return f"{cardinal(century)} {under_hundred(rest)}"


def map_last_word(words: str, change: Callable[[str], str]) -> str:
    """Apply ``change`` to the last word, where a hyphen also separates words ("twenty-one")."""
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    return words[:cut] + change(words[cut:])


def ordinalize(word: str) -> str:
    if word in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[word]
    if word.endswith("y"):
        return word[:-1] + "ieth"
    return word + "th"


def pluralize(word: str) -> str:
    if word.endswith("y"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x")):
        return word + "es"
    return word + "s"


def decimal_words(int_digits: str, frac_digits: str) -> str:
    """ "3", "14" -> "three point one four"; an empty integer part reads "point five"."""
    head = f"{integer_words(int_digits)} " if int_digits else ""
    return f"{head}point {digit_words(frac_digits)}"


_CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}


def money(symbol: str, int_digits: str, frac_digits: str | None, scale: str | None) -> str:
    """ "$", "12", "50" -> "twelve dollars and fifty cents"."""
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    int_digits = int_digits or "0"
    if scale is not None:
        amount = decimal_words(int_digits, frac_digits) if frac_digits else integer_words(int_digits)
        return f"{amount} {scale} {many}"
    if frac_digits is None:
        unit = one if int_digits.lstrip("0") == "1" else many
        return f"{integer_words(int_digits)} {unit}"
    if len(frac_digits) > 2 or not sub_one or len(int_digits) > _MAX_CARDINAL_DIGITS:
        return f"{decimal_words(int_digits, frac_digits)} {many}"
    whole = int(int_digits)
    cents = int(frac_digits.ljust(2, "0"))
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)
