"""API keys and WebSocket origins, checked by one ASGI middleware in front of every route.

:class:`SecurityMiddleware` wraps the whole app (routes, WebSockets and the Gradio UI mounted at
``/ui``), so no route can forget to ask for a key. It runs for every HTTP request and every WebSocket
handshake, before any route code:

* **Origin** (WebSockets, always on): a handshake with an ``Origin`` header is refused (HTTP 403,
  ``origin_not_allowed``) unless the origin is the server's own host or listed in
  ``ws_allowed_origins`` (``*``: any). Clients that are not browsers send no ``Origin`` and pass.
* **API keys** (when ``api_keys`` is set): every path except :data:`EXEMPT_PATHS` (``/health``) needs
  one of the keys, as ``Authorization: Bearer <key>``; a WebSocket may instead offer the subprotocol
  ``openai-insecure-api-key.<key>`` (what OpenAI's Realtime API uses from browsers); a browser on the
  UI logs in once on a small form and then carries an ``HttpOnly`` cookie scoped to ``/ui``, until it
  signs out (``POST /ui/signout``, which ends that session on the server). Missing or wrong: HTTP 401
  ``invalid_api_key`` with ``WWW-Authenticate: Bearer``; a WebSocket handshake is answered with that
  same 401 response instead of being accepted.

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every configured key
with no early exit, so timing tells nothing about the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxserve.api.errors import count_http_error, count_request
from voxserve.api.transport import mark_refused_handshake
from voxserve.config import Settings
from voxserve.errors import InvalidRequest, VoxserveError
from voxserve.ui import SIGNOUT_SUFFIX

__all__ = [
    "EXEMPT_PATHS",
    "KEY_SUBPROTOCOL_PREFIX",
    "LOGIN_SUFFIX",
    "SIGNOUT_SUFFIX",
    "UI_COOKIE",
    "ForbiddenOrigin",
    "KeyRing",
    "SecurityMiddleware",
    "Unauthorized",
    "install_security",
    "origin_allowed",
    "request_principal",
]

EXEMPT_PATHS = frozenset({"/health"})
"""Paths served without a key: liveness only (it says "ok" and nothing else)."""

KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
"""A WebSocket subprotocol ``<prefix><key>`` carries the key from a browser (which cannot set headers)."""

UI_COOKIE = "voxserve_ui_session"
LOGIN_SUFFIX = "/auth"
"""The UI's login form posts here (``/ui/auth``); answered by the middleware, never by a route."""

_MAX_LOGIN_BODY = 4096
MAX_UI_SESSIONS = 10_000
"""UI sessions kept at most; signing in past that ends the oldest. Only a valid key can sign in, so
this bounds memory against a script that signs in in a loop, not against strangers."""

# Response headers a browser page on an allowed origin may read.
_EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Voxserve-Voice",
    "X-Voxserve-Ignored",
    "X-Processing-Time-Ms",
    "X-Audio-Sample-Rate",
    "X-Audio-Channels",
    "X-Audio-Bits-Per-Sample",
    "X-Audio-Encoding",
]


def install_security(app: Starlette, settings: Settings, ui_path: str | None) -> None:
    """Add the security middleware and, outside it, CORS, to a Starlette/FastAPI ``app``.

    CORS is always installed, with ``cors_allow_origins`` (empty by default: no ``Access-Control-*``
    header is ever sent, and preflights are refused with 400). Installing it also stops the mounted
    Gradio app from adding its own, permissive CORS headers (it defers to a parent's
    ``CORSMiddleware``). It sits outside the key check so preflights, which carry no key, are
    answered, and so an allowed page can read a 401.
    """
    app.add_middleware(
        SecurityMiddleware,
        api_keys=settings.api_keys,
        ws_allowed_origins=settings.ws_allowed_origins,
        ui_path=ui_path,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=_EXPOSED_HEADERS if settings.cors_allow_origins else [],
        allow_credentials=False,
    )


class Unauthorized(InvalidRequest):
    """No API key, or a wrong one (401; at a WebSocket handshake, the same 401 response)."""

    status = 401
    close_code = 1008
    default_code = "invalid_api_key"


class ForbiddenOrigin(InvalidRequest):
    """A WebSocket handshake from a web page whose origin is not allowed (403)."""

    status = 403
    close_code = 1008
    default_code = "origin_not_allowed"


