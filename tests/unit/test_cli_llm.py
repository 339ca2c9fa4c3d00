"""``voxserve serve --llm-model-path``: the flag reaches the settings and the served model's name (the
server itself is not run: ``_run_server`` is replaced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxserve import cli, observability


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    # serve configures the voxserve loggers for a server's life: not for the rest of this test session.
    monkeypatch.setattr(observability, "configure_logging", lambda *a, **k: None)


def test_llm_model_path_names_the_served_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "my-model.gguf"
    own.write_bytes(b"GGUF")
    apps: list[Any] = []
    monkeypatch.setattr(cli, "_run_server", lambda app, **_: apps.append(app))
    assert cli.main(["serve", "--llm-model-path", str(own)]) == 0
    settings = apps[0].state.vox.settings
    assert settings.llm_model_path == own and settings.llm_model_id() == "my-model"


def test_a_missing_llm_model_path_stops_the_server_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_run_server", lambda app, **_: pytest.fail("the server must not start"))
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--llm-model-path", str(tmp_path / "nope.gguf")])
    assert "llm_model_path" in str(exited.value.code)
