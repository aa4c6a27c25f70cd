"""Drift detection in a running CIS: set the reference by direct method, knock the camera, get one
``drift`` alert on the ``alerts`` output, the figures in the reported status, and the drifting
camera's frames kept for retraining."""

from __future__ import annotations

import itertools
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import cv2

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord
from tests.cis.drift_scenes import LineCamera
from tests.factories import recent, wait_for

ROUTES = [
    parse_route("alerts", "FROM /messages/modules/cam/outputs/alerts INTO $upstream"),
]


def write_frames(folder: Path, camera: LineCamera, **view: float) -> None:
    """Four frames of the camera's view (replacing any there, each atomically)."""
    folder.mkdir(exist_ok=True)
    for i in range(4):
        ok, png = cv2.imencode(".png", camera.frame(**view))
        assert ok
        tmp = folder / f".f{i}.tmp"
        tmp.write_bytes(png.tobytes())
        os.replace(tmp, folder / f"f{i}.png")


def kept_for_drift(db: Database) -> list[InferenceRecord]:
    return [r for r in recent(db, 1000) if r.retrain_reason == "drift"]


def drift_alerts(broker: InProcessBroker) -> list[dict]:
    bodies = [m.json() for _, output, m in broker.upstream if output == "alerts"]
    return [b for b in bodies if b.get("kind") == "drift"]


def test_a_knocked_camera_gives_exactly_one_drift_alert(tmp_path: Path, models_dir: Path) -> None:
    camera, frames = LineCamera(), tmp_path / "frames"
    write_frames(frames, camera)
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker(ROUTES)
    desired = {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_id": "cam-9",
        "camera_fps": 10,
        "inference_fps": 0,
        "model_name": "const",
        "model_version": "1",
        "store_all_inferences": False,
        "drift_every_s": 0.2,
        "drift_consecutive": 2,
        "retrain_interval_s": 0,
        "retrain_drift_gap_s": 0.5,
    }
    db = Database(f"sqlite:///{tmp_path / 'data' / 'cis.db'}")
    cis = CisService(broker.hub("cam", desired), paths, db, report_every_s=0.2)
    cis.start()
    try:
        hub = broker.hub("cam")
        assert cis.pipeline is not None and cis.pipeline.models.wait_ready(20)
        code, answer = hub.call_method("set_reference", {"timeout_s": 10})
        assert code == 200 and answer["camera_id"] == "cam-9" and answer["camera_check"]

        def drift() -> dict:
            return hub.call_method("status", None)[1]["status"]["drift"]

        assert wait_for(lambda: drift().get("checks", 0) >= 5)
        assert drift()["reference"]["taken_at"] == answer["taken_at"]
        assert drift()["figures"]["shift_px"] < 5 and drift_alerts(broker) == []
        assert [r for r in recent(db, 1000) if r.retrain_reason] == []

        write_frames(frames, camera, dx=40, dy=30)  # the camera is knocked
        assert wait_for(lambda: drift_alerts(broker) != [])
        checks = drift()["checks"]
        assert wait_for(lambda: drift().get("checks", 0) >= checks + 10)
        alerts = drift_alerts(broker)
        assert len(alerts) == 1, alerts
        body = alerts[0]
        assert (body["alert"], body["state"], body["camera_id"]) == (
            "camera_moved",
            "raised",
            "cam-9",
        )
        assert abs(body["value"] - 50) < 5 and body["threshold"] == 20.0
        assert set(drift()["alerts"]) == {"camera_moved"}
        assert wait_for(  # a raised alert is a new key: reported at once, not once a minute
            lambda: (
                set(hub.get_twin()["reported"]["status"]["drift"]["alerts"]) == {"camera_moved"}
            ),
            timeout=5,
        )
        view = json.loads((paths.data / "drift" / "cam-9.json").read_text())
        assert set(view["alerts"]) == {"camera_moved"} and view["figures"]["shift_px"] > 40

        raised_at = datetime.fromisoformat(body["raised_at"].replace("Z", "+00:00"))
        assert wait_for(lambda: len(kept_for_drift(db)) >= 3)
        kept = kept_for_drift(db)
        times = sorted(r.created for r in kept)
        # none before the alert (a frame captured while the check ran at most), the first at once
        assert timedelta(seconds=-1) < times[0] - raised_at < timedelta(seconds=2)
        assert all(b - a >= timedelta(seconds=0.45) for a, b in itertools.pairwise(times))
        assert all((paths.images / str(r.retrain_image_name)).is_file() for r in kept)
    finally:
        cis.stop()
