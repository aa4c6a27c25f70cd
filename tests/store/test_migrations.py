"""Alembic migrations on SQLite and MariaDB: the result equals ``schema.py``, upgrades keep rows,
databases from before migrations are adopted, foreign tables are refused."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, insert, inspect, select, text

from mfgvision.inference.types import Box
from mfgvision.store.database import (
    Database,
    SchemaError,
    _alembic_config,
    _detection_rows,
    _inference_row,
)
from mfgvision.store.feedback import Feedback, feedback_for, save_feedback
from mfgvision.store.records import FiredRule, InferenceRecord
from mfgvision.store.schema import detection_data, inference_data, metadata
from tests.factories import make_detection, make_record, recent

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)
#: The ``inference_data`` columns revision 0005 adds.
RETRAIN_COLUMNS = {"retrain_reason", "retrain_image_name", "retrain_image_path"}
#: The ``inference_data`` columns revision 0006 adds.
VERDICT_COLUMNS = {"verdict", "fired_rules"}
HEAD = "0006"


def record(i: int, detections: int = 1) -> InferenceRecord:
    box = Box(1.0, 2.0, 30.0, 40.0)
    return make_record(
        created=T0 + timedelta(seconds=i),
        detections=[make_detection(k, f"class{k}", 0.5, box) for k in range(detections)],
    )


def write_initial(db: Database, records: list[InferenceRecord]) -> None:
    """Store records as the first release did: only the columns of revision 0001."""
    added = {"image_error", "prob_threshold", "settings_version", *RETRAIN_COLUMNS}  # later
    added |= VERDICT_COLUMNS
    rows = [{k: v for k, v in _inference_row(r).items() if k not in added} for r in records]
    with db.engine.begin() as conn:
        conn.execute(insert(inference_data), rows)
        detections = [d for r in records for d in _detection_rows(r)]
        if detections:
            conn.execute(insert(detection_data), detections)


def counts(db: Database) -> tuple[int, int]:
    with db.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(inference_data)).scalar_one(),
            conn.execute(select(func.count()).select_from(detection_data)).scalar_one(),
        )


def test_migrated_schema_equals_schema_py(empty_db: Database) -> None:
    empty_db.create_schema()
    assert empty_db.schema_revision() == HEAD
    with empty_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_from_the_initial_revision_keeps_rows(empty_db: Database) -> None:
    empty_db.migrate("0001")
    assert empty_db.schema_revision() == "0001"
    indexes = {ix["name"] for ix in inspect(empty_db.engine).get_indexes("detection_data")}
    assert "ix_detection_data_tag_name" not in indexes
    batch = [record(i, detections=i % 3) for i in range(20)]
    write_initial(empty_db, batch)
    before = counts(empty_db)

    empty_db.create_schema()  # what every module does at start

    assert empty_db.schema_revision() == HEAD
    indexes = {ix["name"] for ix in inspect(empty_db.engine).get_indexes("detection_data")}
    assert "ix_detection_data_tag_name" in indexes
    assert counts(empty_db) == before == (20, 19)
    back = {r.unique_id: r for r in recent(empty_db, 100)}
    assert all(back[r.unique_id] == r for r in batch)


def test_upgrade_to_0004_keeps_rows_and_stores_the_settings_in_force(empty_db: Database) -> None:
    empty_db.migrate("0003")
    older = [record(i) for i in range(3)]
    in_force = {"prob_threshold", "settings_version"}  # the columns revision 0004 adds
    with empty_db.engine.begin() as conn:  # as revision 0003 stored them
        rows = [
            {
                k: v
                for k, v in _inference_row(r).items()
                if k not in in_force | RETRAIN_COLUMNS | VERDICT_COLUMNS
            }
            for r in older
        ]
        conn.execute(insert(inference_data), rows)
        conn.execute(insert(detection_data), [d for r in older for d in _detection_rows(r)])

    empty_db.create_schema()

    assert empty_db.schema_revision() == HEAD
    newer = make_record(
        created=T0 + timedelta(seconds=9), prob_threshold=0.9, settings_version=2**40
    )
    empty_db.write([newer])
    back = {r.unique_id: (r.prob_threshold, r.settings_version) for r in recent(empty_db, 100)}
    assert [back[r.unique_id] for r in older] == [(None, None)] * 3  # not recorded before 0004
    assert back[newer.unique_id] == (0.9, 2**40)

    with empty_db.engine.begin() as conn:  # and back: the rows stay, the two columns go
        command.downgrade(_alembic_config(conn), "0003")
    assert empty_db.schema_revision() == "0003"
    columns = {c["name"] for c in inspect(empty_db.engine).get_columns("inference_data")}
    assert not columns & in_force
    assert counts(empty_db) == (4, 3)


def test_upgrade_to_0005_keeps_rows_and_adds_feedback_and_the_retraining_copy(
    empty_db: Database,
) -> None:
    empty_db.migrate("0004")
    older = [record(i) for i in range(3)]
    with empty_db.engine.begin() as conn:  # as revision 0004 stored them
        rows = [
            {
                k: v
                for k, v in _inference_row(r).items()
                if k not in RETRAIN_COLUMNS | VERDICT_COLUMNS
            }
            for r in older
        ]
        conn.execute(insert(inference_data), rows)
        conn.execute(insert(detection_data), [d for r in older for d in _detection_rows(r)])

    empty_db.create_schema()

    assert empty_db.schema_revision() == HEAD
    kept = make_record(
        created=T0 + timedelta(seconds=9),
        retrain_reason="uncertain",
        retrain_image_name="line1_top_x_retrain.jpg",
        retrain_image_path="/data/images/line1_top_x_retrain.jpg",
    )
    empty_db.write([kept])
    back = {r.unique_id: r for r in recent(empty_db, 100)}
    assert [back[r.unique_id].retrain_reason for r in older] == [None] * 3
    assert back[kept.unique_id] == kept
    save_feedback(empty_db.engine, Feedback(older[0].unique_id, "false_ng", ()))
    assert feedback_for(empty_db.engine, [older[0].unique_id])[older[0].unique_id].boxes == ()

    with empty_db.engine.begin() as conn:  # and back: the rows stay, feedback and columns go
        command.downgrade(_alembic_config(conn), "0004")
    assert empty_db.schema_revision() == "0004"
    columns = {c["name"] for c in inspect(empty_db.engine).get_columns("inference_data")}
    assert not columns & RETRAIN_COLUMNS
    assert "inspection_feedback" not in inspect(empty_db.engine).get_table_names()
    assert counts(empty_db) == (4, 3)


def test_upgrade_to_0006_keeps_rows_whose_verdict_is_derived_and_stores_rules(
    empty_db: Database,
) -> None:
    empty_db.migrate("0005")
    older = [record(0, detections=0), record(1, detections=2)]
    with empty_db.engine.begin() as conn:  # as revision 0005 stored them
        rows = [
            {k: v for k, v in _inference_row(r).items() if k not in VERDICT_COLUMNS} for r in older
        ]
        conn.execute(insert(inference_data), rows)
        conn.execute(insert(detection_data), [d for r in older for d in _detection_rows(r)])

    empty_db.create_schema()

    assert empty_db.schema_revision() == HEAD
    fired = (FiredRule("seal", "defect", "NG", "sealing_face", "scratch", 2, "2 scratch in x"),)
    judged = make_record(
        created=T0 + timedelta(seconds=9),
        detections=[make_detection(0, "scratch", 0.9)] * 3,
        given_verdict="NG",
        fired_rules=fired,
    )
    passed = make_record(
        created=T0 + timedelta(seconds=10),
        detections=[make_detection(0, "scratch", 0.9)],
        given_verdict="OK",
        fired_rules=(),
    )
    empty_db.write([judged, passed])
    back = {r.unique_id: r for r in recent(empty_db, 100)}
    assert [(back[r.unique_id].given_verdict, back[r.unique_id].verdict) for r in older] == [
        (None, "OK"),
        (None, "NG"),
    ]  # not recorded before 0006: derived from the detections
    assert back[judged.unique_id] == judged and back[passed.unique_id] == passed
    assert (passed.verdict, passed.fired_rules) == ("OK", ())

    with empty_db.engine.begin() as conn:  # and back: the rows stay, the two columns go
        command.downgrade(_alembic_config(conn), "0005")
    columns = {c["name"] for c in inspect(empty_db.engine).get_columns("inference_data")}
    assert not columns & VERDICT_COLUMNS
    assert counts(empty_db) == (4, 6)


def test_database_created_before_migrations_is_adopted(empty_db: Database) -> None:
    empty_db.migrate("0001")
    write_initial(empty_db, [record(0), record(1)])
    with empty_db.engine.begin() as conn:  # as the first release left it: no alembic_version
        conn.execute(text("DROP TABLE alembic_version"))
    assert empty_db.schema_revision() is None
    empty_db.create_schema()
    assert empty_db.schema_revision() == HEAD
    assert counts(empty_db) == (2, 2)


def test_foreign_tables_of_the_same_name_are_refused(empty_db: Database) -> None:
    with empty_db.engine.begin() as conn:  # the original system's v1 table
        conn.execute(
            text(
                "CREATE TABLE inference_data (id INTEGER PRIMARY KEY, model_name VARCHAR(60), "
                "camera_id VARCHAR(40), raw_image_local_path VARCHAR(100), unique_id VARCHAR(40))"
            )
        )
    with pytest.raises(SchemaError, match="not created by mfgvision"):
        empty_db.create_schema()
    with pytest.raises(SchemaError):  # not an outage: a module does not start on it
        empty_db.create_schema_if_reachable()
    assert empty_db.schema_revision() is None


def test_an_unreachable_database_is_reported_not_raised(tmp_path: Path) -> None:
    unreachable = Database(f"sqlite:///{tmp_path / 'missing-folder-is-a-file' / 'edge.db'}")
    (tmp_path / "missing-folder-is-a-file").rmdir()
    (tmp_path / "missing-folder-is-a-file").write_text("not a folder")
    assert unreachable.create_schema_if_reachable() is False
    unreachable.close()


def test_concurrent_starts_migrate_once(empty_db: Database) -> None:
    url = empty_db.engine.url.render_as_string(hide_password=False)
    others = [Database(url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(db: Database) -> None:
        try:
            db.create_schema()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for db in others:
        db.close()
    assert errors == []
    assert empty_db.schema_revision() == HEAD


def test_writes_are_idempotent_by_unique_id(empty_db: Database) -> None:
    empty_db.create_schema()
    first = [record(i, detections=2) for i in range(5)]
    assert empty_db.write(first[:3]) == 3
    assert empty_db.write(first) == 2  # a replay that overlaps what was stored
    assert empty_db.write(first) == 0
    assert counts(empty_db) == (5, 10)


def test_prune_removes_old_rows_and_their_detections(empty_db: Database) -> None:
    empty_db.create_schema()
    assert empty_db.is_empty()
    batch = [record(i, detections=2) for i in range(25)]
    empty_db.write(batch)
    assert not empty_db.is_empty()
    assert empty_db.prune(T0 + timedelta(seconds=10), batch_size=4) == 10
    assert counts(empty_db) == (15, 30)
    left = sorted(r.created for r in recent(empty_db, 100))
    assert left[0] == T0 + timedelta(seconds=10)
    assert empty_db.prune(T0) == 0


def test_is_empty_on_a_database_without_tables(empty_db: Database) -> None:
    assert empty_db.is_empty()
