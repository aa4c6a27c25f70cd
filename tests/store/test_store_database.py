"""Schema, batched writes and dashboard reads, each run on SQLite and on MariaDB."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, event, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Counts, Database, database_url_from_env
from mfgvision.store.records import InferenceRecord
from mfgvision.store.schema import detection_data, inference_data
from tests.factories import make_detection, make_record

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
    latest = db.latest_per_camera()
    assert [r.camera_id for r in latest] == ["cam-a", "cam-b"]
    assert latest[0] == new_a
    assert latest[1] == only_b
    assert latest[0].object_detected
    assert not latest[1].object_detected


def test_write_uses_one_statement_per_table(db: Database) -> None:
    statements: list[str] = []

    def collect(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    batch = [
        record("cam-a", T0 + timedelta(seconds=i), detection(0, "spot", 0.7)) for i in range(5)
    ]
    event.listen(db.engine, "before_cursor_execute", collect)
    try:
        db.write(batch)
    finally:
        event.remove(db.engine, "before_cursor_execute", collect)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 2
    assert row_count(db, detection_data) == 5


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
    (back,) = db.recent(1)
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
        db.counts(datetime(2026, 3, 1))


def test_counts_since_and_all(db: Database) -> None:
    db.write(
        [
            record("cam-a", T0 - timedelta(hours=2), detection(0, "scratch", 0.9)),
            record("cam-a", T0 - timedelta(minutes=10)),
            record("cam-a", T0, detection(1, "hole", 0.6), detection(2, "spot", 0.4)),
            record("cam-b", T0 - timedelta(minutes=1)),
        ]
    )
    assert db.counts() == {"cam-a": Counts(3, 1, 2), "cam-b": Counts(1, 1, 0)}
    recent = db.counts(T0 - timedelta(hours=1))
    assert recent == {"cam-a": Counts(2, 1, 1), "cam-b": Counts(1, 1, 0)}
    assert recent["cam-a"].yield_pct == 50.0
    assert db.counts(T0 + timedelta(seconds=1)) == {}
    assert Counts().yield_pct is None


def test_recent_orders_newest_first_and_filters_by_camera(db: Database) -> None:
    batch = [record(cam, T0 + timedelta(seconds=i)) for i, cam in enumerate("abab")]
    batch[3].detections.append(detection(4, "dent", 0.99))
    db.write(batch)
    assert [r.unique_id for r in db.recent(3)] == [b.unique_id for b in batch[:0:-1]]
    only_b = db.recent(10, camera_id="b")
    assert [r.unique_id for r in only_b] == [batch[3].unique_id, batch[1].unique_id]
    assert only_b[0].detections == batch[3].detections
    assert db.recent(0) == []


def test_cameras_list_latest_name_and_time(db: Database) -> None:
    assert db.cameras() == []
    renamed = record("cam-a", T0)
    renamed.camera_name = "Line 1 top"
    db.write([record("cam-a", T0 - timedelta(seconds=1)), renamed, record("cam-b", T0)])
    cameras = db.cameras()
    assert [(c.camera_id, c.camera_name, c.last_seen) for c in cameras] == [
        ("cam-a", "Line 1 top", T0),
        ("cam-b", "Camera cam-b", T0),
    ]


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
def test_pure_python_mysql_driver_is_reported(
    c_extension: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mysql.connector

    monkeypatch.setattr(mysql.connector, "HAVE_CEXT", c_extension)
    caplog.set_level("WARNING")
    Database("mysql+mysqlconnector://edge@127.0.0.1:1/edge").close()
    warned = [r for r in caplog.records if "C extension unavailable" in r.getMessage()]
    assert bool(warned) is not c_extension


def test_unsupported_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Database("postgresql://u@localhost/edge")
