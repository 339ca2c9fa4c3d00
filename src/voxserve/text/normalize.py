"""Text normalisation: turn what clients send into words an English TTS front end can speak.

The engines (espeak-ng underneath Piper and espeak itself) read letters well but stumble over markdown,
URLs, currency, clock times, phone numbers and emoji. :func:`normalize_text` rewrites those into words,
keeps sentence punctuation (``. , ? ! ; :``) and double quotes (they shape prosody), and collapses
whitespace. Paragraphs and other line-structured text (headings, list items, table rows) stay on their
own lines, separated by a single ``\\n``, so the sentence splitter can break there.

The passes live in this module and four helpers: :mod:`~voxserve.text.sanitize` (characters no engine
should see), :mod:`~voxserve.text.markdown` (markup reduced to its words),
:mod:`~voxserve.text.addresses` (URLs, emails, phone numbers) and :mod:`~voxserve.text.numwords`
(numbers to words). This module holds the pipeline, the numbers-in-context pass, contractions,
remaining symbols and tidying.

Everything here and in those helpers runs in time linear in the input, whatever the input: clients
are untrusted and a normaliser that backtracks is a denial of service. The passes are either plain
loops, or regular expressions written so that no position is scanned more than a bounded number of
times: possessive quantifiers (``*+``, ``++``), bounded repetitions, and a look-behind guard on every
pattern that could otherwise restart inside a run it has already scanned.
``tests/unit/text/test_text_normalize.py`` holds the pathological inputs that keep this honest.

The toggles in :class:`NormalizationOptions` mirror Kokoro-FastAPI's ``normalization_options``, so
clients written against it keep working.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from voxserve.text.addresses import speak_addresses, speak_phone_numbers
from voxserve.text.markdown import strip_inline_markup, strip_markdown
from voxserve.text.numwords import (
    ONES,
    cardinal,
    decimal_words,
    integer_words,
    map_last_word,
    money,
    ordinalize,
    pluralize,
    under_hundred,
    year_words,
)
from voxserve.text.sanitize import TYPOGRAPHY, sanitize, unescape_entities

__all__ = ["NormalizationOptions", "has_speakable_text", "normalize_text"]


@dataclass(frozen=True)
class NormalizationOptions:
    """Which rewrites :func:`normalize_text` applies (Kokoro-FastAPI's ``normalization_options``).

    ``normalize=False`` turns all of them off; the text is then only made safe (control, bidi and
    private-use characters, lone surrogates, emoji and runaway combining marks removed) and its
    whitespace collapsed.
    """

    normalize: bool = True
    """Master switch for everything below (markdown, numbers, symbols, ...)."""
    unit_normalization: bool = False
    """Read unit abbreviations after numbers: ``10kg`` -> "ten kilograms". Off by default: ``10m`` may
    be metres, minutes or millions."""
    url_normalization: bool = True
    """Read URLs and bare domains: ``https://example.com/docs`` -> "example dot com slash docs"."""
    email_normalization: bool = True
    """Read email addresses: ``jo@example.com`` -> "jo at example dot com"."""
    optional_pluralization_normalization: bool = True
    """``word(s)`` -> "words"."""
    phone_normalization: bool = True
    """Read North-American style phone numbers digit by digit, in their groups."""
    replace_remaining_symbols: bool = True
    """Replace symbols left after the other passes with words (``&`` -> "and") or pauses."""


_DEFAULT_OPTIONS = NormalizationOptions()


def normalize_text(text: str, options: NormalizationOptions | None = None) -> str:
    """Rewrite ``text`` into speakable English words.

    In order: HTML entities are decoded; control, format (bidi, zero-width), private-use characters,
    lone surrogates, emoji and excess combining marks are removed; markdown is reduced to its words
    (headings, emphasis, code, links and images, lists, tables, quotes); URLs, emails and phone numbers
    are spelled out; numbers are read in context (money, clock times, ISO dates, percentages, degrees,
    ordinals, years, decades, ranges, fractions, versions, negatives, decimals; integers of more than 18
    digits digit by digit); remaining symbols become words or pauses; whitespace is collapsed, keeping
    one ``\\n`` between lines that should stay apart. Examples: ``"$12.50"`` -> "twelve dollars and fifty
    cents", ``"9:30PM"`` -> "nine thirty PM", ``"2024"`` -> "twenty twenty-four", ``"3,497"`` -> "three
    thousand four hundred ninety-seven".

    Runs in time linear in ``len(text)`` for any input.
    """
    opts = options or _DEFAULT_OPTIONS
    if not opts.normalize:
        return _tidy_whitespace(sanitize(text))
    # Entities first, so that "&#x202E;" cannot smuggle in what sanitising removes.
    text = sanitize(unescape_entities(text))
    text = text.translate(TYPOGRAPHY)
    text = strip_markdown(text)
    if opts.url_normalization or opts.email_normalization:
        text = speak_addresses(text, urls=opts.url_normalization, emails=opts.email_normalization)
    text = strip_inline_markup(text)
    if opts.phone_normalization:
        text = speak_phone_numbers(text)
    if opts.optional_pluralization_normalization:
        text = _OPTIONAL_PLURAL_RE.sub(r"\1", text)
    text = _speak_numbers(text, opts)
    text = _VERSUS_RE.sub("versus", text)
    text = _CONTRACTION_RE.sub(_expand_contraction, text)
    if opts.replace_remaining_symbols:
        text = _replace_symbols(text)
    return _tidy(text)


def has_speakable_text(text: str) -> bool:
    """True iff the normalised ``text`` holds at least one letter or digit.

    Emoji-only, punctuation-only and whitespace-only input is not speakable: sending it to an engine
    gives silence at best and an error at worst.
    """
    return any(ch.isalnum() for ch in normalize_text(text))


# --------------------------------------------------------------------------------------------------
# Contractions, optional plurals, "vs."
# --------------------------------------------------------------------------------------------------

# Contractions are spelled out before G2P: espeak reads "how're" as "harry". "'s" is left alone (is,
# has or a possessive: only the reader knows), and "'d" becomes "would" (far more common than "had").
_CONTRACTION_RE = re.compile(r"\b([A-Za-z]{1,12}+)'(re|ve|ll|m|d|t)\b", re.IGNORECASE)
_WHOLE_CONTRACTIONS = {"won": "will", "can": "can", "shan": "shall", "ain": "is"}
_CONTRACTION_ENDINGS = {"re": "are", "ve": "have", "ll": "will", "m": "am", "d": "would"}


def _expand_contraction(m: re.Match[str]) -> str:
    stem, ending = m.group(1), m.group(2).lower()
    if ending == "t":
        if stem.lower() in _WHOLE_CONTRACTIONS:  # won't, can't, shan't, ain't
            word = _WHOLE_CONTRACTIONS[stem.lower()]
            word = word.capitalize() if stem[0].isupper() else word
            return f"{word}not" if word.lower() == "can" else f"{word} not"
        if stem.lower().endswith("n") and len(stem) > 1:  # don't, isn't, wouldn't
            return f"{stem[:-1]} not"
        return m.group(0)
    return f"{stem} {_CONTRACTION_ENDINGS[ending]}"


_OPTIONAL_PLURAL_RE = re.compile(r"(?<=[A-Za-z])\((e?s)\)")
_VERSUS_RE = re.compile(r"(?<![\w.])[Vv][Ss]\.(?= )")


# --------------------------------------------------------------------------------------------------
# Numbers in context: money, times, dates, percentages, ordinals, years, ranges, units
# --------------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(
    r"(?P<date>(?<![0-9])(?P<year>[12][0-9]{3})-(?P<month>[01][0-9])-(?P<day>[0-3][0-9])(?![0-9]))"
    r"|(?P<time>(?<![0-9])(?P<hour>[0-9]{1,2}):(?P<minute>[0-5][0-9])(?::(?P<second>[0-5][0-9]))?(?![0-9]))"
    r"|(?P<fraction>(?<![0-9/])(?P<numerator>[0-9]{1,2})/(?P<denominator>[0-9]{1,2})(?![0-9/]))"
    r"|(?P<dotted>(?<![0-9])[0-9]++(?:\.[0-9]++){2,}+)"
    r"|(?P<number>(?P<neg>(?<![\w.])-)?(?P<cur>[$£€¥₹] ?)?"
    r"(?:(?P<int>[0-9]{1,3}(?:,[0-9]{3}(?![0-9]))++|[0-9]++)(?P<dec>\.[0-9]++)?+|(?<![\w.])(?P<lead>\.[0-9]++)))"
    r"|(?P<vulgar>[½⅓⅔¼¾⅛⅜⅝⅞])"
)
_HAS_NUMBER_RE = re.compile(r"[0-9½⅓⅔¼¾⅛⅜⅝⅞]")
_MONEY_SCALE_RE = re.compile(
    r" (?P<word>thousand|million|billion|trillion)(?![A-Za-z])|(?P<abbr>[kKmMbBT]|mn|bn|Bn|BN|tn)(?![A-Za-z])"
)
_MONEY_SCALE_ABBREVIATIONS = {
    "k": "thousand",
    "m": "million",
    "mn": "million",
    "b": "billion",
    "bn": "billion",
}
_AMPM = r" ?(?:(?P<letter>[AaPp])[Mm]|(?P<dletter>[AaPp])\.[Mm](?P<stop>\.)?)(?![A-Za-z])"
_AMPM_RE = re.compile(_AMPM)
_SUFFIX_STARTS = frozenset(" %°'sSnNrRtTaApP€£$¥₹")
"""The characters that can begin a suffix in ``_SUFFIX_RE``."""
_SUFFIX_RE = re.compile(
    r"(?P<ordinal>(?i:st|nd|rd|th)(?![A-Za-z]))"
    r"|(?P<percent> ?%)"
    r"|(?P<degree> ?°(?P<degree_unit> ?[CFK](?![A-Za-z]))?)"
    r"|(?P<plural>(?P<apostrophe>')?s(?![A-Za-z]))"
    rf"|(?P<ampm>{_AMPM})"
    r"|(?P<postfix_currency> ?(?P<currency>[€£$¥₹])(?![0-9]))"
)
_DEGREE_UNITS = {"C": "Celsius", "F": "Fahrenheit", "K": "Kelvin"}
_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters")}
_VULGAR_FRACTIONS = {
    "½": "one half",
    "⅓": "one third",
    "⅔": "two thirds",
    "¼": "one quarter",
    "¾": "three quarters",
    "⅛": "one eighth",
    "⅜": "three eighths",
    "⅝": "five eighths",
    "⅞": "seven eighths",
}
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_UNITS: dict[str, tuple[str, str]] = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pounds", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "L": ("liter", "liters"),
    "ms": ("millisecond", "milliseconds"),
    "s": ("second", "seconds"),
    "sec": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hours", "hours"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
}
_UNIT_RE = re.compile(
    r" ?(?P<unit>" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) + r")(?![\w/])"
)


