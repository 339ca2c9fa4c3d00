"""Where speech jobs are kept across restarts: a small store interface and its SQLite implementation.

A speech job can run for hours, so its record must outlive the process: :class:`SpeechJobs
<voxserve.tts.jobs.SpeechJobs>` writes each job here before it answers 202, after every section it
has made durable (``sections_done``, ``pcm_bytes``), and when it ends. On start-up it reads the
records back and resumes what was running.

:class:`JobStore` is the seam: today one implementation, :class:`SqliteJobStore` (stdlib ``sqlite3``
in WAL mode, one file ``jobs.db`` in the jobs folder), owned by exactly one server process through an
exclusive lock on ``jobs.lock``. A second server pointed at the same folder is refused (its job routes
answer 503 ``job_store_unavailable``) instead of both resuming the same jobs. A store shared by
several front ends (a database server) would implement the same Protocol.

Every method blocks (file I/O, fsync): call them from a thread. They are safe to call from several
threads; each raises :class:`JobStoreError` when the store cannot do what was asked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from voxserve.errors import Unavailable

__all__ = [
    "DB_NAME",
    "LOCK_NAME",
    "SCHEMA_VERSION",
    "IdempotencyRecord",
    "JobRecord",
    "JobStore",
    "JobStoreError",
    "SqliteJobStore",
    "store_files",
]

DB_NAME = "jobs.db"
LOCK_NAME = "jobs.lock"
SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the database this code writes; a newer one is refused, never rewritten."""


class JobStoreError(Unavailable):
    """The job store cannot be used (corrupt, newer, locked by another server, disk full, ...)."""

    default_code = "job_store_unavailable"


@dataclass
class JobRecord:
    """One job as stored: its request, owner, status and durable progress."""

    id: str
    owner: str | None
    """The principal (a hash of the API key, never the key); None on a server without keys."""
    status: str
    created_at: int
    """Unix time, seconds."""
    spec: dict[str, Any]
    """What the job speaks and how (JSON): sections, format, model, voice, request, ..."""
    sections_done: int = 0
    """Sections whose audio is durable in the job's spool file."""
    chars_done: int = 0
    pcm_bytes: int = 0
    """PCM bytes of those sections (the spool is cut back to this length on resume)."""
    finished_at: float | None = None
    """Unix time the job ended (succeeded, failed or cancelled); expiry counts from it."""
    size_bytes: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    crashes: int = 0
    """Times the server stopped without a goodbye while this job was running (a poison job's count)."""


@dataclass(frozen=True)
class IdempotencyRecord:
    """An ``Idempotency-Key`` seen from one owner: the hash of the body it came with and its job."""

    body_hash: str
    job_id: str
    created_at: float


class JobStore(Protocol):
    """Durable job records. Blocking; thread-safe; raises :class:`JobStoreError`."""

    def load(self) -> list[JobRecord]:
        """Every record, oldest first."""
        ...

    def add(self, record: JobRecord, idempotency_key: str | None = None, body_hash: str = "") -> None:
        """Store a new job (and its owner's idempotency key, in the same transaction)."""
        ...

    def update(self, record: JobRecord) -> None:
        """Write a record's status, progress, result and crash count."""
        ...

    def remove(self, job_ids: Sequence[str]) -> None:
        """Forget these jobs (and the idempotency keys that point at them)."""
        ...

    def idempotency(self, owner: str | None, key: str) -> IdempotencyRecord | None:
        """What ``key`` of ``owner`` was used for, if it was."""
        ...

    def forget_idempotency(self, owner: str | None, key: str) -> None:
        """Free one key (its job is gone)."""
        ...

    def expire_idempotency(self, before: float) -> int:
        """Forget keys used before ``before`` (Unix time); return how many."""
        ...

    def size_bytes(self) -> int:
        """Bytes the store's own files take in the jobs folder (counted with the job files)."""
        ...

    def close(self) -> None:
        """Release the store (and its lock)."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    spec TEXT NOT NULL,
    sections_done INTEGER NOT NULL DEFAULT 0,
    chars_done INTEGER NOT NULL DEFAULT 0,
    pcm_bytes INTEGER NOT NULL DEFAULT 0,
    finished_at REAL,
    size_bytes INTEGER,
    error_code TEXT,
    error_message TEXT,
    crashes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
"""

_PROGRESS = (
    "status",
    "sections_done",
    "chars_done",
    "pcm_bytes",
    "finished_at",
    "size_bytes",
    "error_code",
    "error_message",
    "crashes",
)
"""The columns :meth:`SqliteJobStore.update` writes (the others never change)."""
_FIXED = ("id", "owner", "created_at", "spec")
_COLUMNS = ", ".join(_FIXED + _PROGRESS)


def _owner(owner: str | None) -> str:
    # '' for "no key": NULLs are all distinct in a primary key, so they would never collide.
    return owner or ""


