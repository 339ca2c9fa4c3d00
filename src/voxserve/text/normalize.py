"""Text normalisation: turn what clients send into words an English TTS front end can speak.

The engines (espeak-ng underneath Piper and espeak itself) read letters well but stumble over markdown,
URLs, currency, clock times, phone numbers and emoji. :func:`normalize_text` rewrites those into words,
keeps sentence punctuation (``. , ? ! ; :``) and double quotes (they shape prosody), and collapses
whitespace. Paragraphs and other line-structured text (headings, list items, table rows) stay on their
own lines, separated by a single ``\\n``, so the sentence splitter can break there.

Everything here runs in time linear in the input, whatever the input: clients are untrusted and a
normaliser that backtracks is a denial of service. The passes are either plain loops, or regular
expressions written so that no position is scanned more than a bounded number of times: possessive
quantifiers (``*+``, ``++``), bounded repetitions, and a look-behind guard on every pattern that could
otherwise restart inside a run it has already scanned. ``tests/unit/text/test_text_normalize.py`` holds
the pathological inputs that keep this honest.

The toggles in :class:`NormalizationOptions` mirror Kokoro-FastAPI's ``normalization_options``, so
clients written against it keep working.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

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
        return _tidy_whitespace(_sanitize(text))
    # Entities first, so that "&#x202E;" cannot smuggle in what sanitising removes.
    text = _sanitize(_unescape_entities(text))
    text = text.translate(_TYPOGRAPHY)
    text = _strip_markdown(text)
    if opts.url_normalization or opts.email_normalization:
        text = _speak_addresses(text, opts)
    text = _strip_inline_markup(text)
    if opts.phone_normalization:
        text = _PHONE_RE.sub(_speak_phone, text)
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
# Numbers to words
# --------------------------------------------------------------------------------------------------

_ONES = [
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


def _under_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _under_hundred(rest)
    head = f"{_ONES[hundreds]} hundred"
    return f"{head} {_under_hundred(rest)}" if rest else head


def _digit_words(digits: str) -> str:
    """ "905" -> "nine zero five"."""
    return " ".join(_ONES[int(d)] for d in digits)


def _cardinal(n: int) -> str:
    """Cardinal words without "and": 3497 -> "three thousand four hundred ninety-seven"."""
    if n < 0:
        return "minus " + _cardinal(-n)
    if n < 1000:
        return _SMALL_CARDINALS[n]
    if n >= 10**_MAX_CARDINAL_DIGITS:
        return _digit_words(str(n))
    groups: list[str] = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_under_thousand(group) + _SCALES[scale])
        scale += 1
    return " ".join(reversed(groups))


_SMALL_CARDINALS = ["zero", *(_under_thousand(n) for n in range(1, 1000))]


def _integer_words(digits: str) -> str:
    """Words for a string of ASCII digits: too long or zero-padded ones are read digit by digit."""
    if 0 < len(digits) <= 3 and (digits[0] != "0" or len(digits) == 1):
        return _SMALL_CARDINALS[int(digits)]
    if len(digits) > _MAX_CARDINAL_DIGITS or (len(digits) > 1 and digits[0] == "0"):
        return _digit_words(digits)
    return _cardinal(int(digits))


def _year(n: int) -> str:
    """Year reading for 1100-2099: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand five"."""
    if 2000 <= n <= 2009:
        return _cardinal(n)
    century, rest = divmod(n, 100)
    if rest == 0:
        return f"{_cardinal(century)} hundred"
    if rest < 10:
        return f"{_cardinal(century)} oh {_ONES[rest]}"
    return f"{_cardinal(century)} {_under_hundred(rest)}"


def _map_last_word(words: str, change: Callable[[str], str]) -> str:
    """Apply ``change`` to the last word, where a hyphen also separates words ("twenty-one")."""
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    return words[:cut] + change(words[cut:])


def _ordinalize(word: str) -> str:
    if word in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[word]
    if word.endswith("y"):
        return word[:-1] + "ieth"
    return word + "th"