@dataclass
class _Rendered:
    words: str
    end: int
    rangeable: bool = True
    decade: bool = False


def _speak_numbers(text: str, opts: NormalizationOptions) -> str:
    """Rewrite every number, with what surrounds it, into words.

    Matches are found left to right and never overlap; the text between two of them (the "gap") is
    where ranges ("40–60" -> "forty to sixty") and prefixes ("#5", "~5") are recognised.
    """
    if not _HAS_NUMBER_RE.search(text):
        return text
    out: list[str] = []
    pos = 0
    previous_rangeable = False
    first = True
    size = len(text)
    while m := _NUMBER_RE.search(text, pos):
        start, end = m.span()
        gap = text[pos:start]
        int_text = m.group("int")
        if (
            int_text is not None
            and end - start == len(int_text)
            and (end == size or text[end] not in _SUFFIX_STARTS)
            and not opts.unit_normalization
        ):
            # The common case, kept cheap: a bare integer with nothing after it to interpret.
            rendered = _Rendered(_bare_integer_words(int_text), end)
        else:
            rendered = _render_number(m, text, opts)
        if not first and previous_rangeable and rendered.rangeable and (gap == "-" or gap.strip() == "–"):
            gap = " to "
        elif gap.endswith("#") and opts.replace_remaining_symbols:
            gap = gap[:-1] + " number "
        elif gap.endswith("~"):
            gap = gap[:-1] + " about "
        elif rendered.decade and gap.endswith("'"):
            gap = gap[:-1]  # "'80s"
        if gap and gap[-1].isalnum() or not gap and not first:
            gap += " "  # "H100" -> "H one hundred"
        out.append(gap)
        out.append(rendered.words)
        end = rendered.end
        if end < size and text[end].isalnum():
            out.append(" ")  # "3D" -> "three D"
        pos = end
        previous_rangeable = rendered.rangeable
        first = False
    out.append(text[pos:])
    return "".join(out)


