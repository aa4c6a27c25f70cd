"""Trigger messages: the next frame is inferred, stored and announced with the trigger's id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mfgvision.cis.messages import TRIGGER_INPUT
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from tests.cis.conftest import RunningCis
from tests.factories import recent, wait_for


def _triggered(broker: InProcessBroker) -> dict[str, dict]:
    bodies = [m.json() for _, output, m in list(broker.upstream) if output == "inference"]
    return {b["trigger_id"]: b for b in bodies if "trigger_id" in b}


def test_a_trigger_message_is_answered_by_an_announced_inference_carrying_its_id(
    start_cis: Callable[[dict[str, Any]], RunningCis],
) -> None:
    running = start_cis(
        {
            "camera_id": "cam-9",
            "inference_fps": 0.01,
            # above every score of the model: each inference is OK, and OK ones are not stored
            "prob_threshold": 0.95,
            "store_all_inferences": False,
        }
    )
    broker, cis, reader = running.broker, running.cis, running.reader
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
