"""The import contract: every import in ``src/voxserve`` points down the layers of docs/architecture.md.

Lazy imports inside functions count too: a layer that reaches up at run time is as coupled as one that
does at import time. The one exception is the composition root: ``api.app`` mounts the web UI and
``api.security`` guards its paths, so ``api`` may import ``ui`` (never the other way round).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "voxserve"

# Highest first. A module may import its own layer and any layer below it.
LAYERS: dict[str, int] = {
    # adapters: transports and front ends
    "api": 6,
    "ui": 6,
    "cli": 6,
    "listen": 6,
    "speak": 6,
    "speech_stream": 6,
    "client": 6,
    "wyoming": 6,
    "__init__": 6,
    "__main__": 6,
    # services: sessions, and the state one server holds (state ties tts and stt together)
    "chat": 4,
    "state": 3,
    "tts": 3,
    "stt": 3,
    "observability": 3,
    # scheduling onto engines
    "runtime": 2,
    # one module per model family
    "engines": 1,
    # pure helpers and the roots everything shares. protocol/ (typed wire messages, parse and
    # serialise) is pure too: the server's adapters, the client and the chat LLM client all use it.
    "audio": 0,
    "text": 0,
    "protocol": 0,
    "errors": -1,
    "config": -1,
}

# Same-rank pairs that must not import each other either way (siblings, not a stack).
SIBLINGS = {("tts", "stt"), ("stt", "tts"), ("ui", "api"), ("client", "api"), ("client", "ui")}
ALLOWED = {("api", "ui")}


def _top(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "voxserve"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("voxserve")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("voxserve")
        ):
            found.append((node.lineno, str(node.module)))
    return found


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    tops = {_top("voxserve." + ".".join(p.relative_to(SRC).with_suffix("").parts)) for p in _modules()}
    assert tops - LAYERS.keys() == set(), "give the new package a layer in LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    here = _top("voxserve." + ".".join(path.relative_to(SRC).with_suffix("").parts))
    wrong = []
    for line, module in _imports(path):
        there = _top(module)
        if there == here or (here, there) in ALLOWED:
            continue
        if LAYERS[there] > LAYERS[here] or (here, there) in SIBLINGS:
            layers = f"layer {LAYERS[here]} -> {LAYERS[there]}"
            wrong.append(f"line {line}: {here} imports {module} ({layers})")
    assert not wrong, "\n".join(wrong)


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    # The checker itself must fail on a violation, or the test above proves nothing.
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from voxserve.api.app import create_app\n")
    assert _imports(module) == [(2, "voxserve.api.app")]
    assert LAYERS[_top("voxserve.api.app")] > LAYERS["runtime"]
