"""The outage spool: rows wait on disk in order, are written once when the database answers, and
a row the database refuses never blocks the others."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from mfgvision.inference.types import Box
from mfgvision.store.database import Database
from mfgvision.store.records import FiredRule, InferenceRecord
from mfgvision.store.spool import RowSpool, record_from_json, record_to_json, row_spool_path
from tests.factories import make_detection, make_record, wait_for

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
UNREACHABLE = "mysql+mysqlconnector://edge:pw@127.0.0.1:1/edge"


def record(i: int) -> InferenceRecord:
    box = Box(10.123456789, 20.5, 110.0, 220.75)
    return make_record(
        created=T0 + timedelta(milliseconds=i),
        model_version="7",
        inferencing_time_ms=12.345678901,
        detections=[make_detection(i % 3, "scratch", 0.912345678, box)],
        raw_image_name=f"r{i}.jpg",
        raw_image_path=f"/data/images/r{i}.jpg",
    )


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'edge.db'}")
    db.create_schema()
    yield db
    db.close()


def stored_ids(db: Database) -> list[str]:
    """Unique ids in insertion order."""
    from sqlalchemy import select

    from mfgvision.store.schema import inference_data as t

    with db.engine.connect() as conn:
        return list(conn.execute(select(t.c.unique_id).order_by(t.c.id)).scalars())


def test_record_round_trips_exactly() -> None:
    original = record(5)
    assert record_from_json(record_to_json(original)) == original


def test_the_settings_in_force_round_trip_and_a_previous_release_s_rows_still_read() -> None:
    newer = record(5)
    newer.prob_threshold, newer.settings_version = 0.35, 12
    assert record_from_json(record_to_json(newer)) == newer
    older = json.loads(record_to_json(record(6)))
    del older["prob_threshold"], older["settings_version"]  # as the previous release spooled it
    back = record_from_json(json.dumps(older))
    assert back.unique_id == older["unique_id"] and back.detections == record(6).detections
    assert (back.prob_threshold, back.settings_version) == (None, None)


def test_the_verdict_and_the_fired_rules_round_trip_and_older_rows_read_without() -> None:
    judged = record(5)
    judged.given_verdict = "NG"
    judged.fired_rules = (FiredRule("seal", "defect", "NG", "seal", "scratch", 1, "1 scratch"),)
    assert record_from_json(record_to_json(judged)) == judged
    passed = record(6)
    passed.given_verdict, passed.fired_rules = "OK", ()
    assert record_from_json(record_to_json(passed)) == passed
    older = json.loads(record_to_json(record(7)))
    del older["given_verdict"], older["fired_rules"]  # as the previous release spooled it
    back = record_from_json(json.dumps(older))
    assert (back.given_verdict, back.fired_rules, back.verdict) == (None, None, "NG")


def test_rows_wait_while_the_database_is_away_then_go_in_order(
    tmp_path: Path, sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = row_spool_path(tmp_path / "images")
    spool = RowSpool(path, sqlite_db, batch_size=5)
    rows = [record(i) for i in range(12)]
    spool.append(rows[:5])
    spool.append(rows[5:])

    def server_gone(_records) -> int:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("server gone"))

    monkeypatch.setattr(sqlite_db, "write", server_gone)
    result = spool.drain()
    assert (result.written, result.remaining) == (0, 12) and "server gone" in result.error
    spool.close()
    monkeypatch.undo()

    spool = RowSpool(path, sqlite_db, batch_size=5)  # the next start, the database is back
    assert spool.pending == 12
    result = spool.drain()
    assert (result.written, result.remaining, result.error) == (12, 0, None)
    assert stored_ids(sqlite_db) == [r.unique_id for r in rows]
    spool.close()


def test_each_database_drains_only_its_own_rows(tmp_path: Path, sqlite_db: Database) -> None:
    path = row_spool_path(tmp_path / "images")
    other = Database(UNREACHABLE)
    theirs = RowSpool(path, other)
    theirs.append([record(0)])
    mine = RowSpool(path, sqlite_db)
    assert (mine.pending, theirs.pending) == (0, 1)
    assert mine.drain().written == 0
    assert theirs.pending == 1
    theirs.close()
    mine.close()
    other.close()


def test_replay_after_a_crash_between_commit_and_ack_does_not_duplicate(
    tmp_path: Path, sqlite_db: Database
) -> None:
    spool = RowSpool(row_spool_path(tmp_path / "images"), sqlite_db)
    rows = [record(i) for i in range(6)]
    spool.append(rows)
    sqlite_db.write(rows[:4])  # the database committed, the process died before the spool ack
    result = spool.drain()
    assert (result.written, result.remaining) == (6, 0)
    assert stored_ids(sqlite_db) == [r.unique_id for r in rows]
    spool.close()


def test_a_refused_row_goes_to_dead_and_the_rest_are_written(
    tmp_path: Path, sqlite_db: Database
) -> None:
    spool = RowSpool(row_spool_path(tmp_path / "images"), sqlite_db)
    rows = [record(i) for i in range(5)]
    rows[2].created = rows[2].created.replace(tzinfo=None)  # the database layer refuses naive times
    spool.append(rows)
    result = spool.drain()
    assert (result.written, result.dead, result.remaining) == (4, 1, 0)
    assert stored_ids(sqlite_db) == [r.unique_id for i, r in enumerate(rows) if i != 2]
    ((uid, error),) = spool.dead_rows()
    assert uid == rows[2].unique_id and "timezone-aware" in error
    spool.close()


def test_drainer_thread_writes_when_rows_arrive(tmp_path: Path, sqlite_db: Database) -> None:
    spool = RowSpool(row_spool_path(tmp_path / "images"), sqlite_db, backoff_initial_s=0.05)
    spool.start()
    try:
        rows = [record(i) for i in range(30)]
        spool.append(rows)
        assert wait_for(lambda: spool.pending == 0)
        assert stored_ids(sqlite_db) == [r.unique_id for r in rows]
    finally:
        spool.close()