def _pluralize(word: str) -> str:
    if word.endswith("y"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x")):
        return word + "es"
    return word + "s"


def _decimal_words(int_digits: str, frac_digits: str) -> str:
    """ "3", "14" -> "three point one four"; an empty integer part reads "point five"."""
    head = f"{_integer_words(int_digits)} " if int_digits else ""
    return f"{head}point {_digit_words(frac_digits)}"


_CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}


def _money(symbol: str, int_digits: str, frac_digits: str | None, scale: str | None) -> str:
    """ "$", "12", "50" -> "twelve dollars and fifty cents"."""
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    int_digits = int_digits or "0"
    if scale is not None:
        amount = _decimal_words(int_digits, frac_digits) if frac_digits else _integer_words(int_digits)
        return f"{amount} {scale} {many}"
    if frac_digits is None:
        unit = one if int_digits.lstrip("0") == "1" else many
        return f"{_integer_words(int_digits)} {unit}"
    if len(frac_digits) > 2 or not sub_one or len(int_digits) > _MAX_CARDINAL_DIGITS:
        return f"{_decimal_words(int_digits, frac_digits)} {many}"
    whole = int(int_digits)
    cents = int(frac_digits.ljust(2, "0"))
    parts = []
    if whole or not cents:
        parts.append(f"{_cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{_cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


# --------------------------------------------------------------------------------------------------
# Sanitising: characters no engine should see
# --------------------------------------------------------------------------------------------------

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*+[ -/]*+[@-~]?|\x1b\][^\x07\x1b]*+(?:\x07|\x1b\\)?")
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]++")
_MAX_COMBINING_RUN = 3
"""Combining marks kept after one base character: real scripts need two or three, "Zalgo" text has
thousands, and NFC's canonical reordering of a long run is not linear."""
_KEEP_SYMBOLS = frozenset("°©®™№")
_KEEP_NUMBER_FORMS = frozenset("²³½⅓⅔¼¾⅛⅜⅝⅞")
"""Number forms the later passes read better than their compatibility decompositions would."""
_SYMBOL_EXPANSIONS = {"℃": "°C", "℉": "°F"}
_EMOJI_MARKS = frozenset("\ufe0e\ufe0f\u20e3")
"""Variation selectors and the keycap mark only ever dress up emoji."""


def _sanitize(text: str) -> str:
    """Drop control, format (bidi, zero-width), private-use and unassigned characters, lone
    surrogates, emoji and pictographs; cap combining-mark runs; map line separators to newlines and
    other spaces to " "; fold full-width forms and non-ASCII digits to ASCII; NFC."""
    if "\x1b" in text:
        text = _ANSI_RE.sub("", text)
    text = text.replace("\r\n", "\n").translate(_WHITESPACE_CONTROLS)
    if text.isascii():
        return _ASCII_CONTROL_RE.sub("", text)
    out: list[str] = []
    marks = 0
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            if code >= 0x20 and code != 0x7F or ch == "\n":
                out.append(ch)
            marks = 0
            continue
        category = unicodedata.category(ch)
        major = category[0]
        if major == "M":
            if ch in _EMOJI_MARKS or 0xE0100 <= code <= 0xE01EF:
                continue
            marks += 1
            if marks <= _MAX_COMBINING_RUN:
                out.append(ch)
            continue
        marks = 0
        if category in ("Nl", "No") and ch not in _KEEP_NUMBER_FORMS:
            # Circled, Roman and sub/superscript numbers: "①" -> "1", "Ⅻ" -> "XII".
            out.append(unicodedata.normalize("NFKC", ch))
        elif major == "L" or category in ("Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc"):
            if 0xFF01 <= code <= 0xFF5E or 0xFB00 <= code <= 0xFB06:
                # Full-width ASCII and Latin ligatures: their compatibility forms are what is meant.
                out.append(unicodedata.normalize("NFKC", ch))
            else:
                out.append(ch)
        elif category == "Nd":
            out.append(str(unicodedata.decimal(ch)))
        elif category == "Zs":
            out.append(" ")
        elif category in ("Zl", "Zp") or ch == "\x85":
            out.append("\n")
        elif category == "So" and ch in _KEEP_SYMBOLS:
            out.append(ch)
        elif ch in _SYMBOL_EXPANSIONS:
            out.append(_SYMBOL_EXPANSIONS[ch])
        # Everything else goes: Cc, Cf (bidi controls, zero-width joiners, tags), Cs (lone
        # surrogates), Co, Cn, So (emoji, pictographs, dingbats) and Sk (skin-tone modifiers).
    return unicodedata.normalize("NFC", "".join(out))


