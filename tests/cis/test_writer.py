"""The writer's durable order on SQLite and MariaDB: a row is stored before anything about it leaves,
what queues during a commit is committed together, and a writer killed after its commit re-sends the
announcements at the next start without storing any row twice."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.outcome import Outcome
from mfgvision.cis.writer import OutcomeWriter
from mfgvision.edge.hub import HubMessage
from mfgvision.image_upload.service import parse_request
from mfgvision.store import queries
from mfgvision.store.database import Database
from mfgvision.store.journal import Announcement, AnnouncementJournal, journal_path
from mfgvision.store.schema import inference_data
from mfgvision.store.spool import RowSpool, record_to_json, row_spool_path
from tests.cis.outcomes import OWNER, make_outcome, nothing_found
from tests.factories import make_record, recent, wait_for
from tests.services import REPO, mariadb_url  # noqa: F401  (fixture)

Sent = list[tuple[str, dict[str, Any]]]


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with the schema, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'edge.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    db = Database(url)
    db.create_schema()
    db.close()
    return url


def acking(sent: Sent) -> Callable[[str, dict[str, Any], Callable[[], None]], None]:
    """A hub that records each message and acknowledges it at once."""

    def send(output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        sent.append((output, body))
        on_sent()

    return send


def journaled(images: Path) -> list[str]:
    """``unique_id`` of the entries waiting in the writer's journal, oldest first."""
    journal = AnnouncementJournal(journal_path(images), OWNER)
    try:
        return [e.record.unique_id for e in journal.waiting()]
    finally:
        journal.close()


def stored(db: Database, ids: set[str]) -> int:
    """How many rows of ``ids`` the database holds."""
    t = inference_data
    with db.engine.connect() as conn:
        query = select(func.count()).select_from(t).where(t.c.unique_id.in_(ids))
        return int(conn.execute(query).scalar_one())


