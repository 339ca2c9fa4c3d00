"""Sanitising: the characters no engine should see, and typography folded to ASCII punctuation.

First steps of :func:`voxserve.text.normalize.normalize_text`: :func:`sanitize` drops control,
format (bidi, zero-width), private-use and unassigned characters, lone surrogates, emoji and runaway
combining marks; :func:`unescape_entities` decodes terminated HTML entities; :data:`TYPOGRAPHY`
maps curly quotes, dashes and the like to the ASCII the later passes read. Linear time on any
input, like the rest of the normaliser: plain loops and possessive-quantifier regexes.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["TYPOGRAPHY", "sanitize", "unescape_entities"]


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


def sanitize(text: str) -> str:
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


def unescape_entities(text: str) -> str:
    """HTML entities, only in their terminated ``&name;`` form: bare ``&not`` in "AT&notice" stays."""
    if "&" not in text:
        return text
    return _ENTITY_RE.sub(lambda m: html.unescape(m.group()), text)


TYPOGRAPHY = str.maketrans(
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