_WHITESPACE_CONTROLS = str.maketrans({"\r": "\n", "\t": " ", "\v": "\n", "\f": "\n"})

_ENTITY_RE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _unescape_entities(text: str) -> str:
    """HTML entities, only in their terminated ``&name;`` form: bare ``&not`` in "AT&notice" stays."""
    if "&" not in text:
        return text
    return _ENTITY_RE.sub(lambda m: html.unescape(m.group()), text)


_TYPOGRAPHY = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2026": "...",
        "\u2212": "-",
        "\u2044": "/",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u203c": "!",
        "\u2049": "?",
        "\u00bf": " ",
        "\u00a1": " ",
    }
)


# --------------------------------------------------------------------------------------------------
# Markdown (and the bits of HTML that LLMs emit)
# --------------------------------------------------------------------------------------------------

_HEADING_RE = re.compile(r"#{1,6}(?:[ \t]++|$)")
_CLOSING_HASHES_RE = re.compile(r"[ \t]#++$")
_QUOTE_MARKER_RE = re.compile(r"(?:>[ \t]*+)++")
_BULLET_RE = re.compile(r"[-*+\u2022\u25e6\u2023][ \t]++(?:\[[ xX]\][ \t]++)?")
_ORDERED_RE = re.compile(r"([0-9]{1,3})[.)][ \t]++")
_LINK_DEFINITION_RE = re.compile(r"\[[^\]\n]{1,200}+\]:[ \t]")
_RULE_CHARS = frozenset("-*_= \t")
_TABLE_SEPARATOR_CHARS = frozenset("|-: \t")
_LINE_END_PUNCTUATION = frozenset(".!?:;")

_LINK_TOKEN_RE = re.compile(r"!?\[|\]")
# A link destination, after "](": no whitespace, one level of balanced parentheses, optional title.
_LINK_DEST_RE = re.compile(
    r"\([ \t]*+(?:<[^<>\n]*+>|[^\s()]*+(?:\([^\s()]*+\)[^\s()]*+)*+)"
    r"(?:[ \t]++(?:\"[^\"\n]*+\"|'[^'\n]*+'))?[ \t]*+\)"
)
_AUTOLINK_RE = re.compile(r"<((?:[A-Za-z][A-Za-z0-9+.-]{1,31}+:|www\.)[^\s<>]++|[^\s<>@]++@[^\s<>@]++)>")
_HTML_TAG_RE = re.compile(
    r"</?(?i:a|abbr|b|blockquote|br|center|code|dd|del|details|div|dl|dt|em|font|h[1-6]|hr|i|img|ins|"
    r"kbd|li|mark|ol|p|pre|s|small|span|strike|strong|sub|summary|sup|table|tbody|td|th|thead|tr|u|ul)"
    r"(?![A-Za-z0-9])(?:\s[^<>]{0,300}+)?/?>"
)


