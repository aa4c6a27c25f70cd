"""The CIS ``alerts`` output: one message per inference with a detection at or above
``alert_probability``, routed like any output."""

from __future__ import annotations

from datetime import datetime, timezone

from mfgvision.cis.messages import ALERTS_OUTPUT, OUTPUTS, alert_message
from mfgvision.cis.service import CisService
from mfgvision.deploy.control import wait_until
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.inference.types import Box, Detection
from mfgvision.runtime import Paths
from mfgvision.settings import CisSettings, parse_settings
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord
from tests.edge.standin_env import write_assets
from tests.factories import make_record


def _record(*probabilities: float) -> InferenceRecord:
    box = Box(1, 2, 30, 40)
    dets = [
        Detection(i, f"c{i}", p, box, Box(0.0, 0.0, 0.1, 0.1)) for i, p in enumerate(probabilities)
    ]
    return make_record(
        unique_id="u1",
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        camera_id="cam-1",
        detections=dets,
        annotated_image_name="a.jpg",
    )


def test_alert_message_only_for_detections_at_or_above_the_threshold():
    assert alert_message(_record(0.9, 0.4), "line1", "top", 0.0) is None  # 0 = off
    assert alert_message(_record(0.5), "line1", "top", 0.8) is None
    body = alert_message(_record(0.9, 0.4, 0.8), "line1", "top", 0.8)
    assert body is not None
    assert body["labels"] == ["c0", "c2"] and body["max_probability"] == 0.9
    assert [d["probability"] for d in body["detected_objects"]] == [0.9, 0.8]
    assert body["created"] == "2026-01-02T03:04:05.000000Z"
    assert body["alert_probability"] == 0.8 and body["annotated_image_name"] == "a.jpg"
    assert ALERTS_OUTPUT in OUTPUTS


def test_alert_probability_setting_defaults_to_off_and_is_validated():
    assert parse_settings(CisSettings, {}).alert_probability == 0.0
    assert parse_settings(CisSettings, {"alert_probability": 0.75}).alert_probability == 0.75
    try:
        parse_settings(CisSettings, {"alert_probability": 1.5})
    except ValueError as exc:
        assert "alert_probability" in str(exc)
    else:
        raise AssertionError("1.5 accepted")


def test_the_cis_sends_alerts_upstream_when_enabled(tmp_path):
    models, frames = write_assets(tmp_path)
    routes = [
        parse_route("alerts", "FROM /messages/modules/cam/outputs/alerts INTO $upstream"),
        parse_route("inf", "FROM /messages/modules/cam/outputs/inference INTO $upstream"),
    ]
    broker = InProcessBroker(routes)
    desired = {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_fps": 20,
        "inference_fps": 0,
        "model_name": "const",
        "model_version": "1",
        "prob_threshold": 0.5,
        "alert_probability": 0.8,  # the model reports 0.9 and 0.7: one of them alerts
    }
    paths = Paths(assets=tmp_path, models=models, data=tmp_path / "data")
    cis = CisService(
        broker.hub("cam", desired), paths, Database(f"sqlite:///{tmp_path / 'c.db'}"), 0.2
    )
    cis.start()
    try:

        def outputs(name: str) -> list:
            return [m for _, o, m in list(broker.upstream) if o == name]

        assert wait_until(lambda: len(outputs("alerts")) >= 2, 120)
        alert = outputs("alerts")[0].json()
        assert alert["schema"] == "mfgvision.alert/2"
        assert [d["label"] for d in alert["detected_objects"]] == ["scratch"]
        assert len(outputs("inference")) >= len(outputs("alerts"))
        version = broker.patch_desired("cam", {"alert_probability": 0})
        hub = broker.hub("cam")
        assert wait_until(
            lambda: hub.get_twin()["reported"]["config"]["applied_version"] == version, 60
        )
        seen = len(outputs("inference"))
        # outcomes already queued for the writer (at most 32) still carry the old settings
        assert wait_until(lambda: len(outputs("inference")) >= seen + 40, 120)
        later = {m.json()["unique_id"] for m in outputs("inference")[seen + 33 :]}
        alerted = {m.json()["unique_id"] for m in outputs("alerts")}
        assert later and not later & alerted
    finally:
        cis.stop()
