"""API keys on every route, WebSocket Origin, CORS, no stack traces, loopback by default.

No worker starts here: the apps are built by ``create_app`` and driven by Starlette's TestClient
without its lifespan. The route walk reads the real route table (FastAPI's included routers and the
Gradio app mounted at /ui) and sends every method of every path through the real middleware stack.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from voxserve.api import security
from voxserve.api.app import create_app
from voxserve.api.security import UI_COOKIE, KeyRing, SecurityMiddleware, origin_allowed, request_principal
from voxserve.config import Settings
from voxserve.ui import LazyUI

KEYS = ["key-one-0123456789", "key-two-abcdefghij"]
AUTH = {"Authorization": f"Bearer {KEYS[1]}"}
WS_PATHS = {"/v1/realtime", "/v1/stream/transcribe", "/v1/stream/speak", "/v1/stream/chat"}


# --- walking the real route table -------------------------------------------------------------------


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, frozenset[str]]]:
    """(kind, path, methods) of every route, through included routers and mounted apps."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(list(route.routes), prefix + route.path)
        elif hasattr(route, "original_router"):  # FastAPI's included router
            sub: Any = route
            yield from _walk(list(sub.original_router.routes), prefix + sub.include_context.prefix)
        elif isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
            yield ("websocket", prefix + getattr(route, "path", ""), frozenset())
        elif isinstance(route, Route):
            yield ("http", prefix + route.path, frozenset(route.methods or {"GET"}))
        else:
            raise AssertionError(f"the route walk does not know {type(route).__name__}: extend it")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "dummy", path)


class _Recorder:
    """Stands in for everything behind the security middleware: 204 for HTTP, accept for WebSockets."""

    def __init__(self) -> None:
        self.reached: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append((scope["type"], scope["path"]))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})


def _refused(client: TestClient, path: str, **kwargs: Any) -> WebSocketDenialResponse:
    """The HTTP response that refused a WebSocket handshake."""
    try:
        with client.websocket_connect(path, **kwargs):
            pass
    except WebSocketDenialResponse as denial:
        return denial
    raise AssertionError(f"{path} accepted the WebSocket ({kwargs})")


def _stack_with_recorder(app: FastAPI) -> tuple[ASGIApp, _Recorder]:
    """The app's real middleware stack, with a recorder in place of the routes behind the key check."""
    stack = app.build_middleware_stack()
    layer: Any = stack
    while not isinstance(layer, SecurityMiddleware):
        layer = layer.app
    recorder = _Recorder()
    layer.app = recorder
    return stack, recorder


@pytest.fixture(scope="module")
def keyed_app() -> FastAPI:
    """The whole app (the Gradio UI included, built as on a first visit so that the walk reaches its
    routes) with two keys; nothing started."""
    app = create_app(Settings(api_keys=KEYS, ui_enabled=True))
    (ui,) = [r.app for r in app.routes if isinstance(r, Mount) and isinstance(r.app, LazyUI)]
    ui.build_without_starting()
    return app


@pytest.fixture(scope="module")
def routes(keyed_app: FastAPI) -> list[tuple[str, str, frozenset[str]]]:
    found = sorted(set(_walk(list(keyed_app.routes))))
    paths = {p for kind, p, _ in found if kind == "http"}
    # The walk went through the included routers and into the mounted Gradio app.
    assert {"/v1/audio/speech", "/v1/models/{model_id}", "/ready", "/metrics", "/health"} <= paths
    jobs = "/v1/audio/speech/jobs"
    assert {jobs, f"{jobs}/{{job_id}}", f"{jobs}/{{job_id}}/audio"} <= paths
    assert {"/docs", "/openapi.json", "/ui/", "/ui/config"} <= paths
    assert any(p.startswith("/ui/gradio_api/") for p in paths), sorted(paths)
    assert {p for kind, p, _ in found if kind == "websocket"} == WS_PATHS
    return found