@dataclass
class SqliteJobStore:
    """:class:`JobStore` in ``directory/jobs.db`` (created if missing), locked to this process.

    Opening it raises :class:`JobStoreError` with a message for the operator when the folder is used
    by another server, the file is not a database (corrupt), or it was written by a newer voxserve.
    """

    directory: Path
    _lock_file: IO[str] | None = field(default=None, init=False, repr=False)
    _db: sqlite3.Connection | None = field(default=None, init=False, repr=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._lock_file = self._take_lock()
        try:
            self._db = self._open()
        except BaseException:
            self.close()
            raise

    # --- opening ------------------------------------------------------------------------------------

    def _take_lock(self) -> IO[str]:
        path = self.directory / LOCK_NAME
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the store's life
        except OSError as exc:
            raise JobStoreError(f"cannot open the jobs folder's lock file: {exc.strerror}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise JobStoreError(
                f"the jobs folder is in use by another voxserve server (pid {holder}); give each server "
                "its own VOXSERVE_JOBS_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _open(self) -> sqlite3.Connection:
        path = self.directory / DB_NAME
        try:
            # Autocommit mode; transactions are explicit (BEGIN IMMEDIATE) where several rows change.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        except sqlite3.Error as exc:
            raise JobStoreError(f"cannot open the job store: {exc}") from None
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JobStoreError(
                    f"the job store was written by a newer voxserve (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade voxserve or point VOXSERVE_JOBS_DIR elsewhere"
                )
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a crash of the process (not always a power cut);
            # the spool file a commit describes is fsynced before it.
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise JobStoreError(f"the job store is corrupt ({check}); move {DB_NAME} away to start again")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except JobStoreError:
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            raise JobStoreError(
                f"the job store cannot be read ({exc}); it is corrupt or not a voxserve job store: move "
                f"{DB_NAME} away to start afresh"
            ) from None
        return db

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if self._db is None:
                raise JobStoreError("the job store is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise JobStoreError(f"the job store failed: {exc}") from None

    # --- JobStore -----------------------------------------------------------------------------------

    def load(self) -> list[JobRecord]:
        with self._conn() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY created_at, rowid").fetchall()
        return [_record(row) for row in rows]

    def add(self, record: JobRecord, idempotency_key: str | None = None, body_hash: str = "") -> None:
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIXED + _PROGRESS))})",
                _row(record),
            )
            if idempotency_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency (owner, key, body_hash, job_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (_owner(record.owner), idempotency_key, body_hash, record.id, float(record.created_at)),
                )
            db.execute("COMMIT")

    def update(self, record: JobRecord) -> None:
        with self._conn() as db:
            db.execute(
                f"UPDATE jobs SET {', '.join(f'{name}=?' for name in _PROGRESS)} WHERE id=?",
                (*_progress(record), record.id),
            )

    def remove(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in job_ids])
            db.executemany("DELETE FROM idempotency WHERE job_id=?", [(i,) for i in job_ids])
            db.execute("COMMIT")

    def idempotency(self, owner: str | None, key: str) -> IdempotencyRecord | None:
        with self._conn() as db:
            row = db.execute(
                "SELECT body_hash, job_id, created_at FROM idempotency WHERE owner=? AND key=?",
                (_owner(owner), key),
            ).fetchone()
        return None if row is None else IdempotencyRecord(row[0], row[1], row[2])

    def forget_idempotency(self, owner: str | None, key: str) -> None:
        with self._conn() as db:
            db.execute("DELETE FROM idempotency WHERE owner=? AND key=?", (_owner(owner), key))

    def expire_idempotency(self, before: float) -> int:
        with self._conn() as db:
            return db.execute("DELETE FROM idempotency WHERE created_at < ?", (before,)).rowcount

    def size_bytes(self) -> int:
        total = 0
        for name in store_files():
            with contextlib.suppress(OSError):
                total += (self.directory / name).stat().st_size
        return total

    def close(self) -> None:
        with self._mutex:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None


def store_files() -> frozenset[str]:
    """The names of the store's own files in the jobs folder (never orphans)."""
    return frozenset({DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal", LOCK_NAME})


def _progress(record: JobRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in _PROGRESS)


def _row(record: JobRecord) -> tuple[Any, ...]:
    spec = json.dumps(record.spec, separators=(",", ":"))
    return (record.id, _owner(record.owner), record.created_at, spec, *_progress(record))


def _record(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(_FIXED + _PROGRESS, row, strict=True))
    try:
        spec: Mapping[str, Any] = json.loads(values.pop("spec"))
    except ValueError:
        raise JobStoreError(f"the job store is corrupt (job {values['id']} cannot be read)") from None
    values["owner"] = values["owner"] or None
    return JobRecord(spec=dict(spec), **values)