def _strip_markdown(text: str) -> str:
    """Reduce markdown to its words, one output line per paragraph, heading, list item or table row.

    Plain lines join the paragraph before them when they look like a hard wrap (the previous line has
    no closing punctuation and this one starts in lower case); otherwise the line break is kept so
    that poems, addresses and LLM-style short lines keep their pauses.
    """
    if "<!--" in text:
        text = _strip_html_comments(text)
    out: list[str] = []
    paragraph: list[str] = []
    fence = ""

    def end_paragraph() -> None:
        if paragraph:
            out.append(" ".join(paragraph))
            paragraph.clear()

    for raw in text.split("\n"):
        line = raw.strip()
        if fence:
            # Code blocks: keep their words, one line each; the symbol pass makes them speakable.
            if line.startswith(fence):
                fence = ""
            elif line:
                out.append(_inline_markdown(line))
            continue
        if not line:
            end_paragraph()
            continue
        if line.startswith(("```", "~~~")):
            end_paragraph()
            fence = line[:3]
            continue
        if len(line) >= 2 and set(line) <= _RULE_CHARS and len(set(line) - {" ", "\t"}) == 1:
            end_paragraph()  # horizontal rule or setext heading underline
            continue
        if _LINK_DEFINITION_RE.match(line):
            continue
        own_line = False
        if quote := _QUOTE_MARKER_RE.match(line):
            line = line[quote.end() :]
            if not line:
                end_paragraph()
                continue
        if line[0] == "#" and (m := _HEADING_RE.match(line)):
            line = _CLOSING_HASHES_RE.sub("", line[m.end() :])
            own_line = True
        elif m := _BULLET_RE.match(line):
            line = line[m.end() :]
            own_line = True
        elif m := _ORDERED_RE.match(line):
            # "1. Preheat" -> "1, Preheat": a full stop after the number would end a sentence there.
            line = f"{m.group(1)}, {line[m.end() :]}"
            own_line = True
        elif line[0] == "|":
            if set(line) <= _TABLE_SEPARATOR_CHARS:
                continue
            line = ", ".join(cell for cell in (c.strip() for c in line.strip("|").split("|")) if cell)
            own_line = True
        line = _inline_markdown(line)
        if not line:
            continue
        if own_line:
            end_paragraph()
            out.append(line)
        elif paragraph and paragraph[-1][-1] not in _LINE_END_PUNCTUATION and line[0].islower():
            paragraph.append(line)
        else:
            end_paragraph()
            paragraph.append(line)
    end_paragraph()
    return "\n".join(out)


def _strip_html_comments(text: str) -> str:
    # A manual scan, not a regex: an unclosed "<!--" must not make every later "<!--" rescan the text.
    out: list[str] = []
    pos = 0
    while (start := text.find("<!--", pos)) >= 0:
        end = text.find("-->", start + 4)
        if end < 0:
            break  # unclosed: no later comment can close either, keep the rest as text
        out.append(text[pos:start])
        out.append(" ")
        pos = end + 3
    out.append(text[pos:])
    return "".join(out)


def _inline_markdown(line: str) -> str:
    """Links and images to their text, autolinks to their address, HTML tags dropped."""
    if "[" in line:
        line = _strip_links(line)
    if "<" in line:
        line = _AUTOLINK_RE.sub(r"\1", line)
        line = _HTML_TAG_RE.sub(" ", line)
    return line.strip()


def _strip_links(line: str) -> str:
    """``[text](url)`` and ``![alt](src)`` -> the text; ``[text]`` -> text. Nesting is handled by a
    stack of open brackets, and the scan only moves forward, so it is linear."""
    parts: list[str] = []
    openers: list[int] = []
    pos = 0
    while m := _LINK_TOKEN_RE.search(line, pos):
        parts.append(line[pos : m.start()])
        pos = m.end()
        if m.group() != "]":
            openers.append(len(parts))
            parts.append(m.group())
            continue
        if not openers:
            parts.append("]")
            continue
        parts[openers.pop()] = ""
        if dest := _LINK_DEST_RE.match(line, pos):
            pos = dest.end()
    for index in openers:
        parts[index] = " "  # an unmatched "[" or "![" is not punctuation
    parts.append(line[pos:])
    return "".join(parts)


_TIMES_RE = re.compile(r"(?<=[0-9]) ?\* ?(?=[0-9])")


def _strip_inline_markup(text: str) -> str:
    """Inline code backticks, emphasis and strikethrough markers."""
    if "`" in text:
        text = text.replace("`", "")
    if "~~" in text:
        text = text.replace("~~", "")
    if "*" in text:
        text = _TIMES_RE.sub(" times ", text).replace("*", "")
    if "_" in text:
        # "_emphasis_" and snake_case alike: a space reads right for both.
        text = text.replace("_", " ")
    return text


