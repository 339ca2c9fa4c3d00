"""Signing out of the web UI: the session ends on the server, and only the UI's own page can do it.

Apps are built by ``create_app`` and driven by Starlette's TestClient without their lifespan (nothing
starts); the browser test (tests/browser/test_ui_auth_browser.py) clicks the button in Chromium.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from voxserve.api.app import create_app
from voxserve.api.security import UI_COOKIE, KeyRing
from voxserve.config import Settings

KEYS = ["signout-key-0123456789", "signout-key-abcdefghij"]
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def keyed_app() -> FastAPI:
    return create_app(Settings(api_keys=KEYS, ui_enabled=True))


def _sign_in(client: TestClient, key: str = KEYS[0]) -> dict[str, str]:
    ok = client.post("/ui/auth", data={"api_key": key})
    assert ok.status_code == 303
    return {"Cookie": ok.headers["set-cookie"].split(";")[0]}


def test_sign_out_ends_the_session_on_the_server(keyed_app: FastAPI) -> None:
    client = TestClient(keyed_app, raise_server_exceptions=False, follow_redirects=False)
    cookie = _sign_in(client)
    other = _sign_in(client, KEYS[1])  # another browser, signed in too
    assert client.get("/ui/config", headers=cookie).status_code == 200

    out = client.post("/ui/signout", headers={**cookie, "Origin": "http://testserver"})
    assert out.status_code == 303 and out.headers["location"] == "./"
    assert out.headers["cache-control"] == "no-store"
    set_cookie = out.headers["set-cookie"]
    assert set_cookie.startswith(f"{UI_COOKIE}=;")
    for attribute in ("Path=/ui", "Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT", "HttpOnly"):
        assert attribute in set_cookie

    # The old cookie is refused, also by a client that ignores the expired Set-Cookie.
    refused = client.get("/ui/config", headers=cookie)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    page = client.get("/ui/", headers={**cookie, **HTML})
    assert page.status_code == 401 and 'name="api_key"' in page.text
    # Only that session ended: the other browser and the key itself still work.
    assert client.get("/ui/config", headers=other).status_code == 200
    assert client.get("/ui/config", headers=_sign_in(client)).status_code == 200
    # Signing out again (or with no cookie at all) only clears the cookie.
    assert client.post("/ui/signout", headers=cookie).status_code == 303
    assert client.post("/ui/signout").status_code == 303


def test_sign_out_is_post_only_and_same_origin_only(keyed_app: FastAPI) -> None:
    client = TestClient(keyed_app, raise_server_exceptions=False, follow_redirects=False)
    cookie = _sign_in(client)
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        r = client.request(method, "/ui/signout", headers=cookie)
        assert r.status_code == 405 and r.headers["allow"] == "POST", method
    for hostile in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver:8080"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://testserver"},
    ):
        r = client.post("/ui/signout", headers={**cookie, **hostile})
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed", hostile
        assert "set-cookie" not in r.headers
    # None of them ended the session.
    assert client.get("/ui/config", headers=cookie).status_code == 200
    same = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/ui/signout", headers={**cookie, **same}).status_code == 303
    assert client.get("/ui/config", headers=cookie).status_code == 401


def _signout_html(config: dict[str, Any]) -> list[str]:
    """The HTML of the sign-out bar in a Gradio config (none or one)."""
    return [
        str(c["props"]["value"])
        for c in config["components"]
        if c.get("props", {}).get("elem_id") == "signout-bar"
    ]


def test_the_ui_has_a_sign_out_button_only_with_keys(keyed_app: FastAPI) -> None:
    client = TestClient(keyed_app, raise_server_exceptions=False, follow_redirects=False)
    [form] = _signout_html(client.get("/ui/config", headers=_sign_in(client)).json())
    assert 'method="post"' in form and 'action="./signout"' in form and 'id="signout"' in form
    open_app = create_app(Settings(ui_enabled=True))
    assert _signout_html(TestClient(open_app, raise_server_exceptions=False).get("/ui/config").json()) == []


def test_key_ring_sessions() -> None:
    ring = KeyRing(KEYS, max_sessions=3)
    with pytest.raises(ValueError, match="not a configured key"):
        ring.cookie_for("wrong")
    first = ring.cookie_for(KEYS[0])
    again = ring.cookie_for(KEYS[0])
    assert first != again and ring.check_cookie(first) and ring.check_cookie(again)  # one per sign-in
    assert ring.end_session(first) and not ring.check_cookie(first) and ring.check_cookie(again)
    assert not ring.end_session(first) and not ring.end_session("zz") and not ring.end_session(None)
    # Past the bound, the oldest session ends.
    later = [ring.cookie_for(KEYS[1]) for _ in range(3)]
    assert not ring.check_cookie(again) and all(ring.check_cookie(c) for c in later)
