"""The web UI behind an API key, in a real browser: the login form, then the UI works; signing out
ends the session on the server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.browser.harness import SERVER_ENV, browser, chromium_missing_message, scaled_ms
from tests.e2e.conftest import start_server, stop_server
from tests.timing import scaled, until

from voxserve.api.security import UI_COOKIE

pytestmark = pytest.mark.browser

KEY = "browser-test-key-7c2e"


def test_ui_asks_for_the_key_then_works(tmp_path: Path) -> None:
    missing = chromium_missing_message()
    if missing:
        pytest.fail(missing)
    env = {**SERVER_ENV, "VOXSERVE_API_KEYS": KEY}
    srv = start_server(tmp_path, env=env, headers={"Authorization": f"Bearer {KEY}"})
    try:
        with browser(srv.url) as b:
            b.page.goto(f"{srv.url}/ui/", wait_until="load")
            b.page.wait_for_selector("#api_key")
            assert b.page.query_selector("#speak-button") is None

            b.page.fill("#api_key", "not-the-key")
            b.page.click("#login")
            b.page.wait_for_selector("#login-error")

            b.page.fill("#api_key", KEY)
            b.page.click("#login")
            b.page.wait_for_selector("#speak-button", timeout=scaled_ms(60))
            assert b.page.url.rstrip("/").endswith("/ui")
            cookies = b.context.cookies(srv.url + "/ui/")
            assert [c["httpOnly"] for c in cookies if c["name"] == UI_COOKIE] == [True]
            old_cookie = {
                "Cookie": f"{UI_COOKIE}={next(c['value'] for c in cookies if c['name'] == UI_COOKIE)}"
            }
            assert (
                httpx.get(f"{srv.url}/ui/config", headers=old_cookie, timeout=scaled(30)).status_code == 200
            )

            # Gradio's own API calls (queue, streamed results) carry the session: speech plays.
            b.page.fill("#speak-text textarea", "Signed in with a key.")
            b.page.click("#speak-button")
            until(
                lambda: (
                    float(
                        b.page.evaluate(
                            "() => { const a = document.querySelector('#speak-audio audio');"
                            " return a && a.currentSrc ? a.currentTime : 0; }"
                        )
                    )
                    > 0
                ),
                45,
                0.1,
                message="the speech starts playing after signing in",
            )

            # Sign out: the sign-in form again, and the browser no longer holds the cookie.
            b.page.click("#signout")
            b.page.wait_for_selector("#api_key")
            assert b.page.url.rstrip("/").endswith("/ui")
            assert b.page.query_selector("#speak-button") is None
            assert [c for c in b.context.cookies(srv.url + "/ui/") if c["name"] == UI_COOKIE] == []
            b.page.goto(f"{srv.url}/ui/", wait_until="load")  # a later visit needs the key again
            b.page.wait_for_selector("#api_key")
            assert b.page.query_selector("#speak-button") is None

            # The server ended the session: the old cookie, replayed, opens nothing any more.
            for method, path in (
                ("GET", "/ui/config"),
                ("GET", "/ui/gradio_api/info"),
                ("POST", "/ui/gradio_api/queue/join"),
            ):
                r = httpx.request(method, srv.url + path, headers=old_cookie, json={}, timeout=scaled(30))
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (path, r.text)
            assert b.outside_requests == [], b.outside_requests
    finally:
        stop_server(srv)
