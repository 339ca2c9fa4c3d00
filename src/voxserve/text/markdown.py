"""Markdown (and the bits of HTML that LLMs emit) reduced to its words, one line per block.

Used by :func:`voxserve.text.normalize.normalize_text`: :func:`strip_markdown` turns headings, lists,
quotes, tables, code blocks, links and images into plain lines; :func:`strip_inline_markup` drops the
inline code, emphasis and strikethrough markers once addresses have been read. Linear time on any
input: line-by-line loops, a forward-only link scan, and regexes with possessive or bounded
repetition (see :mod:`voxserve.text.normalize`).
"""

from __future__ import annotations

import re

__all__ = ["strip_inline_markup", "strip_markdown"]


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


def strip_markdown(text: str) -> str:
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


def strip_inline_markup(text: str) -> str:
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
