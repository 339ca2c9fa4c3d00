"""Speech jobs (``/v1/audio/speech/jobs``), sans I/O: long texts spoken into a file by the server.

The routes are functions as in :mod:`.routes`; :class:`JobWait` is the polling loop's logic (the
front end fetches the job and sleeps as it says).
"""

from __future__ import annotations

import os
from typing import IO, Any, TypeAlias

from voxserve.client.errors import ClientError
from voxserve.client.protocol.http import Call, Passthrough, Request, StreamCall, content, json_object
from voxserve.client.protocol.routes import speech_body

__all__ = [
    "JOBS_PATH",
    "JOB_POLL_S",
    "FileTarget",
    "JobWait",
    "create_speech_job",
    "delete_speech_job",
    "get_speech_job",
    "list_speech_jobs",
    "speech_job_audio",
    "speech_job_download",
    "wait_speech_job",
]

JOBS_PATH = "/v1/audio/speech/jobs"
JOB_POLL_S = 1.0
"""Default interval between two polls of a speech job's status."""
DOWNLOAD_CHUNK_BYTES = 256 * 1024

FileTarget: TypeAlias = str | os.PathLike[str] | IO[bytes]
"""Where a download goes: a path (created or truncated) or a binary file object."""


def create_speech_job(
    text: str,
    *,
    voice: str = "alloy",
    model: str = "tts-1",
    response_format: str = "mp3",
    speed: float = 1.0,
    idempotency_key: str | None = None,
    **extra: Any,
) -> Call[dict[str, Any]]:
    """``POST /v1/audio/speech/jobs``: queue a long text (up to the server's ``max_job_chars``) to be
    spoken into a file; the ``speech.job`` object (``id``, ``status``, ...). Everything is validated
    before it is accepted (``unknown_voice``, ``no_speakable_text``, ``too_many_jobs``, ...).
    ``idempotency_key`` (a UUID, say): sending the same request again with the same key within 24 h
    returns the job the first one made, so a retry after a timeout never starts a second job
    (``idempotency_conflict`` if the key came with another request).
    ``extra``: more fields (``volume_multiplier``, ``normalization_options``, ``markup``)."""
    body = speech_body(text, voice, model, response_format, speed, extra=extra)
    headers = None if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    return Call(Request("POST", JOBS_PATH, json=body, headers=headers), json_object)


def get_speech_job(job_id: str) -> Call[dict[str, Any]]:
    """``GET /v1/audio/speech/jobs/{id}``: status and progress (``chars_done`` of ``input_chars``)."""
    return Call(Request("GET", f"{JOBS_PATH}/{job_id}"), json_object)


def list_speech_jobs() -> Call[list[dict[str, Any]]]:
    """``GET /v1/audio/speech/jobs``: every job the server still holds, oldest first."""
    return Call(Request("GET", JOBS_PATH), lambda r: json_object(r)["data"])


def speech_job_audio(job_id: str) -> Call[bytes]:
    """``GET /v1/audio/speech/jobs/{id}/audio``: the finished file, in memory (``job_not_finished``
    until it has succeeded). For long jobs prefer :meth:`download_speech_job`."""
    return Call(Request("GET", f"{JOBS_PATH}/{job_id}/audio"), content)


def speech_job_download(job_id: str) -> StreamCall[bytes]:
    """The finished file's bytes, streamed (for :meth:`download_speech_job`)."""
    return StreamCall(Request("GET", f"{JOBS_PATH}/{job_id}/audio"), Passthrough, DOWNLOAD_CHUNK_BYTES)


def delete_speech_job(job_id: str) -> Call[dict[str, Any]]:
    """``DELETE /v1/audio/speech/jobs/{id}``: cancel it if it is still running, delete its file;
    the job as it ended, with ``"deleted": true``."""
    return Call(Request("DELETE", f"{JOBS_PATH}/{job_id}"), json_object)


def outcome(job: dict[str, Any]) -> dict[str, Any] | None:
    """The job if it succeeded, None while it is queued or running; raises if it failed or was
    cancelled (with the job's own error code, such as ``synthesis_failed``)."""
    status = job.get("status")
    if status == "succeeded":
        return job
    if status in ("queued", "running"):
        return None
    error = job.get("error") or {}
    code = str(error.get("code") or f"job_{status}")
    message = str(error.get("message") or f"the job is {status}")
    raise ClientError(f"speech job {job.get('id')} {status}: {message}", code=code)


class JobWait:
    """Polling one job until it has succeeded, without the fetching and the sleeping."""

    def __init__(self, job_id: str, max_wait_s: float | None, poll_interval_s: float) -> None:
        self.job_id = job_id
        self.max_wait_s = max_wait_s
        self.poll_interval_s = poll_interval_s
        self.deadline: float | None = None
        self.job: dict[str, Any] = {}
        """The job, once it has succeeded."""

    def start(self, now: float) -> None:
        """The wait begins (``now``: a monotonic clock, in seconds), before the first fetch."""
        self.deadline = None if self.max_wait_s is None else now + self.max_wait_s

    def next(self, job: dict[str, Any], now: float) -> float | None:
        """Take the job as just fetched at ``now``: ``None`` once it
        has succeeded (see :attr:`job`), else how long to sleep before fetching it again.

        Raises :class:`ClientError`: the job's own code when it failed or was cancelled, ``timeout``
        when ``max_wait_s`` has passed (the job goes on)."""
        done = outcome(job)
        if done is not None:
            self.job = done
            return None
        if self.deadline is None:
            return self.poll_interval_s
        if now >= self.deadline:
            raise ClientError(
                f"speech job {self.job_id} did not finish within {self.max_wait_s or 0.0:g} s", code="timeout"
            )
        return min(self.poll_interval_s, max(self.deadline - now, 0))


def wait_speech_job(
    job_id: str, *, max_wait_s: float | None = None, poll_interval_s: float = JOB_POLL_S
) -> JobWait:
    """Poll the job until it has succeeded and return it. A failed or cancelled job raises
    :class:`ClientError` with the job's error code; ``max_wait_s`` without an end raises
    ``code="timeout"`` (the job goes on: wait again, or delete it)."""
    return JobWait(job_id, max_wait_s, poll_interval_s)
