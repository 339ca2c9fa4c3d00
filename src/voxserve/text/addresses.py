"""URLs, e-mail addresses and phone numbers, spelled out for a TTS front end.

Used by :func:`voxserve.text.normalize.normalize_text`: ``jo@example.com`` -> "jo at example dot
com", ``https://example.com/docs`` -> "example dot com slash docs", ``(555) 123-4567`` -> "five five
five, one two three, four five six seven". Linear time on any input (see the comment on the
address pattern, and :mod:`voxserve.text.normalize`).
"""

from __future__ import annotations

import re

from voxserve.text.numwords import digit_words

__all__ = ["speak_addresses", "speak_phone_numbers"]


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


def speak_addresses(text: str, *, urls: bool, emails: bool) -> str:
    """Spell out e-mail addresses (``emails``) and URLs and bare domains (``urls``) in ``text``."""
    if "." not in text and "@" not in text and "://" not in text:
        return text

    def speak(m: re.Match[str]) -> str:
        whole = m.group()
        if m.group("email") is not None:
            if not emails:
                return whole
            address = whole[7:] if whole.startswith("mailto:") else whole
            return f" {_spell_address(address)} "
        if not urls:
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
    groups.append(digit_words(m.group("area1") or m.group("area2")))
    groups.append(digit_words(m.group("exchange")))
    groups.append(digit_words(m.group("line")))
    return ", ".join(groups)


def speak_phone_numbers(text: str) -> str:
    """Read North-American style phone numbers digit by digit, in their groups."""
    return _PHONE_RE.sub(_speak_phone, text)
