"""The one exception root of voxserve.

Every error a client can see is a :class:`VoxserveError`. Each subclass carries the HTTP status, the
WebSocket close code, the OpenAI error ``type`` and a stable machine-readable ``code``::

    VoxserveError                       500 server_error
    ├── InvalidRequest                  400 invalid_request_error   (bad JSON, empty_audio, ...)
    │   ├── UnknownVoice                404 unknown_voice
    │   ├── UnknownModel                404 model_not_found
    │   ├── UnknownJob                  404 unknown_job             (a speech job id)
    │   ├── RequestTimeout              408 request_timeout         (headers or body too slow)
    │   ├── Conflict                    409 (job_not_finished, job_failed, job_cancelled)
    │   ├── TextTooLong                 413 text_too_long           (also audio_too_long)
    │   ├── UnsupportedMediaType        415 unsupported_media_type  (an upload that is not audio)
    │   └── InvalidValue                422 (no_speakable_text, invalid_speed, unsupported_format,
    │                                        invalid_phonemes, unsupported_language, validation_error, ...)
    ├── RateLimited                     429 rate_limit_error        (too_many_jobs, job_storage_full)
    │                                                               — sends Retry-After
    ├── Unavailable                     503 (at_capacity, worker_unavailable) — sends Retry-After
    └── EngineFailure                   500 (worker_crashed, synthesis_failed, model_corrupt, ...)

Messages never contain stack traces or file-system paths: they are written for the client.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "EngineFailure",
    "InvalidRequest",
    "InvalidValue",
    "TextTooLong",
    "Unavailable",
    "OutputError",
    "RateLimited",
    "RequestTimeout",
    "UnknownJob",
    "UnknownModel",
    "UnknownVoice",
    "UnsupportedMediaType",
    "VoxserveError",
]


class VoxserveError(Exception):
    """Root of every error voxserve reports to a client."""

    status: ClassVar[int] = 500
    close_code: ClassVar[int] = 1011
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross the worker pipe; keyword-only arguments need an explicit pickle recipe.
        return (_rebuild, (type(self), self.message, self.code, self.param))


def _rebuild(cls: type[VoxserveError], message: str, code: str, param: str | None) -> VoxserveError:
    return cls(message, code=code, param=param)


class InvalidRequest(VoxserveError):
    """The request is malformed (400)."""

    status = 400
    close_code = 1008
    error_type = "invalid_request_error"
    default_code = "invalid_request"


class UnknownVoice(InvalidRequest):
    """The voice is not in the catalogue (404); never silently replaced."""

    status = 404
    default_code = "unknown_voice"


class UnknownModel(InvalidRequest):
    """The model id is not served here (404); nothing is ever downloaded."""

    status = 404
    default_code = "model_not_found"


class UnknownJob(InvalidRequest):
    """No speech job has this id (never had one, deleted, or expired) (404)."""

    status = 404
    default_code = "unknown_job"

    @classmethod
    def for_id(cls, job_id: str) -> UnknownJob:
        """The 404 for ``job_id``, naming at most its first 64 characters: a client's 100 KB path
        must not come back as a 100 KB error."""
        shown = repr(job_id[:64]) + ("..." if len(job_id) > 64 else "")
        return cls(f"no speech job {shown}; it may have expired", param="job_id")


class Conflict(InvalidRequest):
    """The resource is not in a state that allows the request, such as a job's audio before the job
    has succeeded (409)."""

    status = 409
    default_code = "conflict"


class RequestTimeout(InvalidRequest):
    """The request's headers or body did not arrive in time (408): a slow or stalled client."""

    status = 408
    default_code = "request_timeout"


class TextTooLong(InvalidRequest):
    """The input text or body is over its limit (413)."""

    status = 413
    close_code = 1009
    default_code = "text_too_long"


class UnsupportedMediaType(InvalidRequest):
    """The upload is not audio that can be decoded: text, an image, an archive, video only (415)."""

    status = 415
    close_code = 1003  # WebSocket "unsupported data"
    default_code = "unsupported_media_type"


class InvalidValue(InvalidRequest):
    """Well-formed but invalid values (422)."""

    status = 422
    default_code = "validation_error"


class RateLimited(VoxserveError):
    """The client has as much outstanding work as it may (429, ``Retry-After``; WebSocket 1013): for
    example ``max_jobs`` speech jobs already queued or running. Retry later; nothing is broken."""

    status = 429
    close_code = 1013
    error_type = "rate_limit_error"
    default_code = "rate_limited"
    retry_after_s: int = 30


class Unavailable(VoxserveError):
    """At capacity, or the worker is restarting (503, ``Retry-After``; WebSocket 1013)."""

    status = 503
    close_code = 1013
    default_code = "at_capacity"
    retry_after_s: int = 1


class EngineFailure(VoxserveError):
    """The engine failed or its worker died while serving the request."""

    status = 500
    default_code = "synthesis_failed"


class OutputError(EngineFailure):
    """The engine produced unusable output, such as all-silent audio for speakable text (502)."""

    status = 502
    default_code = "output_error"