def _render_number(m: re.Match[str], text: str, opts: NormalizationOptions) -> _Rendered:
    if m.group("number") is not None:
        return _render_plain_number(m, text, opts)
    if m.group("time") is not None:
        return _render_time(m, text)
    if m.group("date") is not None:
        year, month, day = int(m.group("year")), int(m.group("month")), int(m.group("day"))
        if 1 <= month <= 12 and 1 <= day <= 31:
            words = f"{_MONTHS[month - 1]} {map_last_word(cardinal(day), ordinalize)}, {year_words(year)}"
        else:
            words = f"{cardinal(year)}, {cardinal(month)}, {cardinal(day)}"
        return _Rendered(words, m.end(), rangeable=False)
    if m.group("fraction") is not None:
        numerator, denominator = int(m.group("numerator")), int(m.group("denominator"))
        if 0 < numerator < denominator <= 10:
            if denominator in _FRACTION_NAMES:
                name = _FRACTION_NAMES[denominator][numerator != 1]
            else:
                name = map_last_word(cardinal(denominator), ordinalize)
                name = name if numerator == 1 else pluralize(name)
            words = f"{cardinal(numerator)} {name}"
        else:
            words = f"{cardinal(numerator)} slash {cardinal(denominator)}"
        return _Rendered(words, m.end(), rangeable=False)
    if m.group("dotted") is not None:
        parts = m.group("dotted").split(".")
        # Four numbers are an IP address ("dot"); fewer are a version ("point").
        joiner = " dot " if len(parts) == 4 else " point "
        return _Rendered(joiner.join(integer_words(p) for p in parts), m.end(), rangeable=False)
    vulgar = _VULGAR_FRACTIONS[m.group("vulgar")]
    after_digit = m.start() > 0 and text[m.start() - 1].isdigit()
    return _Rendered(f"and {vulgar}" if after_digit else vulgar, m.end(), rangeable=False)


