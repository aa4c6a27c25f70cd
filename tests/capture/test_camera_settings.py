"""How the CIS pipeline applies camera settings: live through ``configure``, else by reopening."""

from __future__ import annotations

import cv2
import numpy as np

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from tests.capture.conftest import wait_for


def test_live_settings_keep_the_capture_thread_and_others_restart_it(tmp_path, models_dir):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.jpg"), np.full((48, 64, 3), i * 60, np.uint8))
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker([])
    desired = {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_fps": 20,
        "model_name": "const",
        "model_version": "1",
    }
    cis = CisService(
        broker.hub("cam", desired), paths, Database(f"sqlite:///{tmp_path / 'c.db'}"), 0.2
    )
    cis.start()
    hub = broker.hub("cam")

    def patch(values: dict) -> bool:
        version = broker.patch_desired("cam", values)
        return wait_for(lambda: hub.get_twin()["reported"]["config"]["applied_version"] == version)

    try:
        pipeline = cis.pipeline
        assert pipeline is not None
        grabber = pipeline.grabber
        # camera features mean nothing to a folder: nothing to reopen
        assert patch({"camera_exposure_us": 900})
        assert pipeline.grabber is grabber
        # a trigger mode makes the pipeline keep every frame: the capture restarts
        assert patch({"camera_trigger": True})
        assert pipeline.grabber is not grabber
        grabber = pipeline.grabber
        other = tmp_path / "other"
        other.mkdir()
        cv2.imwrite(str(other / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
        assert patch({"camera_uri": str(other)})
        assert pipeline.grabber is not grabber
        assert wait_for(lambda: pipeline.status()["camera"]["source"] == f"folder:{other}")
        reported = hub.get_twin()["reported"]["config"]["settings"]
        assert reported["camera_exposure_us"] == 900 and reported["camera_trigger"] is True
    finally:
        cis.stop()
