"""The exception root and its OpenAI-shaped envelope."""

from __future__ import annotations

import pickle

import pytest

from voxserve.errors import (
    Conflict,
    EngineFailure,
    InvalidRequest,
    InvalidValue,
    RateLimited,
    TextTooLong,
    Unavailable,
    UnknownJob,
    UnknownModel,
    UnknownVoice,
    VoxserveError,
)


@pytest.mark.parametrize(
    ("cls", "status", "code", "etype"),
    [
        (VoxserveError, 500, "internal_error", "server_error"),
        (InvalidRequest, 400, "invalid_request", "invalid_request_error"),
        (UnknownVoice, 404, "unknown_voice", "invalid_request_error"),
        (UnknownModel, 404, "model_not_found", "invalid_request_error"),
        (UnknownJob, 404, "unknown_job", "invalid_request_error"),
        (Conflict, 409, "conflict", "invalid_request_error"),
        (TextTooLong, 413, "text_too_long", "invalid_request_error"),
        (InvalidValue, 422, "validation_error", "invalid_request_error"),
        (Unavailable, 503, "at_capacity", "server_error"),
        (RateLimited, 429, "rate_limited", "rate_limit_error"),
        (EngineFailure, 500, "synthesis_failed", "server_error"),
    ],
)
def test_status_code_and_envelope(cls: type[VoxserveError], status: int, code: str, etype: str) -> None:
    err = cls("something is wrong", param="voice")
    assert isinstance(err, VoxserveError)
    assert err.status == status
    assert err.to_dict() == {
        "error": {"message": "something is wrong", "type": etype, "param": "voice", "code": code}
    }


def test_close_codes() -> None:
    assert Unavailable("x").close_code == 1013
    assert TextTooLong("x").close_code == 1009
    assert VoxserveError("x").close_code == 1011


def test_errors_survive_the_worker_pipe() -> None:
    err = InvalidValue("bad phonemes", code="invalid_phonemes", param="phonemes")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InvalidValue
    assert (back.message, back.code, back.param) == ("bad phonemes", "invalid_phonemes", "phonemes")