def test_route_walk_every_http_route_is_401_without_a_key(
    keyed_app: FastAPI, routes: list[tuple[str, str, frozenset[str]]]
) -> None:
    client = TestClient(keyed_app, raise_server_exceptions=False)  # no lifespan: nothing starts
    checked = 0
    for kind, path, methods in routes:
        if kind != "http" or path in security.EXEMPT_PATHS:
            continue
        for method in sorted(methods):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEYS[0]}"}):
                r = client.request(method, _concrete(path), headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
                if method != "HEAD":
                    error = r.json()["error"]
                    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
                    assert set(error) == {"message", "type", "param", "code"}
                checked += 1
    assert checked > 3 * 40
    # Paths that match no route do not reveal that: 401 too.
    assert client.get("/no/such/path").status_code == 401
    assert client.get("/health/").status_code == 401


def test_route_walk_every_websocket_route_is_refused_without_a_key(
    keyed_app: FastAPI, routes: list[tuple[str, str, frozenset[str]]]
) -> None:
    client = TestClient(keyed_app)
    for kind, path, _ in routes:
        if kind != "websocket":
            continue
        for headers, protocols in (
            ({}, None),
            ({"Authorization": "Bearer wrong"}, None),
            ({}, ["realtime", "openai-insecure-api-key.wrong"]),
        ):
            denial = _refused(client, path, headers=headers, subprotocols=protocols)
            assert denial.status_code == 401, path
            assert denial.json()["error"]["code"] == "invalid_api_key"
            assert denial.headers["www-authenticate"] == "Bearer"


def test_route_walk_every_route_is_reached_with_a_key(
    keyed_app: FastAPI, routes: list[tuple[str, str, frozenset[str]]]
) -> None:
    stack, recorder = _stack_with_recorder(keyed_app)
    client = TestClient(stack)
    expected: list[tuple[str, str]] = []
    for kind, path, methods in routes:
        url = _concrete(path)
        if kind == "http":
            for method in sorted(methods):
                for key in KEYS:  # each of several keys works
                    r = client.request(method, url, headers={"Authorization": f"Bearer {key}"})
                    assert r.status_code == 204, (method, path, r.status_code)
                    expected.append(("http", url))
            continue
        with client.websocket_connect(url, headers=AUTH) as ws:
            assert ws.accepted_subprotocol is None
        # A browser passes the key as a subprotocol; the server answers with the other one.
        offered = ["realtime", f"openai-insecure-api-key.{KEYS[0]}"]
        with client.websocket_connect(url, subprotocols=offered) as ws:
            assert ws.accepted_subprotocol == "realtime"
        expected += [("websocket", url), ("websocket", url)]
    assert recorder.reached == expected
    # Liveness is the one path open without a key.
    recorder.reached.clear()
    assert client.get("/health").status_code == 204
    assert recorder.reached == [("http", "/health")]


def test_without_keys_nothing_asks_for_one() -> None:
    stack, recorder = _stack_with_recorder(create_app(Settings(ui_enabled=False)))
    client = TestClient(stack)
    assert client.get("/v1/models").status_code == 204
    with client.websocket_connect("/v1/realtime"):
        pass
    assert recorder.reached == [("http", "/v1/models"), ("websocket", "/v1/realtime")]


def test_real_routes_answer_with_a_key(keyed_app: FastAPI) -> None:
    client = TestClient(keyed_app, raise_server_exceptions=False)
    r = client.get("/v1/models", headers=AUTH)
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert client.get("/openapi.json", headers=AUTH).status_code == 200
    assert client.get("/health").json() == {"status": "ok"}


# --- keys --------------------------------------------------------------------------------------------


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(["a" * 20, "b" * 5, "c" * 40])
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    assert ring.check("a" * 20)  # the first key matches: the others are still compared
    assert len(calls) == 3
    assert all(a == b == 32 for a, b in calls)  # digests: equal lengths whatever the keys' lengths
    calls.clear()
    assert not ring.check("nope")
    assert not ring.check(None)
    assert not ring.check("")
    assert len(calls) == 6


def test_each_key_is_its_own_principal_and_never_the_key() -> None:
    ring = KeyRing(KEYS)
    one, two = ring.identify(KEYS[0]), ring.identify(KEYS[1])
    assert one and two and one != two
    assert KEYS[0] not in one and ring.identify(KEYS[0]) == one  # stable within the server
    assert ring.identify("nope") is None and ring.identify(None) is None
    assert ring.session_principal(ring.cookie_for(KEYS[1])) == two  # a UI session acts as its key


def test_the_principal_reaches_the_route() -> None:
    app = create_app(Settings(api_keys=KEYS))
    seen: list[str | None] = []

    @app.get("/v1/whoami-test")
    async def whoami(request: Request) -> dict[str, str]:
        seen.append(request_principal(request.state))
        return {}

    client = TestClient(app)  # no lifespan: nothing starts
    for key in KEYS:
        assert client.get("/v1/whoami-test", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert len(seen) == 2 and None not in seen and seen[0] != seen[1]


def test_ui_cookie_is_not_the_key_and_is_checked() -> None:
    ring = KeyRing(KEYS)
    cookie = ring.cookie_for(KEYS[0])
    assert KEYS[0] not in cookie
    assert ring.check_cookie(cookie)
    assert not ring.check_cookie(KeyRing(KEYS).cookie_for(KEYS[0]))  # another process's secret
    assert not ring.check_cookie("zz-not-hex")
    assert not ring.check_cookie(None)


def test_api_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXSERVE_API_KEYS", "k1, k2 ,k1")
    assert Settings().api_keys == ["k1", "k2"]
    monkeypatch.setenv("VOXSERVE_API_KEYS", '["k3", "k4"]')
    assert Settings().api_keys == ["k3", "k4"]
    monkeypatch.setenv("VOXSERVE_API_KEYS", "")
    assert Settings().api_keys == []
    monkeypatch.setenv("VOXSERVE_CORS_ALLOW_ORIGINS", "https://a.example/, http://127.0.0.1:3000")
    monkeypatch.setenv("VOXSERVE_WS_ALLOWED_ORIGINS", "*")
    s = Settings()
    assert s.cors_allow_origins == ["https://a.example", "http://127.0.0.1:3000"]
    assert s.ws_allowed_origins == ["*"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_keys": ["has space"]},
        {"api_keys": [""]},
        {"api_keys": ["caf\u00e9"]},
        {"cors_allow_origins": ["example.com"]},
        {"ws_allowed_origins": ["https://example.com/path"]},
        {"ssl_certfile": "/no/such/cert.pem"},
        {"ssl_certfile": "/no/such/cert.pem", "ssl_keyfile": "/no/such/key.pem"},
    ],
)
def test_bad_security_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)
    for key in kwargs.get("api_keys", []):
        if key:
            assert key not in str(info.value)  # errors never echo the input
    assert "secret-key-value" not in repr(Settings(api_keys=["secret-key-value"]))


