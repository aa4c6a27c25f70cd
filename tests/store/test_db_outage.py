"""Fault tests: the database server stops while a CIS module runs, then starts again; or it is down
when the module starts.

A private MariaDB (its own data folder and port; the system server is never touched) is stopped
cleanly. Rows wait in the spool meanwhile; when it is back they are written, in order (after the schema
is created when the module could not create it at start), and at the end the table holds exactly one
row per inference made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.store.schema import inference_data
from tests.cis import conftest as cis
from tests.factories import wait_for
from tests.services import PrivateMariaDB

pytestmark = [pytest.mark.slow, pytest.mark.mysql]


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.install()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    """The CIS tests' constant YOLOv8 model as ``const/1``."""
    return cis.write_const_model(tmp_path / "models")


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    return cis.write_frames(tmp_path / "frames")


def rows(url: str) -> list[tuple[str, object]]:
    """(unique_id, created) of every row, in insertion order."""
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            t = inference_data
            return [(r.unique_id, r.created) for r in conn.execute(select(t).order_by(t.c.id))]
    finally:
        db.close()


def desired(frames: Path) -> dict[str, object]:
    return {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_id": "cam-9",
        "camera_fps": 20,
        "inference_fps": 10,
        "model_name": "const",
        "model_version": "1",
        "store_raw_frames": False,
        "retrain_interval_s": 3600,
    }


def test_database_stops_and_starts_every_inference_stored_once_in_order(
    tmp_path: Path, mariadb: PrivateMariaDB, model_root: Path, frames: Path
) -> None:
    paths = Paths(assets=tmp_path, models=model_root, data=tmp_path / "data")
    cis = CisService(
        InProcessBroker([]).hub("cam", desired(frames)),
        paths,
        Database(mariadb.url),
        report_every_s=0.2,
    )
    cis.start()
    try:
        assert wait_for(lambda: len(rows(mariadb.url)) >= 5, timeout=120)
        pipeline = cis.pipeline
        assert pipeline is not None
        mariadb.stop()
        assert wait_for(lambda: pipeline.writer.spool.pending >= 20, timeout=180)
        assert cis.status()["status"]["pending_rows"] >= 20
        mariadb.start()
        spooled = pipeline.metrics.counters["rows_spooled"]
        assert wait_for(lambda: pipeline.writer.spool.pending == 0, timeout=180)
        assert wait_for(lambda: pipeline.metrics.counters["rows_written"] >= 5, timeout=120)
    finally:
        cis.stop()
    counters = pipeline.metrics.counters
    stored = rows(mariadb.url)
    assert spooled >= 20
    assert counters["dropped_outcomes"] == 0 and counters["write_errors"] == 0
    assert len(stored) == counters["inferences"]
    assert len({uid for uid, _ in stored}) == len(stored)
    created = [c for _, c in stored]
    assert created == sorted(created)
    assert pipeline.writer.pending_rows == 0


def test_module_starts_with_the_database_down_and_creates_the_schema_when_it_is_back(
    tmp_path: Path, mariadb: PrivateMariaDB, model_root: Path, frames: Path
) -> None:
    mariadb.stop()
    paths = Paths(assets=tmp_path, models=model_root, data=tmp_path / "data")
    up = parse_route("up", "FROM /messages/modules/cam/outputs/inference INTO $upstream")
    broker = InProcessBroker([up])
    cis = CisService(
        broker.hub("cam", desired(frames)), paths, Database(mariadb.url), report_every_s=0.2
    )
    cis.start()
    try:
        pipeline = cis.pipeline
        assert pipeline is not None
        assert wait_for(lambda: pipeline.writer.spool.pending >= 5, timeout=120)
        status = cis.status()["status"]
        assert status["state"] == "degraded"
        assert any(r.startswith("database unreachable") for r in status["reasons"])
        spooled = {m.json()["unique_id"] for _, _, m in broker.upstream}
        assert len(spooled) >= 5  # durable in the spool, so announced
        mariadb.start()
        assert wait_for(lambda: pipeline.writer.spool.pending == 0, timeout=180)
        assert wait_for(lambda: cis.status()["status"]["state"] == "running", timeout=60)
    finally:
        cis.stop()
    stored = rows(mariadb.url)
    assert spooled <= {uid for uid, _ in stored}
    assert len(stored) == pipeline.metrics.counters["inferences"]
    assert len({uid for uid, _ in stored}) == len(stored)
    db = Database(mariadb.url)
    assert db.schema_revision() == "0006"
    db.close()
