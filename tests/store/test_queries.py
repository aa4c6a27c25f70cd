"""The dashboard's reads (``mfgvision.store.queries``), each run on SQLite and on MariaDB and
checked against the same numbers worked out in Python from the rows written."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from mfgvision.store import queries
from mfgvision.store.database import Database
from mfgvision.store.queries import HistoryFilter
from mfgvision.store.records import NG, OK, FiredRule, InferenceRecord
from tests.store.test_store_database import T0, detection, record

LABELS = ["scratch", "hole", "spot"]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def seed(db: Database, count: int = 60) -> list[InferenceRecord]:
    """Three cameras, a row every 37 s, every third one NG with one or two detections."""
    rows = []
    for i in range(count):
        found = (
            [detection(k % 3, LABELS[k % 3], 0.6 + 0.01 * k) for k in range(i % 2 + 1)]
            if i % 3 == 0
            else []
        )
        r = record(f"cam{i % 3}", T0 + timedelta(seconds=37 * i), *found)
        r.inferencing_time_ms = 10.0 + i
        rows.append(r)
    db.write(rows)
    return rows


def bucket_of(when: datetime, bucket_s: int) -> int:
    return int((when - EPOCH).total_seconds() // bucket_s)


@pytest.mark.parametrize("bucket_s", [60, 300])
def test_camera_and_label_buckets_match_the_rows(db: Database, bucket_s: int) -> None:
    rows = seed(db)
    start, end = T0 + timedelta(minutes=3), T0 + timedelta(minutes=30)
    inside = [r for r in rows if start <= r.created < end]
    expected: dict[tuple[str, int], list[float]] = {}
    for r in inside:
        acc = expected.setdefault((r.camera_id, bucket_of(r.created, bucket_s)), [0, 0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += r.object_detected
        acc[2] += r.inferencing_time_ms
        acc[3] = max(acc[3], r.inferencing_time_ms)
    got = {
        (b.camera_id, b.bucket): [b.total, b.ng, b.sum_ms, b.max_ms]
        for b in queries.camera_buckets(db.engine, start, end, bucket_s)
    }
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert got[key] == pytest.approx(want), key

    labels = Counter(
        (r.camera_id, bucket_of(r.created, bucket_s), d.label) for r in inside for d in r.detections
    )
    got_labels = {
        (cam, bucket, label): n
        for cam, bucket, label, n in queries.label_buckets(db.engine, start, end, bucket_s)
    }
    assert got_labels == dict(labels)


def test_cameras_labels_and_one_inference(db: Database) -> None:
    assert queries.camera_ids(db.engine) == [] and queries.labels(db.engine) == []
    rows = seed(db, 12)
    assert queries.camera_ids(db.engine) == ["cam0", "cam1", "cam2"]
    assert queries.labels(db.engine) == ["hole", "scratch"]
    assert queries.inference(db.engine, rows[3].unique_id) == rows[3]
    assert queries.inference(db.engine, "no-such-id") is None
    latest = queries.latest_per_camera(db.engine, cameras=["cam2", "cam0"])
    assert [r.unique_id for r in latest] == [rows[9].unique_id, rows[11].unique_id]


def test_history_filters_and_pages_newest_first(db: Database) -> None:
    rows = seed(db)
    flt = HistoryFilter(camera_id="cam0", verdict="NG", label="hole")
    want = [
        r.unique_id
        for r in sorted(rows, key=lambda r: r.created, reverse=True)
        if r.camera_id == "cam0" and r.object_detected and "hole" in {d.label for d in r.detections}
    ]
    assert len(want) > 3
    seen, cursor = [], None
    while True:
        page = queries.history(db.engine, flt, limit=3, cursor=cursor)
        assert page.total == len(want) and not page.total_capped
        seen += [r.unique_id for r in page.records]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == want

    window = HistoryFilter(start=T0 + timedelta(minutes=5), end=T0 + timedelta(minutes=10))
    in_window = [r for r in rows if window.start <= r.created < window.end]
    page = queries.history(db.engine, window, limit=50)
    assert [r.unique_id for r in page.records] == [
        r.unique_id for r in sorted(in_window, key=lambda r: r.created, reverse=True)
    ]
    ok_only = queries.history(db.engine, HistoryFilter(verdict="OK"), limit=200)
    assert ok_only.total == sum(not r.object_detected for r in rows)


def test_counts_and_filters_follow_the_stored_verdict_and_derive_it_for_old_rows(
    db: Database,
) -> None:
    scratch = detection(0, "scratch", 0.9)
    flange = FiredRule("seal", "defect", NG, "seal", "scratch", 1, "1 scratch in seal")
    missing = FiredRule("screws", "count", NG, None, "screw", 11, "11 screw in the frame")
    rows = [
        record("cam0", T0, scratch),  # stored before verdicts were: NG, it has a detection
        record("cam0", T0 + timedelta(seconds=1)),  # likewise OK
        replace(
            record("cam0", T0 + timedelta(seconds=2), scratch), given_verdict=OK, fired_rules=()
        ),
        replace(
            record("cam0", T0 + timedelta(seconds=3)), given_verdict=NG, fired_rules=(missing,)
        ),
        replace(
            record("cam0", T0 + timedelta(seconds=4), scratch),
            given_verdict=NG,
            fired_rules=(flange,),
        ),
    ]
    db.write(rows)
    [bucket] = queries.camera_buckets(db.engine, T0, T0 + timedelta(seconds=5), 3600)
    assert (bucket.total, bucket.ng) == (5, 3)
    by_verdict = {
        v: [r.unique_id for r in queries.history(db.engine, HistoryFilter(verdict=v)).records]
        for v in (OK, NG)
    }
    assert by_verdict == {
        OK: [rows[2].unique_id, rows[1].unique_id],
        NG: [rows[4].unique_id, rows[3].unique_id, rows[0].unique_id],
    }
    assert queries.inference(db.engine, rows[3].unique_id).fired_rules == (missing,)  # type: ignore[union-attr]