# --------------------------------------------------------------------------------------------------
# URLs, emails, phone numbers
# --------------------------------------------------------------------------------------------------

# Each alternative starts only where a run of the characters it scans begins (the look-behinds), so no
# run is scanned twice: "a.a.a..." or "a@a@a@..." cost one pass, not one pass per character.
_ADDRESS_RE = re.compile(
    r"(?P<email>(?<![\w.+-])(?:mailto:)?[\w.+-]++@[\w-]++(?:\.[\w-]++)++)"
    r"|(?P<url>(?<![\w@/.:-])(?:(?i:https?|ftp)://|(?i:www)\.)[^\s<>\"`]++)"
    r"|(?P<domain>(?<![\w@/.:-])[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++(?:/[^\s<>\"`]*+)?)"
)
_TLDS = frozenset(
    [
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "mil",
        "int",
        "io",
        "ai",
        "dev",
        "app",
        "co",
        "uk",
        "us",
        "ca",
        "au",
        "de",
        "fr",
        "nl",
        "eu",
        "ch",
        "se",
        "es",
        "it",
        "jp",
        "cn",
        "in",
        "ru",
        "br",
        "info",
        "biz",
        "tv",
        "ly",
        "gg",
        "me",
        "xyz",
        "tech",
        "online",
        "site",
        "blog",
        "news",
    ]
)
_ADDRESS_TOKEN_RE = re.compile(r"[^\W_]++|.", re.DOTALL)
_ADDRESS_SYMBOLS = {
    ".": "dot",
    "/": "slash",
    ":": "colon",
    "@": "at",
    "-": "dash",
    "_": "underscore",
    "?": "question mark",
    "=": "equals",
    "&": "and",
    "#": "hash",
    "~": "tilde",
    "%": "percent",
    "+": "plus",
}
_SCHEME_RE = re.compile(r"(?i:https?|ftp)://")
_TRAILING_URL_PUNCTUATION = ".,;:!?'\")]}"


def _spell_address(address: str) -> str:
    words = []
    for token in _ADDRESS_TOKEN_RE.findall(address):
        if token[0].isalnum():
            words.append(token)
        elif word := _ADDRESS_SYMBOLS.get(token):
            words.append(word)
    return " ".join(words)


def _split_trailing_punctuation(url: str) -> tuple[str, str]:
    """Sentence punctuation after a URL is not part of it; a ")" is, when it closes a "(" inside."""
    end = len(url)
    opens = url.count("(")
    closes = url.count(")")
    while end and url[end - 1] in _TRAILING_URL_PUNCTUATION:
        if url[end - 1] == ")":
            if closes <= opens:
                break
            closes -= 1
        end -= 1
    return url[:end], url[end:]


def _speak_addresses(text: str, opts: NormalizationOptions) -> str:
    if "." not in text and "@" not in text and "://" not in text:
        return text

    def speak(m: re.Match[str]) -> str:
        whole = m.group()
        if m.group("email") is not None:
            if not opts.email_normalization:
                return whole
            address = whole[7:] if whole.startswith("mailto:") else whole
            return f" {_spell_address(address)} "
        if not opts.url_normalization:
            return whole
        url, trailing = _split_trailing_punctuation(whole)
        if m.group("domain") is not None:
            host = url.split("/", 1)[0]
            if host.rsplit(".", 1)[-1].lower() not in _TLDS:
                return whole
        if scheme := _SCHEME_RE.match(url):
            url = url[scheme.end() :]
        url = url.rstrip("/")
        prefix = ""
        if url[:4].lower() == "www.":
            prefix, url = "w w w dot ", url[4:]
        return f" {prefix}{_spell_address(url)}{trailing} "

    return _ADDRESS_RE.sub(speak, text)


_PHONE_RE = re.compile(
    r"(?<![\w+.-])(?P<cc>\+?1[-. ])?(?:\((?P<area1>[0-9]{3})\) ?|(?P<area2>[0-9]{3})[-.])"
    r"(?P<exchange>[0-9]{3})[-.](?P<line>[0-9]{4})(?![\w-])"
)


