"""Schema, batched writes and dashboard reads, each run on SQLite and on MariaDB."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, event, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from mfgvision.inference.types import Box, Detection
from mfgvision.store import queries
from mfgvision.store.database import Database, database_url_from_env
from mfgvision.store.records import InferenceRecord
from mfgvision.store.schema import detection_data, inference_data
from tests.factories import make_detection, make_record, recent

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)


def detection(label_id: int, label: str, p: float) -> Detection:
    """A detection with a fixed box in a 640x480 frame."""
    return make_detection(label_id, label, p, Box(10.5 + label_id, 20.25, 110.0, 220.75))


def record(camera: str, created: datetime, *detections: Detection) -> InferenceRecord:
    """An inference record of ``camera`` with the given detections."""
    return make_record(
        created=created,
        camera_id=camera,
        camera_name=f"Camera {camera}",
        model_name="defects",
        model_version="3",
        inferencing_time_ms=12.5,
        detections=list(detections),
        raw_image_name=f"{camera}-raw.jpg",
        annotated_image_name=f"{camera}-annotated.jpg",
        annotated_image_path=f"/images/{camera}-annotated.jpg",
    )


def row_count(db: Database, table) -> int:
    """Rows in ``table``."""
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_create_schema_is_idempotent_and_indexed(db: Database) -> None:
    db.create_schema()
    inspector = inspect(db.engine)
    assert {"inference_data", "detection_data"} <= set(inspector.get_table_names())
    indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("inference_data")}
    assert {("camera_id", "created"), ("created",)} <= indexes
    det_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("detection_data")}
    assert ("unique_id",) in det_indexes
    (fk,) = inspector.get_foreign_keys("detection_data")
    assert fk["referred_table"] == "inference_data"
    assert fk["referred_columns"] == ["unique_id"]
    assert fk["options"].get("ondelete") == "CASCADE"


def test_write_batch_and_read_back(db: Database) -> None:
    scratch, hole = detection(0, "scratch", 0.91), detection(1, "hole", 0.5)
    old_a = record("cam-a", T0 - timedelta(seconds=5), scratch)
    new_a = record("cam-a", T0, scratch, hole)
    only_b = record("cam-b", T0 - timedelta(seconds=1))
    db.write([old_a, new_a, only_b])

    assert row_count(db, inference_data) == 3
    assert row_count(db, detection_data) == 3
    latest = queries.latest_per_camera(db.engine)
    assert [r.camera_id for r in latest] == ["cam-a", "cam-b"]
    assert latest[0] == new_a
    assert latest[1] == only_b
    assert latest[0].object_detected
    assert not latest[1].object_detected


def statements_of(db: Database, action) -> list[str]:
    """The SQL statements ``action()`` sends through the engine."""
    statements: list[str] = []

    def collect(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", collect)
    try:
        action()
    finally:
        event.remove(db.engine, "before_cursor_execute", collect)
    return statements


def test_write_uses_one_statement_per_table(db: Database) -> None:
    batch = [
        record("cam-a", T0 + timedelta(seconds=i), detection(0, "spot", 0.7)) for i in range(5)
    ]
    sent = statements_of(db, lambda: db.write(batch))
    assert sent == ["INSERT", "INSERT"]  # a fresh batch needs no look-up first
    assert row_count(db, detection_data) == 5


def test_replayed_batch_looks_up_stored_ids_and_inserts_the_rest(db: Database) -> None:
    batch = [
        record("cam-a", T0 + timedelta(seconds=i), detection(0, "spot", 0.7)) for i in range(4)
    ]
    db.write(batch[:2])
    written: list[int] = []
    sent = statements_of(db, lambda: written.append(db.write(batch)))
    assert written == [2]
    assert sent == ["INSERT", "SELECT", "INSERT", "INSERT"]
    assert row_count(db, inference_data) == 4
    assert row_count(db, detection_data) == 4


def test_duplicate_inside_a_replayed_batch_is_still_refused(db: Database) -> None:
    stored = record("cam-a", T0)
    db.write([stored])
    fresh = record("cam-a", T0 + timedelta(seconds=1))
    twin = record("cam-a", T0 + timedelta(seconds=2))
    twin.unique_id = fresh.unique_id
    with pytest.raises(IntegrityError):
        db.write([stored, fresh, twin])
    assert row_count(db, inference_data) == 1


def test_write_is_all_or_nothing(db: Database) -> None:
    first = record("cam-a", T0, detection(0, "scratch", 0.9))
    duplicate = record("cam-a", T0 + timedelta(seconds=1))
    duplicate.unique_id = first.unique_id
    with pytest.raises(IntegrityError):
        db.write([first, duplicate])
    assert row_count(db, inference_data) == 0
    assert row_count(db, detection_data) == 0


def test_write_empty_batch_is_a_no_op(db: Database) -> None:
    db.write([])
    assert row_count(db, inference_data) == 0


def test_deleting_an_inference_cascades_to_its_detections(db: Database) -> None:
    keep = record("cam-a", T0, detection(0, "scratch", 0.9))
    drop = record("cam-a", T0 + timedelta(seconds=1), detection(1, "hole", 0.8))
    db.write([keep, drop])
    with db.engine.begin() as conn:
        conn.execute(delete(inference_data).where(inference_data.c.unique_id == drop.unique_id))
    with db.engine.connect() as conn:
        left = conn.execute(select(detection_data.c.unique_id)).scalars().all()
    assert left == [keep.unique_id]


def test_detection_without_inference_is_rejected(db: Database) -> None:
    orphan = {
        "unique_id": str(uuid.uuid4()),
        "tag_name": "x",
        "tag_id": 0,
        "probability": 0.5,
        **dict.fromkeys(("x1", "y1", "x2", "y2", "nx1", "ny1", "nx2", "ny2"), 0.0),
    }
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(insert(detection_data), [orphan])


def test_created_round_trips_as_aware_utc_with_microseconds(db: Database) -> None:
    plus_0530 = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2026, 3, 1, 14, 0, 15, 123456, tzinfo=plus_0530)
    db.write([record("cam-a", local)])
    (back,) = recent(db, 1)
    assert back.created == local
    assert back.created.tzinfo == timezone.utc
    assert back.created == datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT created FROM inference_data")).scalar_one()
    stored_text = stored if isinstance(stored, str) else stored.isoformat(sep=" ")
    assert stored_text.startswith("2026-03-01 08:30:15.123456")


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="timezone-aware"):
        db.write([record("cam-a", datetime(2026, 3, 1, 8, 30))])
    with pytest.raises(StatementError, match="timezone-aware"):
        db.count_before(datetime(2026, 3, 1))


def test_latest_per_camera_has_the_newest_name_and_time(db: Database) -> None:
    assert queries.latest_per_camera(db.engine) == []
    renamed = record("cam-a", T0)
    renamed.camera_name = "Line 1 top"
    tie_first, tie_second = record("cam-b", T0), record("cam-b", T0)
    db.write([record("cam-a", T0 - timedelta(seconds=1)), renamed, tie_first])
    db.write([tie_second])
    latest = queries.latest_per_camera(db.engine)
    assert [(r.camera_id, r.camera_name, r.created) for r in latest] == [
        ("cam-a", "Line 1 top", T0),
        ("cam-b", "Camera cam-b", T0),
    ]
    assert latest[1].unique_id == tie_second.unique_id  # same time: the row stored last


def test_ping(db: Database) -> None:
    db.ping()


def test_sqlite_creates_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "edge.db"
    database = Database(f"sqlite:///{path}")
    try:
        database.create_schema()
        with database.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert path.is_file()
    finally:
        database.close()


def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MFGVISION_DB_URL", raising=False)
    assert database_url_from_env(tmp_path / "edge.db") == f"sqlite:///{tmp_path / 'edge.db'}"
    monkeypatch.setenv("MFGVISION_DB_URL", "mysql+mysqlconnector://u:p@db:3306/edge")
    assert database_url_from_env(tmp_path / "edge.db") == "mysql+mysqlconnector://u:p@db:3306/edge"


def test_password_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    database = Database("mysql+mysqlconnector://edge:s3cret-pw@127.0.0.1:1/edge")
    database.close()
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in "".join(str(r.__dict__) for r in caplog.records)
    assert "***" in database.safe_url


@pytest.mark.parametrize("c_extension", [True, False])
def test_the_driver_and_its_protocol_are_logged(
    c_extension: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    import sqlite3

    import mysql.connector

    monkeypatch.setattr(mysql.connector, "HAVE_CEXT", c_extension)
    caplog.set_level("INFO")
    Database("mysql+mysqlconnector://edge@127.0.0.1:1/edge").close()
    Database(f"sqlite:///{tmp_path / 'edge.db'}").close()
    drivers = [r.driver for r in caplog.records if r.getMessage() == "database configured"]
    protocol = "C extension" if c_extension else "pure Python"
    assert drivers == [
        f"mysqlconnector {mysql.connector.__version__} ({protocol})",
        f"pysqlite {sqlite3.sqlite_version}",
    ]


def test_unsupported_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Database("postgresql://u@localhost/edge")


@pytest.mark.mysql
def test_pure_python_connections_send_without_delay(mariadb_url: str) -> None:
    import socket

    db = Database(mariadb_url + "?use_pure=true")
    try:
        with db.engine.connect() as conn:
            sock = conn.connection.dbapi_connection._socket.sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        db.close()
