"""A speech job as data: what it speaks (:class:`JobSpec`), how (:class:`JobEngine`), and its progress
(:class:`SpeechJob`), with the stored form of each (:class:`~voxserve.tts.jobstore.JobRecord`).

:mod:`voxserve.tts.jobs` runs them; this module only describes them, so the route, the runner and the
store share one definition.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxserve.audio.filewriter import writer_files
from voxserve.errors import Conflict, EngineFailure, VoxserveError
from voxserve.text.markup import Fragment
from voxserve.tts.jobstore import JobRecord

__all__ = ["EngineBuilder", "JobEngine", "JobSpec", "JobStatus", "SectionSynth", "SpeechJob"]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

SectionSynth = Callable[[tuple[Fragment, ...]], AsyncGenerator[bytes, None]]
"""Synthesize one section's fragments: s16le mono PCM at the jobs' sample rate, in pieces."""

_MAX_WARNINGS = 20
"""Warnings shown in a job object (the rest are counted in its logs)."""


@dataclass(frozen=True)
class JobEngine:
    """How a job's sections become audio: made by the route, or again by the builder after a restart."""

    plan: Callable[[str], tuple[Fragment, ...]]
    """A section's fragments (blocking: runs in a thread); empty when it has nothing to speak."""
    synthesize: SectionSynth


EngineBuilder = Callable[[Mapping[str, Any]], Awaitable[JobEngine]]
"""Make a job's :class:`JobEngine` from its stored ``request`` (used when a job resumes)."""


@dataclass(frozen=True)
class JobSpec:
    """What one job speaks and how (built by the route once the request is validated)."""

    sections: tuple[str, ...]
    """Consecutive slices of the input that join back into it."""
    response_format: str
    engine: JobEngine | None = None
    """None for a job read back from the store: the store's builder makes it from ``request``."""
    model: str = ""
    voice: str = ""
    """The voice id that speaks (shown in the job object)."""
    trailing_silence_s: float = 0.0
    warnings: tuple[str, ...] = ()
    """Look-alike markup tags removed from the text (shown in the job object)."""
    request: Mapping[str, Any] = field(default_factory=dict)
    """JSON: what the builder needs to make the engine again after a restart."""
    sample_rate: int = 0
    """Hz of the job's audio (0: the store's rate, filled in at submit)."""

    def to_json(self) -> dict[str, Any]:
        """Everything but the engine, as stored."""
        return {
            "sections": list(self.sections),
            "response_format": self.response_format,
            "model": self.model,
            "voice": self.voice,
            "trailing_silence_s": self.trailing_silence_s,
            "warnings": list(self.warnings),
            "request": dict(self.request),
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        """A stored spec (its engine is made when the job runs)."""
        return cls(
            sections=tuple(data["sections"]),
            response_format=data["response_format"],
            model=data.get("model", ""),
            voice=data.get("voice", ""),
            trailing_silence_s=float(data.get("trailing_silence_s", 0.0)),
            warnings=tuple(data.get("warnings", ())),
            request=dict(data.get("request", {})),
            sample_rate=int(data["sample_rate"]),
        )


@dataclass(eq=False)
class SpeechJob:
    """One job and its progress. Read it; only :class:`SpeechJobs` changes it."""

    id: str
    spec: JobSpec
    path: Path
    created_at: int
    """Unix time, seconds."""
    input_chars: int
    status: JobStatus = "queued"
    chars_done: int = 0
    """Input characters synthesized (and written), section by section."""
    audio_seconds: float = 0.0
    error: VoxserveError | None = None
    size_bytes: int | None = None
    """The file's size, once the job has succeeded."""
    finished_at: int | None = None
    owner: str | None = None
    """The principal (API key) that created the job; every other key gets a 404 for it."""
    file_bytes: int = 0
    """Bytes in the job's files so far (counted against ``max_storage_bytes``)."""
    ended: float | None = None
    """When the job ended, on the store's clock (for expiry)."""
    sections_done: int = 0
    """Sections whose audio is durable."""
    pcm_bytes: int = 0
    """PCM bytes of those sections."""
    crashes: int = 0
    """Server crashes while this job was running."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ("queued", "running")

    def to_dict(self, ttl_s: float) -> dict[str, Any]:
        """The ``speech.job`` object of the API."""
        return {
            "id": self.id,
            "object": "speech.job",
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "expires_at": None if self.finished_at is None else self.finished_at + round(ttl_s),
            "model": self.spec.model,
            "voice": self.spec.voice,
            "response_format": self.spec.response_format,
            "input_chars": self.input_chars,
            "chars_done": self.chars_done,
            "audio_seconds": round(self.audio_seconds, 3),
            "bytes": self.size_bytes,
            "warnings": list(self.spec.warnings[:_MAX_WARNINGS]),
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message},
        }

    def check_audio(self) -> Path:
        """The file of a succeeded job; 409 otherwise (``job_not_finished``, ``job_failed``,
        ``job_cancelled``)."""
        if self.status == "succeeded":
            return self.path
        if self.active:
            raise Conflict(
                f"job {self.id} is {self.status} ({self.chars_done} of {self.input_chars} characters done); "
                "its audio is ready when its status is succeeded",
                code="job_not_finished",
            )
        if self.status == "failed":
            detail = f": {self.error.message}" if self.error is not None else ""
            raise Conflict(f"job {self.id} failed{detail}", code="job_failed")
        raise Conflict(f"job {self.id} was cancelled", code="job_cancelled")

    def record(self) -> JobRecord:
        """The job as the store keeps it."""
        return JobRecord(
            id=self.id,
            owner=self.owner,
            status=self.status,
            created_at=self.created_at,
            spec=self.spec.to_json(),
            sections_done=self.sections_done,
            chars_done=self.chars_done,
            pcm_bytes=self.pcm_bytes,
            finished_at=self.ended,
            size_bytes=self.size_bytes,
            error_code=None if self.error is None else self.error.code,
            error_message=None if self.error is None else self.error.message,
            crashes=self.crashes,
        )

    @classmethod
    def from_record(cls, record: JobRecord, directory: Path) -> SpeechJob:
        """A job read back from the store."""
        spec = JobSpec.from_json(record.spec)
        status: JobStatus = record.status  # type: ignore[assignment]  # written by record()
        error: VoxserveError | None = None
        if record.error_code is not None:
            error = EngineFailure(record.error_message or "", code=record.error_code)
        return cls(
            id=record.id,
            spec=spec,
            path=directory / f"{record.id}.{spec.response_format}",
            created_at=record.created_at,
            input_chars=sum(len(s) for s in spec.sections),
            status=status,
            chars_done=record.chars_done,
            audio_seconds=record.pcm_bytes / 2 / spec.sample_rate,
            error=error,
            size_bytes=record.size_bytes,
            finished_at=None if record.finished_at is None else int(record.finished_at),
            owner=record.owner,
            ended=record.finished_at,
            sections_done=record.sections_done,
            pcm_bytes=record.pcm_bytes,
            crashes=record.crashes,
        )

    def files(self) -> list[Path]:
        """Every file this job may own: the final file, its spool and the encoder's temporary file."""
        return list(writer_files(self.path))
