"""One place that turns exceptions into OpenAI-shaped error responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxserve.errors import InvalidRequest, InvalidValue, RateLimited, Unavailable, VoxserveError

__all__ = ["error_response", "install_error_handlers"]

_log = logging.getLogger("voxserve.api")

# A stable code for the fields whose validation failures clients branch on.
_PARAM_CODES = {
    "speed": "invalid_speed",
    "response_format": "unsupported_format",
    "stream_format": "unsupported_format",
    "input": "invalid_input",
    "voice": "invalid_voice",
    "model": "invalid_model",
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VoxserveError)
    async def _voxserve(_: Request, exc: VoxserveError) -> JSONResponse:
        if exc.status >= 500:
            _log.error("request failed: %s (%s)", exc.message, exc.code)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_from_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        err = InvalidRequest(str(exc.detail), code=codes.get(exc.status_code, "http_error"))
        return JSONResponse(err.to_dict(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Log the details here; the client gets no stack trace and no paths, only the request id
        # that finds the traceback in the server's log.
        request_id = getattr(request.state, "request_id", None)
        _log.exception("unexpected error (request id %s)", request_id)
        if request_id is None:
            return error_response(VoxserveError("internal server error"))
        response = error_response(VoxserveError(f"internal server error (request id {request_id})"))
        response.headers["X-Request-ID"] = str(request_id)
        return response