def _bare_integer_words(int_text: str) -> str:
    """Words for an integer standing alone: four digits in 1100-1999 or 2000-2099 read as a year."""
    if len(int_text) == 4 and ("1100" <= int_text <= "1999" or "2000" <= int_text <= "2099"):
        return year_words(int(int_text))
    return integer_words(int_text.replace(",", "") if "," in int_text else int_text)


def _render_time(m: re.Match[str], text: str) -> _Rendered:
    hour, minute = int(m.group("hour")), int(m.group("minute"))
    if hour > 24:
        words = f"{cardinal(hour)} {cardinal(minute)}"
        return _Rendered(words, m.end(), rangeable=False)
    end = m.end()
    ampm = _AMPM_RE.match(text, end)
    words = cardinal(hour)
    if minute == 0:
        if not ampm:
            words += " o'clock" if hour <= 12 else " hundred"
    elif minute < 10:
        words += f" oh {ONES[minute]}"
    else:
        words += f" {under_hundred(minute)}"
    if m.group("second") is not None:
        seconds = int(m.group("second"))
        words += f" and {cardinal(seconds)} second{'' if seconds == 1 else 's'}"
    if ampm:
        words, end = _append_ampm(words, ampm, text)
    return _Rendered(words, end)


def _append_ampm(words: str, ampm: re.Match[str], text: str) -> tuple[str, int]:
    # espeak reads "AM"/"PM" as letters; a lone "a" would be read as the article.
    words += " AM" if (ampm.group("letter") or ampm.group("dletter")) in "Aa" else " PM"
    end = ampm.end()
    if ampm.group("stop"):
        # The dot of "p.m." may also end the sentence: keep one when the next word starts one.
        rest = text[end : end + 2].lstrip(" ")
        if not rest or rest[0] == "\n" or rest[0].isupper():
            words += "."
    return words, end


