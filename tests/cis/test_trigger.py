"""Trigger messages: the next frame is inferred, stored and announced with the trigger's id."""

from __future__ import annotations

from pathlib import Path

from mfgvision.cis.messages import TRIGGER_INPUT
from mfgvision.cis.service import CisService
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from tests.factories import recent, wait_for

ROUTES = [parse_route("up", "FROM /messages/modules/cam/outputs/inference INTO $upstream")]


def _triggered(broker: InProcessBroker) -> dict[str, dict]:
    bodies = [m.json() for _, output, m in list(broker.upstream) if output == "inference"]
    return {b["trigger_id"]: b for b in bodies if "trigger_id" in b}


def test_a_trigger_message_is_answered_by_an_announced_inference_carrying_its_id(
    tmp_path: Path, models_dir: Path, frames_dir: Path
) -> None:
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker(ROUTES)
    db_url = f"sqlite:///{tmp_path / 'data' / 'cis.db'}"
    desired = {
        "camera_type": "folder",
        "camera_uri": str(frames_dir),
        "camera_id": "cam-9",
        "camera_fps": 20,
        "inference_fps": 0.01,
        "model_name": "const",
        "model_version": "1",
        # above every score of the model: each inference is OK, and OK ones are not stored
        "prob_threshold": 0.95,
        "store_all_inferences": False,
    }
    cis = CisService(broker.hub("cam", desired), paths, Database(db_url), report_every_s=0.2)
    cis.start()
    reader = Database(db_url)
    try:
        assert cis.pipeline is not None and cis.pipeline.models.wait_ready(20)
        hub = broker.hub("cam")
        for body in (
            {"trigger_id": "t-1", "camera_id": "cam-9"},
            {"trigger_id": "t-other", "camera_id": "another-camera"},
            {"trigger_id": "t-2", "camera_id": "cam-9"},
        ):
            hub.deliver(TRIGGER_INPUT, HubMessage.from_json(body))
        assert wait_for(lambda: {"t-1", "t-2"} <= set(_triggered(broker)), 30)
        triggered = _triggered(broker)
        assert set(triggered) == {"t-1", "t-2"}
        for body in triggered.values():
            assert body["camera_id"] == "cam-9" and body["object_detected"] is False
        stored = {r.unique_id for r in recent(reader, 100)}
        assert {b["unique_id"] for b in triggered.values()} <= stored
        free_running = [m for _, _, m in broker.upstream if "trigger_id" not in m.json()]
        assert free_running == []
    finally:
        cis.stop()
        reader.close()