class KeyRing:
    """The configured keys as digests, and the UI's sign-in sessions."""

    def __init__(self, keys: Iterable[str], max_sessions: int = MAX_UI_SESSIONS) -> None:
        keys = list(keys)
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        # A UI session is a random token, not derived from the key: it can be ended on its own (sign
        # out) while the key stays valid. Only SHA-256 digests of the tokens are kept, in sign-in order
        # (the oldest is ended first), in this process's memory: a restart ends every session.
        self._sessions: dict[bytes, str] = {}
        self._max_sessions = max_sessions

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, candidate: str | None) -> str | None:
        """The principal of key ``candidate`` (a fingerprint, never the key), or None if it is no key.

        Every configured key is compared, with no early exit, so timing tells nothing about the keys.
        """
        if candidate is None:
            return None
        digest = hashlib.sha256(candidate.encode()).digest()
        found: bytes | None = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                found = known
        return None if found is None else _principal(found)

    def check(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is one of the keys."""
        return self.identify(candidate) is not None

    def cookie_for(self, key: str) -> str:
        """Start a UI session for ``key`` (which must be valid): the cookie value, a random token."""
        principal = self.identify(key)
        if principal is None:
            raise ValueError("not a configured key")
        token = secrets.token_bytes(32)
        self._sessions[hashlib.sha256(token).digest()] = principal
        while len(self._sessions) > self._max_sessions:
            del self._sessions[next(iter(self._sessions))]
        return token.hex()

    @staticmethod
    def _session_digest(value: str | None) -> bytes | None:
        if value is None:
            return None
        try:
            return hashlib.sha256(bytes.fromhex(value)).digest()
        except ValueError:
            return None

    def session_principal(self, value: str | None) -> str | None:
        """The principal of the UI session whose cookie is ``value``, if that session has not ended."""
        # A dict lookup, not compare_digest: what is looked up is the SHA-256 of the token sent, which
        # the sender cannot steer towards a stored digest, so the lookup's timing tells nothing.
        digest = self._session_digest(value)
        return None if digest is None else self._sessions.get(digest)

    def check_cookie(self, value: str | None) -> bool:
        """Whether ``value`` is the cookie of a session that has not ended."""
        return self.session_principal(value) is not None

    def end_session(self, value: str | None) -> bool:
        """End the session of cookie ``value``; whether there was one."""
        digest = self._session_digest(value)
        if digest is None or digest not in self._sessions:
            return False
        del self._sessions[digest]
        return True


def _principal(key_digest: bytes) -> str:
    """A key's principal: 16 hex digits of a hash of its digest (names it in logs and job owners)."""
    return hashlib.sha256(b"voxserve-principal:" + key_digest).hexdigest()[:16]


def request_principal(state: object) -> str | None:
    """The principal :class:`SecurityMiddleware` put on a request's ``state`` (None without keys)."""
    value = getattr(state, "principal", None)
    return value if isinstance(value, str) else None


_DEFAULT_PORTS = {"http": ":80", "ws": ":80", "https": ":443", "wss": ":443"}


def _netloc(netloc: str, scheme: str) -> str:
    netloc = netloc.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return netloc


def origin_allowed(origin: str | None, host: str | None, scheme: str, allowed: Iterable[str]) -> bool:
    """Whether a WebSocket handshake's ``Origin`` may connect: none (not a browser), the request's
    own host (default ports aside; the scheme may differ behind a TLS-terminating proxy), a listed
    origin, or anything when ``*`` is listed."""
    if origin is None:
        return True
    allowed = set(allowed)
    normalized = origin.strip().rstrip("/").lower()
    if "*" in allowed or normalized in allowed:
        return True
    parts = urlsplit(normalized)
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False  # "null" (sandboxed frames, file: pages) and anything odd
    return _netloc(parts.netloc, parts.scheme) == _netloc(host, scheme)


def _headers(scope: Scope) -> dict[str, str]:
    # The last value wins for repeated headers; none of the headers read here may be repeated.
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _offered_subprotocols(scope: Scope) -> list[str]:
    return [str(p) for p in scope.get("subprotocols", [])]


def _choose_subprotocol(offered: list[str]) -> str | None:
    """The subprotocol to answer with when the route chose none: browsers fail a handshake that
    offers subprotocols and gets none back. The first one that is not a key; else the key itself
    (the client sent it, so echoing it reveals nothing)."""
    plain = [p for p in offered if not p.startswith(KEY_SUBPROTOCOL_PREFIX)]
    if plain:
        return plain[0]
    return offered[0] if offered else None


class SecurityMiddleware:
    """Origin check for WebSocket handshakes; API keys for everything but :data:`EXEMPT_PATHS`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: Iterable[str] = (),
        ws_allowed_origins: Iterable[str] = (),
        ui_path: str | None = None,
    ) -> None:
        self.app = app
        self.keys = KeyRing(api_keys)
        self.ws_allowed_origins = frozenset(ws_allowed_origins)
        self.ui_path = ui_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # lifespan
            await self.app(scope, receive, send)

    # --- shared --------------------------------------------------------------------------------------

    def _in_ui(self, path: str) -> bool:
        return self.ui_path is not None and (path == self.ui_path or path.startswith(self.ui_path + "/"))

    def _authenticated(self, scope: Scope, headers: dict[str, str]) -> bool:
        """Whether the request carries a key; its principal goes to ``request.state.principal``."""
        if not self.keys or scope["path"] in EXEMPT_PATHS:
            return True
        principal = self.keys.identify(_bearer(headers))
        if scope["type"] == "websocket":
            for proto in _offered_subprotocols(scope):
                if proto.startswith(KEY_SUBPROTOCOL_PREFIX):
                    principal = principal or self.keys.identify(proto[len(KEY_SUBPROTOCOL_PREFIX) :])
        if self._in_ui(scope["path"]):
            principal = principal or self.keys.session_principal(_ui_cookie(headers))
        if principal is None:
            return False
        # Stored resources (speech jobs) belong to the key that made them: another key sees a 404.
        scope.setdefault("state", {})["principal"] = principal
        return True

    # --- WebSocket -----------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        scheme = str(scope.get("scheme", "ws"))
        if not origin_allowed(headers.get("origin"), headers.get("host"), scheme, self.ws_allowed_origins):
            err: VoxserveError = ForbiddenOrigin("this origin may not open WebSockets on this server")
            await _deny_websocket(scope, send, err)
            return
        if not self._authenticated(scope, headers):
            await _deny_websocket(scope, send, Unauthorized(_missing_key_message()))
            return
        offered = _offered_subprotocols(scope)

        async def send_choosing_subprotocol(message: Message) -> None:
            if message["type"] == "websocket.accept" and offered and not message.get("subprotocol"):
                message = {**message, "subprotocol": _choose_subprotocol(offered)}
            await send(message)

        await self.app(scope, receive, send_choosing_subprotocol if offered else send)

    # --- HTTP ------------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        path: str = scope["path"]
        if self.keys and self.ui_path is not None and path == self.ui_path + LOGIN_SUFFIX:
            await self._login(scope, receive, send)
            return
        if self.keys and self.ui_path is not None and path == self.ui_path + SIGNOUT_SUFFIX:
            await self._signout(scope, headers, send)
            return
        if self._authenticated(scope, headers):
            await self.app(scope, receive, send)
            return
        page_load = scope["method"] in ("GET", "HEAD") and "text/html" in headers.get("accept", "")
        if self._in_ui(path) and page_load:
            await _send_login_page(scope, send, self.ui_path or "", failed=False)
            return
        await _send_json(
            scope, send, Unauthorized(_missing_key_message()), [(b"www-authenticate", b"Bearer")]
        )

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /ui/auth`` with ``api_key=<key>`` (the login form): 303 to the UI with the session
        cookie, or the form again (401) with a message."""
        ui_path = self.ui_path or ""
        if scope["method"] != "POST":
            await _send_login_page(scope, send, ui_path, failed=False)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > _MAX_LOGIN_BODY:
                await _send_login_page(scope, send, ui_path, failed=True)
                return
            if not message.get("more_body", False):
                break
        fields = parse_qs(body.decode("utf-8", "replace"))
        key = (fields.get("api_key") or [""])[0].strip()
        if not key or not self.keys.check(key):
            await _send_login_page(scope, send, ui_path, failed=True)
            return
        await _send_to_ui(send, _cookie_header(scope, ui_path, self.keys.cookie_for(key)))

    async def _signout(self, scope: Scope, headers: dict[str, str], send: Send) -> None:
        """``POST /ui/signout`` (the UI's "Sign out" form): end the session on the server, expire the
        cookie, and 303 to the UI (which shows the sign-in form again).

        Only POST (a link or an image cannot sign anyone out), and only from the server's own pages:
        browsers send ``Origin`` (and ``Sec-Fetch-Site``) with a form's POST, and a cross-site one is
        refused with 403. The cookie is ``SameSite=Lax`` too, so another site's form would not even
        carry it.
        """
        if scope["method"] != "POST":
            await _send_json(
                scope,
                send,
                MethodNotAllowed("sign out with POST (the UI's Sign out button)"),
                [(b"allow", b"POST")],
            )
            return
        scheme = str(scope.get("scheme", "http"))
        same_origin = origin_allowed(headers.get("origin"), headers.get("host"), scheme, ())
        if not same_origin or headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            await _send_json(scope, send, ForbiddenOrigin("sign out from this server's own page"), [])
            return
        self.keys.end_session(_ui_cookie(headers))
        await _send_to_ui(send, _cookie_header(scope, self.ui_path or "", "", expire=True))


class MethodNotAllowed(InvalidRequest):
    """A method the route does not take (405)."""

    status = 405
    default_code = "method_not_allowed"


def _ui_cookie(headers: dict[str, str]) -> str | None:
    """The value of the UI's session cookie in a request's ``Cookie`` header, if any."""
    if "cookie" not in headers:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers["cookie"])
    except Exception:  # a malformed Cookie header is simply no cookie
        return None
    morsel = cookie.get(UI_COOKIE)
    return morsel.value if morsel is not None else None