def test_nothing_is_announced_before_its_row_is_stored(tmp_path: Path, db_url: str) -> None:
    reader = Database(db_url)
    sent: Sent = []
    early: list[str] = []

    def emit(output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        sent.append((output, body))
        if stored(reader, {body["unique_id"]}) == 0:
            early.append(f"{output} {body['unique_id']}")
        on_sent()

    images = tmp_path / "data" / "images"
    writer = OutcomeWriter(
        images, Database(db_url), emit, PipelineMetrics(), OWNER, upload_receipts=False
    )
    writer.start()
    outcomes = [make_outcome(i) for i in range(12)]
    for outcome in outcomes:
        assert writer.submit(outcome)
    writer.stop()
    ids = {o.unique_id for o in outcomes}
    assert early == []
    assert stored(reader, ids) == len(ids)
    assert {b["unique_id"] for o, b in sent if o == "inference"} == ids
    uploads = [b for o, b in sent if o == "imageUpload"]
    assert {b["unique_id"] for b in uploads} == ids
    for body in uploads:  # "Line 1" names files and blobs that ImageUpload accepts
        assert parse_request(HubMessage.from_json(body)).blob_name.startswith("Line_1/top/")
    assert journaled(images) == []
    reader.close()


def test_what_queues_during_a_commit_is_committed_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    Database(url).create_schema()
    sent: Sent = []
    metrics = PipelineMetrics()
    writer = OutcomeWriter(tmp_path / "images", Database(url), acking(sent), metrics, OWNER)
    for i in range(20):  # all queued before the writer runs: one batch, one commit
        writer.submit(make_outcome(i))
    writer.start()
    assert wait_for(lambda: metrics.counters["rows_written"] == 20)
    assert metrics.summary()["db_write"]["n"] == 1
    for i in range(3):  # one at a time: each is committed alone, without waiting for more
        writer.submit(make_outcome(100 + i))
        assert wait_for(lambda n=i: len([o for o, _ in sent if o == "inference"]) == 21 + n)
    writer.stop()
    assert metrics.summary()["db_write"]["n"] == 4


def test_a_crash_after_the_commit_resends_what_was_announced_and_stores_nothing_twice(
    tmp_path: Path, db_url: str
) -> None:
    data = tmp_path / "data"
    killed = subprocess.run(
        [sys.executable, "-m", "tests.cis.outcomes", str(data), db_url, "3"],
        cwd=REPO,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ids = set(journaled(data / "images"))
    assert len(ids) == 3
    db = Database(db_url)
    assert stored(db, ids) == 3  # committed before the first message left

    sent: Sent = []
    metrics = PipelineMetrics()
    writer = OutcomeWriter(
        data / "images", Database(db_url), acking(sent), metrics, OWNER, upload_receipts=False
    )
    writer.start()
    writer.stop()
    assert {b["unique_id"] for o, b in sent if o == "inference"} == ids
    uploads = [b for o, b in sent if o == "imageUpload"]
    assert {b["unique_id"] for b in uploads} == ids
    assert all(Path(b["path"]).exists() for b in uploads)
    assert stored(db, ids) == 3 and metrics.counters["rows_written"] == 3  # none stored twice
    assert journaled(data / "images") == []
    db.close()


def test_a_message_the_hub_refuses_is_sent_again_at_the_next_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    Database(url).create_schema()
    images = tmp_path / "data" / "images"
    sent: Sent = []

    def refuse_first(output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        if not sent:
            sent.append(("refused", body))
            raise ConnectionError("edgeHub away")
        sent.append((output, body))
        on_sent()

    metrics = PipelineMetrics()
    writer = OutcomeWriter(
        images, Database(url), refuse_first, metrics, OWNER, upload_receipts=False
    )
    first, second = make_outcome(1), make_outcome(2)
    writer.submit(first)
    writer.submit(second)
    writer.start()
    writer.stop()
    assert metrics.counters["announce_errors"] == 1 and metrics.counters["rows_written"] == 2
    assert {b["unique_id"] for o, b in sent if o == "inference"} == {second.unique_id}
    assert journaled(images) == [first.unique_id]

    again: Sent = []
    writer = OutcomeWriter(
        images, Database(url), acking(again), PipelineMetrics(), OWNER, upload_receipts=False
    )
    writer.start()
    writer.stop()
    assert {b["unique_id"] for o, b in again if o == "inference"} == {first.unique_id}
    assert stored(Database(url), {first.unique_id, second.unique_id}) == 2
    assert journaled(images) == []


def test_the_settings_in_force_reach_the_row_and_the_message(tmp_path: Path, db_url: str) -> None:
    sent: Sent = []
    outcome = replace(make_outcome(1, prob_threshold=0.35), settings_version=7)
    writer = OutcomeWriter(
        tmp_path / "images",
        Database(db_url),
        acking(sent),
        PipelineMetrics(),
        OWNER,
    )
    writer.submit(outcome)
    writer.start()
    writer.stop()
    db = Database(db_url)
    row = queries.inference(db.engine, outcome.unique_id)
    db.close()
    assert row is not None
    assert (row.prob_threshold, row.settings_version) == (0.35, 7)
    assert (row.model_name, row.model_version) == (outcome.model_name, outcome.model_version)
    (body,) = [b for o, b in sent if o == "inference"]
    assert (body["prob_threshold"], body["settings_version"]) == (0.35, 7)
    assert (body["model_name"], body["model_version"]) == (
        outcome.model_name,
        outcome.model_version,
    )


def test_the_settings_in_force_survive_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    db = Database(url)
    db.create_schema()

    def server_gone(_records: Any) -> int:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("server gone"))

    monkeypatch.setattr(db, "write", server_gone)
    sent: Sent = []
    images = tmp_path / "data" / "images"
    metrics = PipelineMetrics()
    writer = OutcomeWriter(images, db, acking(sent), metrics, OWNER)
    writer.submit(replace(make_outcome(1, prob_threshold=0.8), settings_version=None))
    writer.submit(replace(make_outcome(2, prob_threshold=0.6), settings_version=3))
    writer.start()
    writer.stop()
    assert metrics.counters["rows_spooled"] == 2
    assert [(b["prob_threshold"], b["settings_version"]) for o, b in sent if o == "inference"] == [
        (0.8, None),
        (0.6, 3),
    ]
    monkeypatch.undo()  # the database is back: the spool writes what waited

    spool = RowSpool(row_spool_path(images), db)
    assert spool.drain().written == 2
    spool.close()
    rows = sorted(recent(db, 10), key=lambda r: r.created)
    assert [(r.prob_threshold, r.settings_version) for r in rows] == [(0.8, None), (0.6, 3)]
    db.close()


def test_a_journal_entry_of_the_previous_release_is_replayed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    db = Database(url)
    db.create_schema()
    images = tmp_path / "data" / "images"
    images.parent.mkdir()
    row = make_record(camera_id=OWNER)
    journal = AnnouncementJournal(journal_path(images), OWNER)
    journal.append([Announcement(row, [("inference", {"unique_id": row.unique_id})])])
    journal.close()
    older = json.loads(record_to_json(row))
    del older["prob_threshold"], older["settings_version"]  # as the previous release journaled it
    with sqlite3.connect(journal_path(images)) as conn:
        conn.execute("UPDATE entries SET record = ?", (json.dumps(older),))
    conn.close()

    sent: Sent = []
    writer = OutcomeWriter(
        images, db, acking(sent), PipelineMetrics(), OWNER, upload_receipts=False
    )
    writer.start()
    writer.stop()
    assert sent == [("inference", {"unique_id": row.unique_id})]
    (stored_row,) = recent(db, 10)
    assert stored_row == row  # its threshold and settings version not recorded: None
    assert journaled(images) == []
    db.close()


def test_each_camera_counts_its_own_rows_and_has_its_own_places_in_the_queue(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    Database(url).create_schema()
    sent: Sent = []
    module = PipelineMetrics(camera_id=None)
    writer = OutcomeWriter(
        tmp_path / "images", Database(url), acking(sent), module, OWNER, maxsize=2
    )
    cam_a, cam_b = PipelineMetrics(camera_id="a"), PipelineMetrics(camera_id="b")
    writer.attach("a", cam_a)
    writer.attach("b", cam_b)
    assert writer.submit(make_outcome(1, "a")) and writer.submit(make_outcome(2, "a"))
    assert not writer.submit(make_outcome(3, "a"))  # camera a's two places are taken ...
    assert writer.submit(make_outcome(4, "b"))  # ... camera b's are not
    assert writer.submit(make_outcome(5, "gone"))
    writer.start()
    writer.stop()
    assert cam_a.counters["dropped_outcomes"] == 1 and cam_a.counters["rows_written"] == 2
    assert cam_b.counters["rows_written"] == 1 and cam_b.counters["dropped_outcomes"] == 0
    assert module.counters["rows_written"] == 1  # a camera no longer attached counts as the module
    # the three cameras' rows went in one commit, counted by each of them
    assert cam_a.summary()["db_write"]["n"] == cam_b.summary()["db_write"]["n"] == 1
    cameras = {b["unique_id"]: b["camera_id"] for o, b in sent if o == "inference"}
    assert sorted(cameras.values()) == ["a", "a", "b", "gone"]


SCRATCH_ALARM = {"kind": "absent", "classes": ["scratch"], "yields": "alarm"}
SCRATCH_NG = {"kind": "defect", "classes": ["scratch"]}


def announced(tmp_path: Path, *outcomes: Outcome) -> tuple[Sent, PipelineMetrics]:
    """What a writer sends for ``outcomes`` (all acknowledged), and its metrics."""
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    Database(url).create_schema()
    sent: Sent = []
    metrics = PipelineMetrics()
    writer = OutcomeWriter(tmp_path / "images", Database(url), acking(sent), metrics, OWNER)
    for outcome in outcomes:
        writer.submit(outcome)
    writer.start()
    writer.stop()
    return sent, metrics


def alerts(sent: Sent) -> list[dict[str, Any]]:
    return [b for o, b in sent if o == "alerts"]


def test_an_alarm_rule_that_fires_sends_one_alert_naming_it(tmp_path: Path) -> None:
    outcome = make_outcome(1, rules={"no_scratch": SCRATCH_ALARM})  # alert_probability off
    sent, metrics = announced(tmp_path, outcome)
    (alert,) = alerts(sent)
    assert alert["unique_id"] == outcome.unique_id and alert["schema"] == "mfgvision.alert/2"
    assert alert["verdict"] == "OK"
    assert alert["alarms"] == [
        {
            "rule": "no_scratch",
            "kind": "absent",
            "yields": "alarm",
            "zone": None,
            "class": "scratch",
            "count": 1,
            "detail": "1 scratch in the frame",
        }
    ]
    assert alert["detected_objects"] == [] and alert["labels"] == []
    assert alert["max_probability"] is None and alert["alert_probability"] == 0.0
    assert metrics.counters["alerts"] == 1


def test_an_ng_rule_alerts_only_by_the_alert_probability(tmp_path: Path) -> None:
    quiet = make_outcome(1, rules={"scratch": SCRATCH_NG})
    loud = make_outcome(2, rules={"scratch": SCRATCH_NG}, alert_probability=0.8)
    sent, metrics = announced(tmp_path, quiet, loud)
    (alert,) = alerts(sent)
    assert alert["unique_id"] == loud.unique_id
    assert alert["verdict"] == "NG" and alert["alarms"] == []
    assert alert["labels"] == ["scratch"] and alert["max_probability"] == 0.9
    assert metrics.counters["alerts"] == 1


def test_an_alarm_and_a_detection_at_the_alert_probability_send_one_alert(
    tmp_path: Path,
) -> None:
    rules = {"scratch": SCRATCH_NG, "no_scratch": SCRATCH_ALARM}
    outcome = make_outcome(1, rules=rules, alert_probability=0.8)
    sent, metrics = announced(tmp_path, outcome)
    (alert,) = alerts(sent)
    assert alert["verdict"] == "NG" and alert["alert_probability"] == 0.8
    assert [d["label"] for d in alert["detected_objects"]] == ["scratch"]
    assert [(a["rule"], a["yields"]) for a in alert["alarms"]] == [("no_scratch", "alarm")]
    assert metrics.counters["alerts"] == 1


def test_an_alarm_on_an_empty_frame_is_stored_and_alerted(tmp_path: Path) -> None:
    rules = {"operator": {"kind": "count", "classes": ["person"], "min": 1, "yields": "alarm"}}
    empty = nothing_found(make_outcome(1, rules=rules, store_all_inferences=False))
    calm = nothing_found(make_outcome(2, store_all_inferences=False))
    sent, metrics = announced(tmp_path, empty, calm)
    assert {b["unique_id"] for o, b in sent if o == "inference"} == {empty.unique_id}
    (alert,) = alerts(sent)
    assert [(a["rule"], a["count"]) for a in alert["alarms"]] == [("operator", 0)]
    assert metrics.counters["not_stored"] == 1


def test_a_replayed_entry_sends_the_same_alert(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    Database(url).create_schema()
    images = tmp_path / "data" / "images"
    refused: Sent = []

    def refuse_alerts(output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        if output == "alerts":
            refused.append((output, body))
            raise ConnectionError("edgeHub away")
        on_sent()

    outcome = make_outcome(1, rules={"no_scratch": SCRATCH_ALARM})
    writer = OutcomeWriter(
        images, Database(url), refuse_alerts, PipelineMetrics(), OWNER, upload_receipts=False
    )
    writer.submit(outcome)
    writer.start()
    writer.stop()
    assert journaled(images) == [outcome.unique_id]

    again: Sent = []
    writer = OutcomeWriter(
        images, Database(url), acking(again), PipelineMetrics(), OWNER, upload_receipts=False
    )
    writer.start()
    writer.stop()
    assert alerts(again) == alerts(refused) and len(alerts(again)) == 1
    assert journaled(images) == []
