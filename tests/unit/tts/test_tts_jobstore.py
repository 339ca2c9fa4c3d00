"""The SQLite job store: records round-trip, one process per folder, bad files refused, a full disk told."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from voxserve.tts.jobstore import DB_NAME, SCHEMA_VERSION, JobRecord, JobStoreError, SqliteJobStore


def record(job_id: str = "speechjob_1", owner: str | None = "alice", **kw: object) -> JobRecord:
    fields: dict[str, object] = {
        "status": "queued",
        "created_at": 1000,
        "spec": {"sections": ["Hello there. ", "Again."], "response_format": "mp3", "sample_rate": 24000},
        **kw,
    }
    return JobRecord(id=job_id, owner=owner, **fields)  # type: ignore[arg-type]


def test_records_round_trip_and_update(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path)
    try:
        store.add(record("speechjob_1"), "key-1", "hash-1")
        store.add(record("speechjob_2", owner=None))
        first = record("speechjob_1", status="running", sections_done=1, chars_done=13, pcm_bytes=4800)
        store.update(first)
    finally:
        store.close()
    again = SqliteJobStore(tmp_path)  # what a restart reads
    try:
        loaded = again.load()
        assert [r.id for r in loaded] == ["speechjob_1", "speechjob_2"]
        assert loaded[0] == first and loaded[1].owner is None
        used = again.idempotency("alice", "key-1")
        assert used is not None and (used.body_hash, used.job_id) == ("hash-1", "speechjob_1")
        assert again.idempotency("bob", "key-1") is None  # keys are per owner
        again.remove(["speechjob_1"])
        assert [r.id for r in again.load()] == ["speechjob_2"]
        assert again.idempotency("alice", "key-1") is None  # its job gone, the key goes with it
    finally:
        again.close()


def test_idempotency_keys_expire(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path)
    try:
        store.add(record(), "key-1", "h")
        assert store.expire_idempotency(before=999.0) == 0
        assert store.expire_idempotency(before=1001.0) == 1
        assert store.idempotency("alice", "key-1") is None
    finally:
        store.close()


def test_one_server_per_folder(tmp_path: Path) -> None:
    first = SqliteJobStore(tmp_path)
    try:
        with pytest.raises(JobStoreError) as info:
            SqliteJobStore(tmp_path)
        assert "in use by another voxserve server" in info.value.message
        assert info.value.status == 503 and info.value.code == "job_store_unavailable"
    finally:
        first.close()
    SqliteJobStore(tmp_path).close()  # free again once the first one is closed


def test_a_corrupt_file_is_refused_and_kept(tmp_path: Path) -> None:
    garbage = b"not a database at all " * 200
    (tmp_path / DB_NAME).write_bytes(garbage)
    with pytest.raises(JobStoreError) as info:
        SqliteJobStore(tmp_path)
    assert "corrupt" in info.value.message and str(tmp_path) not in info.value.message
    assert (tmp_path / DB_NAME).read_bytes() == garbage  # the operator's to move away


def test_a_store_from_a_newer_voxserve_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(JobStoreError) as info:
        SqliteJobStore(tmp_path)
    assert "newer voxserve" in info.value.message


def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path)
    try:
        assert store._db is not None
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages}")  # as if the disk were full now
        big = record(spec={"sections": ["x" * 200_000], "response_format": "wav", "sample_rate": 24000})
        with pytest.raises(JobStoreError) as info:
            store.add(big)
        assert "full" in info.value.message and info.value.code == "job_store_unavailable"
        assert store.load() == []  # nothing half-written
    finally:
        store.close()