def _render_plain_number(m: re.Match[str], text: str, opts: NormalizationOptions) -> _Rendered:
    neg, currency, int_text, dec, lead = m.group("neg", "cur", "int", "dec", "lead")
    negative = "minus " if neg else ""
    int_text = int_text or ""
    digits = int_text.replace(",", "") if "," in int_text else int_text
    dec = dec or lead
    frac = dec[1:] if dec else None
    end = m.end()
    if currency:
        scale = None
        if scale_m := _MONEY_SCALE_RE.match(text, end):
            word, abbr = scale_m.group("word", "abbr")
            scale = word or _MONEY_SCALE_ABBREVIATIONS.get(abbr.lower(), "trillion")
            end = scale_m.end()
        return _Rendered(negative + money(currency[0], digits, frac, scale), end)

    # One match finds whichever suffix follows; most numbers have none.
    suffix = _SUFFIX_RE.match(text, end)
    kind = suffix.lastgroup if suffix else None
    if suffix and kind == "postfix_currency":
        words = money(suffix.group("currency"), digits, frac, None)
        return _Rendered(negative + words, suffix.end())

    is_int = frac is None
    is_one = is_int and digits.lstrip("0") == "1"
    base = integer_words(digits) if frac is None else decimal_words(digits, frac)
    if suffix:
        if kind == "ordinal" and is_int:
            return _Rendered(negative + map_last_word(base, ordinalize), suffix.end(), rangeable=False)
        if kind == "percent":
            return _Rendered(f"{negative}{base} percent", suffix.end())
        if kind == "degree":
            words = f"{negative}{base} degree{'' if is_one else 's'}"
            if unit := suffix.group("degree_unit"):
                words += f" {_DEGREE_UNITS[unit.strip()]}"
            return _Rendered(words, suffix.end())
    if opts.unit_normalization and (unit_m := _UNIT_RE.match(text, end)):
        singular, plural = _UNITS[unit_m.group("unit")]
        return _Rendered(f"{negative}{base} {singular if is_one else plural}", unit_m.end())
    if not is_int or negative or int_text != digits:
        return _Rendered(negative + base, end)
    # A plain integer: no sign, no decimals, no thousands separators.
    if suffix and kind == "ampm" and len(digits) <= 2 and 1 <= int(digits) <= 12:
        words, end = _append_ampm(base, suffix, text)
        return _Rendered(words, end)
    base = _bare_integer_words(digits)
    if suffix and kind == "plural":
        decade = digits.endswith("0")
        # "1990's" is a decade; "2024's" is a possessive and keeps its "'s".
        if decade or not suffix.group("apostrophe"):
            return _Rendered(map_last_word(base, pluralize), suffix.end(), decade=decade)
    return _Rendered(base, end)