def test_unauthenticated_requests_do_not_reach_the_body_limit() -> None:
    app = create_app(Settings(api_keys=KEYS, ui_enabled=False, max_body_bytes=2048))
    client = TestClient(app)
    assert client.post("/v1/audio/speech", content=b" " * 4096).status_code == 401
    r = client.post("/v1/audio/speech", content=b" " * 4096, headers=AUTH)
    assert r.status_code == 413


# --- the UI's login ----------------------------------------------------------------------------------


def test_ui_login_form_sets_a_cookie_for_the_ui_only(keyed_app: FastAPI) -> None:
    client = TestClient(keyed_app, raise_server_exceptions=False, follow_redirects=False)
    page = client.get("/ui/", headers={"Accept": "text/html"})
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert 'action="/ui/auth"' in page.text and 'name="api_key"' in page.text
    # Gradio's own fetches (JSON) get the JSON 401.
    assert client.get("/ui/config").json()["error"]["code"] == "invalid_api_key"

    wrong = client.post("/ui/auth", data={"api_key": "wrong"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert UI_COOKIE not in wrong.headers.get("set-cookie", "")

    ok = client.post("/ui/auth", data={"api_key": KEYS[0]})
    assert ok.status_code == 303 and ok.headers["location"] == "./"
    set_cookie = ok.headers["set-cookie"]
    assert set_cookie.startswith(f"{UI_COOKIE}=") and KEYS[0] not in set_cookie
    for attribute in ("Path=/ui", "HttpOnly", "SameSite=Lax"):
        assert attribute in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP here; over TLS the cookie is Secure
    cookie = {"Cookie": set_cookie.split(";")[0]}
    assert client.get("/ui/config", headers=cookie).status_code == 200
    index = client.get("/ui/", headers={**cookie, "Accept": "text/html"})
    assert index.status_code == 200 and "gradio" in index.text.lower()
    # The cookie opens the UI, not the API.
    assert client.get("/v1/models", headers=cookie).status_code == 401
    assert client.get("/ui/config", headers={"Cookie": f"{UI_COOKIE}=00ff"}).status_code == 401


def test_ui_login_is_not_there_without_keys() -> None:
    stack, recorder = _stack_with_recorder(create_app(Settings(ui_enabled=True)))
    client = TestClient(stack)
    assert client.post("/ui/auth", data={"api_key": "x"}).status_code == 204  # passed on, not handled
    assert recorder.reached == [("http", "/ui/auth")]


# --- WebSocket Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed", "ok"),
    [
        (None, "127.0.0.1:8000", "ws", [], True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", [], True),
        ("HTTP://LOCALHOST:8000/", "localhost:8000", "ws", [], True),
        ("https://speech.example", "speech.example", "ws", [], True),  # TLS ended at a proxy
        ("https://speech.example:443", "speech.example", "wss", [], True),
        ("http://127.0.0.1:9000", "127.0.0.1:8000", "ws", [], False),
        ("https://evil.example", "127.0.0.1:8000", "ws", [], False),
        ("null", "127.0.0.1:8000", "ws", [], False),
        ("https://app.example", "127.0.0.1:8000", "ws", ["https://app.example"], True),
        ("https://evil.example", "127.0.0.1:8000", "ws", ["https://app.example"], False),
        ("https://evil.example", "127.0.0.1:8000", "ws", ["*"], True),
        ("https://evil.example", None, "ws", [], False),
    ],
)
def test_origin_allowed(
    origin: str | None, host: str | None, scheme: str, allowed: list[str], ok: bool
) -> None:
    assert origin_allowed(origin, host, scheme, allowed) is ok


def test_websocket_origin_is_checked_before_accept() -> None:
    stack, recorder = _stack_with_recorder(create_app(Settings(ui_enabled=False)))
    client = TestClient(stack)  # its Host is "testserver"
    with client.websocket_connect("/v1/stream/speak", headers={"Origin": "http://testserver"}):
        pass
    for origin in ("https://evil.example", "null", "http://testserver:8080"):
        denial = _refused(client, "/v1/stream/speak", headers={"Origin": origin})
        assert denial.status_code == 403
        assert denial.json()["error"]["code"] == "origin_not_allowed"
    assert recorder.reached == [("websocket", "/v1/stream/speak")]

    listed = create_app(Settings(ui_enabled=False, ws_allowed_origins=["https://app.example"]))
    stack, recorder = _stack_with_recorder(listed)
    client = TestClient(stack)
    with client.websocket_connect("/v1/realtime", headers={"Origin": "https://app.example"}):
        pass
    assert _refused(client, "/v1/realtime", headers={"Origin": "https://evil.example"}).status_code == 403


def test_websocket_origin_is_checked_even_with_a_valid_key() -> None:
    app = create_app(Settings(api_keys=KEYS, ui_enabled=False))
    client = TestClient(app)
    denial = _refused(client, "/v1/realtime", headers={**AUTH, "Origin": "https://evil.example"})
    assert denial.status_code == 403


async def test_websocket_refused_by_close_where_the_server_cannot_send_a_response() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("reached the app")

    mw = SecurityMiddleware(never, api_keys=KEYS)
    scope = {"type": "websocket", "path": "/v1/realtime", "headers": [], "subprotocols": []}
    await mw(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": sent[0]["reason"]}]
    assert "API key" in sent[0]["reason"]


# --- CORS ----------------------------------------------------------------------------------------------


def test_cors_denies_by_default_including_the_ui() -> None:
    app = create_app(Settings(api_keys=KEYS, ui_enabled=True))
    client = TestClient(app, raise_server_exceptions=False)
    evil = {"Origin": "https://evil.example", **AUTH}
    r = client.get("/v1/models", headers=evil)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # Gradio reflects any origin (with credentials) for a non-localhost Host unless the parent app
    # configures CORS: it must not here.
    r = client.get("/ui/config", headers={**evil, "Host": "speech.example"})
    assert r.status_code == 200
    assert not any(h.startswith("access-control-") for h in r.headers), r.headers
    pre = client.options(
        "/v1/audio/speech",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_configured_origins() -> None:
    app = create_app(Settings(api_keys=KEYS, ui_enabled=False, cors_allow_origins=["https://app.example"]))
    client = TestClient(app)
    pre = client.options(
        "/v1/audio/speech",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 200  # the preflight carries no key, and needs none
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = client.get("/v1/models", headers={"Origin": "https://app.example", **AUTH})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
    # A 401 is readable by the allowed page, so it can tell the user what is wrong.
    denied = client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert (
        denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example"
    )
    other = client.get("/v1/models", headers={"Origin": "https://evil.example", **AUTH})
    assert "access-control-allow-origin" not in other.headers


# --- no stack traces -----------------------------------------------------------------------------------


def test_unexpected_errors_are_generic_with_a_request_id(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(ui_enabled=False))

    def boom() -> list[str]:
        raise RuntimeError("secret detail in /srv/voxserve/internal.py")

    monkeypatch.setattr(app.state.vox, "model_ids", boom)
    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="voxserve.api"):
        r = client.get("/v1/models")
    assert r.status_code == 500
    body = r.text
    for leak in ("Traceback", "secret detail", "/srv/", ".py", "RuntimeError", 'File "'):
        assert leak not in body, body
    error = r.json()["error"]
    assert error["code"] == "internal_error" and error["type"] == "server_error"
    request_id = r.headers["x-request-id"]
    assert request_id in error["message"]
    # The traceback is in the server's log, under the same request id.
    record = next(rec for rec in caplog.records if request_id in rec.getMessage())
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])


# --- the command line: loopback by default, keys and TLS flags -------------------------------------------


def _serve_kwargs(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], *, clear_env: bool = True
) -> tuple[Settings, dict[str, Any]]:
    """What ``voxserve serve`` would hand to uvicorn (nothing is started)."""

    from voxserve import cli
    from voxserve.api import app as app_module

    for name in ("HOST", "PORT", "API_KEYS", "ALLOW_UNAUTHENTICATED", "SSL_CERTFILE", "SSL_KEYFILE"):
        if clear_env:
            monkeypatch.delenv(f"VOXSERVE_{name}", raising=False)
    built: list[Settings] = []
    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(app_module, "create_app", lambda settings: built.append(settings) or object())
    monkeypatch.setattr(cli, "_run_server", lambda app, **kwargs: ran.append(kwargs))
    assert cli.main(argv) == 0
    return built[0], ran[0]


def test_serve_binds_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    settings, kwargs = _serve_kwargs(monkeypatch, ["serve"])
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000
    assert kwargs["ssl_certfile"] is None and kwargs["ssl_keyfile"] is None
    assert settings.api_keys == [] and settings.cors_allow_origins == [] and settings.ws_allowed_origins == []
    # Reachable from other machines: a key, or saying that none is wanted (corpus SEC7).
    with pytest.raises(SystemExit) as info:
        _serve_kwargs(monkeypatch, ["serve", "--host", "0.0.0.0"])
    assert "allow_unauthenticated" in str(info.value) and "api_keys" in str(info.value)
    _, kwargs = _serve_kwargs(monkeypatch, ["serve", "--host", "0.0.0.0", "--api-key", "k-1"])
    assert kwargs["host"] == "0.0.0.0"
    _, kwargs = _serve_kwargs(monkeypatch, ["serve", "--host", "0.0.0.0", "--allow-unauthenticated"])
    assert kwargs["host"] == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_no_key(host: str) -> None:
    assert Settings(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "voxserve.example"])
