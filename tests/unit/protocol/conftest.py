"""Shared by the protocol golden tests: the JSON examples of ``docs/api.md``, read from the file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

API_MD = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def _section(text: str, heading: str) -> str:
    """The body of the ``##`` section whose title contains ``heading`` (up to the next heading)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and heading in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start + 1 : end])


def json_examples(heading: str) -> list[Any]:
    """Every JSON value in the fenced ``json`` blocks of a section of docs/api.md, in order.

    A block may hold several values, one per line or spread over lines; ``[...]`` (an elided list)
    reads as ``[]``.
    """
    body = _section(API_MD.read_text(encoding="utf-8"), heading)
    decoder = json.JSONDecoder()
    values: list[Any] = []
    for block in re.findall(r"```json\n(.*?)```", body, re.DOTALL):
        block = block.replace("[...]", "[]")
        pos = 0
        while pos < len(block):
            if block[pos].isspace():
                pos += 1
                continue
            value, pos = decoder.raw_decode(block, pos)
            values.append(value)
    return values


def doc_text() -> str:
    """All of docs/api.md, with runs of whitespace collapsed (inline examples may wrap)."""
    return re.sub(r"\s+", " ", API_MD.read_text(encoding="utf-8"))


@pytest.fixture
def api_examples() -> Callable[[str], list[Any]]:
    """``api_examples(heading)``: the JSON examples of one section of docs/api.md."""
    return json_examples


@pytest.fixture
def api_text() -> str:
    """docs/api.md with whitespace collapsed, to check that inline examples are still there."""
    return doc_text()
