"""A CIS whose data volume fills up (a real tmpfs): rows are kept, images are skipped with a counted
reason and the rows say so, the state is ``degraded`` with the reason, and everything recovers without
a restart once space is free again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from tests import services
from tests.factories import recent, wait_for
from tests.services import mariadb_url  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.mysql]
CAMERA = "cam-full"


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    with services.tmpfs(tmp_path / "volume", "32m") as mounted:
        yield mounted


def test_full_disk_keeps_rows_skips_images_and_recovers(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    volume: Path,
    models_dir: Path,
    frames_dir: Path,
) -> None:
    url = request.getfixturevalue("mariadb_url")  # rows go to a server off the full volume
    paths = Paths(assets=tmp_path, models=models_dir, data=volume / "data")
    desired = {
        "camera_type": "folder",
        "camera_uri": str(frames_dir),
        "camera_id": CAMERA,
        "camera_fps": 20,
        "inference_fps": 10,
        "model_name": "const",
        "model_version": "1",
        "retrain_interval_s": 3600,
    }
    db = Database(url)
    cis = CisService(
        InProcessBroker([]).hub("cam", desired), paths, Database(url), report_every_s=0.5
    )
    cis.start()
    try:
        pipeline = cis.pipeline
        assert pipeline is not None
        counters = pipeline.metrics.counters
        assert wait_for(lambda: counters["rows_written"] >= 2, timeout=60)
        filler = services.fill(volume)
        assert wait_for(lambda: counters["images_skipped_disk_full"] >= 4, timeout=60)
        status = cis.status()["status"]
        assert status["state"] == "degraded"
        assert "images not written: disk full" in status["reasons"]
        assert wait_for(lambda: recent(db, 1, CAMERA)[0].image_error is not None, timeout=60)
        row = recent(db, 1, CAMERA)[0]
        assert row.image_error == "disk full: annotated, raw not written"
        assert row.annotated_image_name is None and row.raw_image_name is None

        filler.unlink()
        assert wait_for(lambda: cis.status()["status"]["state"] == "running", timeout=60)
        assert wait_for(lambda: recent(db, 1, CAMERA)[0].image_error is None, timeout=60)
        row = recent(db, 1, CAMERA)[0]
        assert (paths.images / str(row.annotated_image_name)).exists()
    finally:
        cis.stop()
        db.close()
    assert counters["dropped_outcomes"] == 0 and counters["write_errors"] == 0
    assert counters["rows_written"] + counters["rows_spooled"] == counters["inferences"]