def _cookie_header(scope: Scope, ui_path: str, value: str, *, expire: bool = False) -> str:
    """``Set-Cookie`` for the UI's session: ``value``, or (``expire``) gone at once."""
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    expiry = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" if expire else ""
    return (
        f"{UI_COOKIE}={value}; Path={scope.get('root_path', '')}{ui_path}{expiry}; "
        f"HttpOnly; SameSite=Lax{secure}"
    )


async def _send_to_ui(send: Send, set_cookie: str) -> None:
    """303 to the UI (``./`` from ``/ui/auth`` or ``/ui/signout``), setting the session cookie."""
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", b"./"),
                (b"set-cookie", set_cookie.encode("latin-1")),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _missing_key_message() -> str:
    return "a valid API key is required: send the header 'Authorization: Bearer <key>'"


async def _send_json(scope: Scope, send: Send, err: VoxserveError, extra: list[tuple[bytes, bytes]]) -> None:
    count_request(scope, err.status)
    count_http_error(scope, err.status, err.code)
    body = json.dumps(err.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _deny_websocket(scope: Scope, send: Send, err: VoxserveError) -> None:
    """Refuse a handshake: an HTTP response (401/403 with the error JSON) where the server can send
    one, else a close before accepting (which servers answer with HTTP 403)."""
    mark_refused_handshake()
    count_http_error(scope, err.status, err.code)
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps(err.to_dict()).encode()
        extra = [(b"www-authenticate", b"Bearer")] if isinstance(err, Unauthorized) else []
        await send(
            {
                "type": "websocket.http.response.start",
                "status": err.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": err.close_code, "reason": err.message[:120]})


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>voxserve: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
input,button{{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>voxserve</h1><p>This server needs an API key.</p>{error}
<form method="post" action="{action}">
<label for="api_key">API key</label>
<input id="api_key" name="api_key" type="password" autocomplete="current-password" required autofocus>
<button id="login" type="submit">Sign in</button>
</form></body></html>
"""


async def _send_login_page(scope: Scope, send: Send, ui_path: str, *, failed: bool) -> None:
    action = html.escape(f"{scope.get('root_path', '')}{ui_path}{LOGIN_SUFFIX}", quote=True)
    error = '<p class="error" id="login-error">That key is not valid.</p>' if failed else ""
    body = _LOGIN_PAGE.format(action=action, error=error).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    if scope.get("method") != "HEAD":
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.body", "body": b""})
