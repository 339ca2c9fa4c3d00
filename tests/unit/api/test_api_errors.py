"""REST error responses are counted by code and route template, and client mistakes are logged
(rate-limited) with their code; a path no route serves stays out of the INFO log."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from voxserve.api.errors import install_error_handlers
from voxserve.errors import EngineFailure, UnknownModel
from voxserve.observability import Metrics, configure_logging


class Body(BaseModel):
    speed: float


def make_app() -> tuple[FastAPI, Metrics]:
    app = FastAPI()
    metrics = Metrics()
    app.state.vox = SimpleNamespace(metrics=metrics)
    install_error_handlers(app)

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> None:
        raise UnknownModel(f"model {model_id!r} is not served here")

    @app.post("/v1/speed")
    async def speed(body: Body) -> None:
        return None

    @app.get("/v1/broken")
    async def broken() -> None:
        raise EngineFailure("boom")

    @app.get("/v1/crash")
    async def crash() -> None:
        raise KeyError("x")

    return app, metrics


def count(metrics: Metrics, code: str, route: str, status: int) -> float:
    labels = {"code": code, "route": route, "status": str(status)}
    return metrics.registry.get_sample_value("voxserve_http_errors_total", labels) or 0.0


def test_error_responses_are_counted_by_code_and_route_template(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "voxserve.api")
    app, metrics = make_app()
    client = TestClient(app, raise_server_exceptions=False)
    for name in ("a", "b", "c"):
        assert client.get(f"/v1/models/{name}").json()["error"]["code"] == "model_not_found"
    assert client.post("/v1/speed", json={"speed": "fast"}).status_code == 422
    assert client.get("/nothing/here").status_code == 404
    assert client.get("/v1/broken").status_code == 500
    assert client.get("/v1/crash").status_code == 500
    assert count(metrics, "model_not_found", "/v1/models/{model_id}", 404) == 3
    assert count(metrics, "invalid_speed", "/v1/speed", 422) == 1
    assert count(metrics, "not_found", "unmatched", 404) == 1
    assert count(metrics, "synthesis_failed", "/v1/broken", 500) == 1
    assert count(metrics, "internal_error", "/v1/crash", 500) == 1

    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    # One line for the three model_not_found (the repeats wait for the next line), one for the 422.
    assert len(info) == 2
    assert info[0].startswith("GET /v1/models/{model_id}: 404 model_not_found: model 'a'")
    assert info[1].startswith("POST /v1/speed: 422 invalid_speed")
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("unmatched: 404 not_found" in line for line in debug)
    assert any(r.levelno == logging.ERROR and "synthesis_failed" in r.getMessage() for r in caplog.records)


def test_an_app_without_metrics_still_answers() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/x")
    async def x() -> None:
        raise UnknownModel("no")

    assert TestClient(app).get("/x").status_code == 404


def test_configure_logging_sends_voxserve_lines_to_the_servers_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn configures only its own loggers: without this, INFO lines of voxserve.* are dropped.
    root, logger = logging.getLogger(), logging.getLogger("voxserve")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logger.level)
    out = io.StringIO()
    handler = configure_logging("info", out)
    assert handler is not None
    logging.getLogger("voxserve.ws").info("WebSocket /v1/realtime session 0a1b2c3d: error x: y")
    logging.getLogger("voxserve.ws").debug("not at info")
    assert configure_logging("info", out) is None  # once only
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "INFO voxserve.ws: WebSocket /v1/realtime session 0a1b2c3d: error x: y"
    )


def test_configure_logging_leaves_a_configured_application_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    root, logger = logging.getLogger(), logging.getLogger("voxserve")
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logger.level)
    assert configure_logging("warning") is None and logger.level == logging.WARNING