# --------------------------------------------------------------------------------------------------
# Remaining symbols, punctuation tidying, whitespace
# --------------------------------------------------------------------------------------------------

_SYMBOL_WORDS = {
    "<->": " to and from ",
    "->": " to ",
    "=>": " to ",
    "<=": " less than or equal to ",
    ">=": " greater than or equal to ",
    "!=": " not equal to ",
    "==": " equals ",
    "&&": " and ",
    "||": " or ",
    "&": " and ",
    "+": " plus ",
    "=": " equals ",
    "@": " at ",
    "%": " percent ",
    "/": " slash ",
    "<": " less than ",
    ">": " greater than ",
    "|": ", ",
    "(": ", ",
    ")": ", ",
    "[": ", ",
    "]": ", ",
    "{": ", ",
    "}": ", ",
    "—": ", ",
    "–": ", ",
    "―": ", ",
    "•": ", ",
    "·": ", ",
    "◦": ", ",
    "‣": ", ",
    "§": " section ",
    "©": " copyright ",
    "°": " degrees ",
    "×": " times ",
    "÷": " divided by ",
    "±": " plus or minus ",
    "≈": " approximately ",
    "≠": " not equal to ",
    "≤": " less than or equal to ",
    "≥": " greater than or equal to ",
    "→": " to ",
    "⇒": " to ",
    "∞": " infinity ",
    "²": " squared",
    "³": " cubed",
    "№": " number ",
    "‰": " per mille ",
    "$": " dollars ",
    "€": " euros ",
    "£": " pounds ",
    "¥": " yen ",
    "¢": " cents ",
}
_SYMBOL_RE = re.compile(r"<->|->|=>|<=|>=|!=|==|&&|\|\||-{2,}+|(?<!\S)-(?!\S)|[^\w\s.,?!;:\"'-]|[_²³]")


def _replace_symbols(text: str) -> str:
    def replace(m: re.Match[str]) -> str:
        symbol = m.group()
        if word := _SYMBOL_WORDS.get(symbol):
            return word
        if symbol[0] == "-":
            return ", "  # a free-standing dash is a pause
        if symbol == "#":
            start = m.start()
            before = text[start - 1] if start else " "
            after = text[start + 1] if start + 1 < len(text) else " "
            if before in "CF" and (start < 2 or not text[start - 2].isalnum()) and not after.isalnum():
                return " sharp"
            return " hashtag " if after.isalpha() else " "
        if unicodedata.category(symbol)[0] in "LMN":
            return symbol  # combining marks and the like are not symbols
        return " "

    return _SYMBOL_RE.sub(replace, text)


_HSPACE_RE = re.compile(r"[^\S\n]++")
_TIDY_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r" (?=[,.;:!?])"), ""),  # no space before punctuation
    (re.compile(r"(?<=[,;:])(?: ?[,;:])++"), ""),  # ", ," -> ","
    (re.compile(r"[,;:] ?(?=[.!?])"), ""),  # ", ." -> "."
    (re.compile(r"(?<=[.!?]) ?,"), ""),  # "!, " -> "! "
    (re.compile(r"(?<=[!?])[!?]++"), ""),  # "?!?" -> "?"
    (re.compile(r"\.{4,}+"), "..."),
    (re.compile(r"(?<=[,;])(?=[^\s\"'])"), " "),  # "one,two" -> "one, two"
    # Lines do not start with clause punctuation, nor end with a comma (what a dropped ")" leaves).
    (re.compile(r"^[ ,;:]++|(?<![ ,])[ ,]++$", re.MULTILINE), ""),
    (re.compile(r"\n\s*+"), "\n"),
)


def _tidy(text: str) -> str:
    text = _HSPACE_RE.sub(" ", text)
    for pattern, replacement in _TIDY_RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


def _tidy_whitespace(text: str) -> str:
    text = _HSPACE_RE.sub(" ", text)
    return re.sub(r" ?\n\s*+", "\n", text).strip()