def test_reachable_hosts_need_a_key_or_a_waiver(host: str) -> None:
    with pytest.raises(ValueError, match="can be reached from other machines"):
        Settings(host=host)
    assert Settings(host=host, api_keys=["k-1"]).host == host
    assert Settings(host=host, allow_unauthenticated=True).host == host


def test_serve_key_and_tls_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    argv = [
        "serve",
        "--api-key",
        "k1",
        "--api-key",
        "k2",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
    ]
    settings, kwargs = _serve_kwargs(monkeypatch, argv)
    assert settings.api_keys == ["k1", "k2"]
    assert kwargs["ssl_certfile"] == str(cert) and kwargs["ssl_keyfile"] == str(key)
    monkeypatch.setenv("VOXSERVE_API_KEYS", "from-env")
    settings, _ = _serve_kwargs(monkeypatch, ["serve"], clear_env=False)
    assert settings.api_keys == ["from-env"]
    settings, _ = _serve_kwargs(monkeypatch, ["serve", "--api-key", "flag"], clear_env=False)
    assert settings.api_keys == ["flag"]  # the flag wins over the environment
    with pytest.raises(SystemExit) as info:
        _serve_kwargs(monkeypatch, ["serve", "--ssl-certfile", str(cert)])
    assert "set both or neither" in str(info.value)
