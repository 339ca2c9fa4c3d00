"""One place that turns exceptions into OpenAI-shaped error responses, and counts and logs them.

Every error response made here is counted in ``voxserve_http_errors_total{code,route,status}`` (the
route's path template; ``unmatched`` for a path no route serves). Server failures (5xx) are logged at
ERROR; a client's mistake with a voxserve error code (``model_not_found``, ``invalid_speed``, ...) at
INFO, at most once per 10 s per code and route, the next line saying how many were held back. A path
no route serves (404 ``not_found``) logs at DEBUG only: scanners would flood the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxserve.errors import InvalidRequest, InvalidValue, RateLimited, Unavailable, VoxserveError
from voxserve.observability import RepeatLimiter

__all__ = ["count_http_error", "count_request", "error_response", "install_error_handlers"]

_log = logging.getLogger("voxserve.api")

REPEAT_INTERVAL_S = 10.0
"""A client error with the same code on the same route is logged at most once per this many seconds."""

# A stable code for the fields whose validation failures clients branch on.
_PARAM_CODES = {
    "speed": "invalid_speed",
    "response_format": "unsupported_format",
    "stream_format": "unsupported_format",
    "input": "invalid_input",
    "voice": "invalid_voice",
    "model": "invalid_model",
    "messages": "invalid_messages",
}


def error_response(exc: VoxserveError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Unavailable | RateLimited) else None
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def _from_validation(exc: RequestValidationError) -> VoxserveError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if any(e.get("type") == "json_invalid" for e in errors):
        return InvalidRequest("the request body is not valid JSON", code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = loc[0] if loc else None
    if first.get("type") == "missing" and param is None:
        return InvalidRequest("the request body is missing", code="invalid_json")
    if first.get("type") == "extra_forbidden":
        return InvalidValue(f"unknown field {'.'.join(loc)!r}", code="unknown_field", param=param)
    if first.get("type") == "model_attributes_type":
        return InvalidRequest("the request body must be a JSON object", code="invalid_json")
    code = _PARAM_CODES.get(param or "", "validation_error")
    if first.get("type") == "missing":
        code = "missing_field"
    message = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid value')}"
    return InvalidValue(message, code=code, param=param)


def _route(scope: Mapping[str, Any]) -> str:
    # The path template of the route that matched: a bounded set of labels, whatever paths clients try.
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


def _metrics(scope: Mapping[str, Any]) -> Any:
    app = scope.get("app")
    vox = getattr(getattr(app, "state", None), "vox", None)
    return getattr(vox, "metrics", None)


def count_request(scope: Mapping[str, Any], status: int) -> None:
    """Count a response in ``voxserve_requests_total{route,status}`` (the route's path template)."""
    metrics = _metrics(scope)
    if metrics is not None:
        metrics.requests.labels(_route(scope), str(status)).inc()


def count_http_error(scope: Mapping[str, Any], status: int, code: str) -> None:
    """Count an error response in ``voxserve_http_errors_total`` (for error responses made outside
    these handlers too, such as the body-limit middleware's 413 and 408)."""
    metrics = _metrics(scope)
    if metrics is not None:
        metrics.http_errors.labels(code, _route(scope), str(status)).inc()


def install_error_handlers(app: FastAPI) -> None:
    repeats = RepeatLimiter(_log, REPEAT_INTERVAL_S)

    def client_error(request: Request, err: VoxserveError, status: int | None = None) -> None:
        status = status or err.status
        count_http_error(request.scope, status, err.code)
        route = _route(request.scope)
        message = err.message if len(err.message) <= 200 else err.message[:200] + "…"
        level = logging.DEBUG if route == "unmatched" else logging.INFO
        line = f"{request.method} {route}: {status} {err.code}: {message}"
        repeats.log((err.code, route), level, line)

    @app.exception_handler(VoxserveError)
    async def _voxserve(request: Request, exc: VoxserveError) -> JSONResponse:
        if exc.status >= 500:
            count_http_error(request.scope, exc.status, exc.code)
            _log.error("request failed: %s (%s)", exc.message, exc.code)
        else:
            client_error(request, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _from_validation(exc)
        client_error(request, err)
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        err = InvalidRequest(str(exc.detail), code=codes.get(exc.status_code, "http_error"))
        client_error(request, err, exc.status_code)
        return JSONResponse(err.to_dict(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Log the details here; the client gets no stack trace and no paths, only the request id
        # that finds the traceback in the server's log.
        request_id = getattr(request.state, "request_id", None)
        count_http_error(request.scope, 500, "internal_error")
        _log.exception("unexpected error (request id %s)", request_id)
        if request_id is None:
            return error_response(VoxserveError("internal server error"))
        response = error_response(VoxserveError(f"internal server error (request id {request_id})"))
        response.headers["X-Request-ID"] = str(request_id)
        return response