def _speak_phone(m: re.Match[str]) -> str:
    groups = []
    if cc := m.group("cc"):
        groups.append(("plus " if cc.startswith("+") else "") + "one")
    groups.append(_digit_words(m.group("area1") or m.group("area2")))
    groups.append(_digit_words(m.group("exchange")))
    groups.append(_digit_words(m.group("line")))
    return ", ".join(groups)


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
            words = f"{_MONTHS[month - 1]} {_map_last_word(_cardinal(day), _ordinalize)}, {_year(year)}"
        else:
            words = f"{_cardinal(year)}, {_cardinal(month)}, {_cardinal(day)}"
        return _Rendered(words, m.end(), rangeable=False)
    if m.group("fraction") is not None:
        numerator, denominator = int(m.group("numerator")), int(m.group("denominator"))
        if 0 < numerator < denominator <= 10:
            if denominator in _FRACTION_NAMES:
                name = _FRACTION_NAMES[denominator][numerator != 1]
            else:
                name = _map_last_word(_cardinal(denominator), _ordinalize)
                name = name if numerator == 1 else _pluralize(name)
            words = f"{_cardinal(numerator)} {name}"
        else:
            words = f"{_cardinal(numerator)} slash {_cardinal(denominator)}"
        return _Rendered(words, m.end(), rangeable=False)
    if m.group("dotted") is not None:
        parts = m.group("dotted").split(".")
        # Four numbers are an IP address ("dot"); fewer are a version ("point").
        joiner = " dot " if len(parts) == 4 else " point "
        return _Rendered(joiner.join(_integer_words(p) for p in parts), m.end(), rangeable=False)
    vulgar = _VULGAR_FRACTIONS[m.group("vulgar")]
    after_digit = m.start() > 0 and text[m.start() - 1].isdigit()
    return _Rendered(f"and {vulgar}" if after_digit else vulgar, m.end(), rangeable=False)


def _bare_integer_words(int_text: str) -> str:
    """Words for an integer standing alone: four digits in 1100-1999 or 2000-2099 read as a year."""
    if len(int_text) == 4 and ("1100" <= int_text <= "1999" or "2000" <= int_text <= "2099"):
        return _year(int(int_text))
    return _integer_words(int_text.replace(",", "") if "," in int_text else int_text)


def _render_time(m: re.Match[str], text: str) -> _Rendered:
    hour, minute = int(m.group("hour")), int(m.group("minute"))
    if hour > 24:
        words = f"{_cardinal(hour)} {_cardinal(minute)}"
        return _Rendered(words, m.end(), rangeable=False)
    end = m.end()
    ampm = _AMPM_RE.match(text, end)
    words = _cardinal(hour)
    if minute == 0:
        if not ampm:
            words += " o'clock" if hour <= 12 else " hundred"
    elif minute < 10:
        words += f" oh {_ONES[minute]}"
    else:
        words += f" {_under_hundred(minute)}"
    if m.group("second") is not None:
        seconds = int(m.group("second"))
        words += f" and {_cardinal(seconds)} second{'' if seconds == 1 else 's'}"
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
        return _Rendered(negative + _money(currency[0], digits, frac, scale), end)

    # One match finds whichever suffix follows; most numbers have none.
    suffix = _SUFFIX_RE.match(text, end)
    kind = suffix.lastgroup if suffix else None
    if suffix and kind == "postfix_currency":
        words = _money(suffix.group("currency"), digits, frac, None)
        return _Rendered(negative + words, suffix.end())

    is_int = frac is None
    is_one = is_int and digits.lstrip("0") == "1"
    base = _integer_words(digits) if frac is None else _decimal_words(digits, frac)
    if suffix:
        if kind == "ordinal" and is_int:
            return _Rendered(negative + _map_last_word(base, _ordinalize), suffix.end(), rangeable=False)
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
            return _Rendered(_map_last_word(base, _pluralize), suffix.end(), decade=decade)
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
