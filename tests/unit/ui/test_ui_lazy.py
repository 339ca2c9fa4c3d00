"""The web UI is built on its first visit: a server nobody opens the UI of never imports Gradio.

A bare FastAPI app with a real app state (from ``create_app``, nothing started) gets the UI through
:func:`voxserve.ui.mount_ui`, driven by Starlette's TestClient with its lifespan.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from tests.timing import scaled

from voxserve.api.app import create_app
from voxserve.config import Settings
from voxserve.ui import LazyUI, mount_ui


def test_creating_the_app_does_not_import_gradio() -> None:
    code = (
        "import sys\n"
        "from voxserve.api.app import create_app\n"
        "from voxserve.config import Settings\n"
        "create_app(Settings(ui_enabled=True))\n"
        "print('gradio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_first_visit_builds_and_starts_the_ui_and_the_app_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = FastAPI()
    app.state.vox = create_app(Settings(ui_enabled=False)).state.vox
    ui = mount_ui(app)
    closed: list[bool] = []
    real_close = ui.close

    async def close() -> None:
        closed.append(True)
        await real_close()

    monkeypatch.setattr(ui, "close", close)
    with TestClient(app) as client:
        assert not ui.built and ui.routes == []
        assert client.get("/ui/config").status_code == 200
        assert ui.built
        inner: Any = next(r for r in app.routes if getattr(r, "app", None) is ui)
        paths = {getattr(r, "path", "") for r in inner.routes}
        assert "/config" in paths  # the mount now walks into Gradio's own routes
        page = client.get("/ui/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "voxserve" in page.text
        # Gradio's start-up ran (its queue), as gr.mount_gradio_app's lifespan would have done it.
        assert ui.blocks is not None and ui.blocks.is_running
        assert not closed
    assert closed == [True]


def test_no_route_of_the_app_is_left_behind_by_the_build() -> None:
    app = FastAPI()
    app.state.vox = create_app(Settings(ui_enabled=False)).state.vox
    ui = mount_ui(app)
    before = list(app.routes)
    lifespan = app.router.lifespan_context
    ui.build_without_starting()
    assert list(app.routes) == before and app.router.lifespan_context is lifespan
    assert isinstance(before[-1].app, LazyUI)  # type: ignore[attr-defined]
