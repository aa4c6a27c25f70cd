"""The LineBridge module over the in-process hub: results in, sinks fed, triggers answered by a CIS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfgvision.cis.service import CisService
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.line_bridge.results import NG, OK
from mfgvision.line_bridge.service import INFERENCE_INPUT, LineBridgeService
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.store.status import STATUS_FOLDER, write_status
from tests.factories import wait_for
from tests.line_bridge.conftest import RecordingSink, inference_body

ROUTES = [
    parse_route(
        "inference",
        'FROM /messages/modules/CIS1/outputs/inference INTO BrokeredEndpoint("/modules/LineBridge/inputs/inference")',
    ),
    parse_route(
        "trigger",
        'FROM /messages/modules/LineBridge/outputs/trigger INTO BrokeredEndpoint("/modules/CIS1/inputs/trigger")',
    ),
    parse_route("up", "FROM /messages/modules/LineBridge/outputs/trigger INTO $upstream"),
]


def start_bridge(
    tmp_path: Path, broker: InProcessBroker, desired: dict | None = None
) -> tuple[LineBridgeService, RecordingSink]:
    sink = RecordingSink()
    paths = Paths(assets=tmp_path, models=tmp_path / "models", data=tmp_path / "data")
    bridge = LineBridgeService(
        broker.hub("LineBridge", {"status_poll_s": 0.1, **(desired or {})}),
        paths,
        extra_sinks=[sink],
    )
    bridge.start()
    return bridge, sink


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[tuple[LineBridgeService, RecordingSink, InProcessBroker]]:
    broker = InProcessBroker(ROUTES)
    service, sink = start_bridge(tmp_path, broker, {"trigger_timeout_s": 0.3, "fail_safe": "OK"})
    yield service, sink, broker
    service.stop()
    assert sink.stopped


def deliver(broker: InProcessBroker, body: object) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    broker.hub("LineBridge").deliver(INFERENCE_INPUT, HubMessage(data, {}))


def test_results_reach_every_sink_bad_ones_are_counted_and_replays_dropped(bridge) -> None:
    service, sink, broker = bridge
    good = [inference_body("cam-1", ("hole",)), inference_body("cam-1"), inference_body("cam-2")]
    deliver(broker, good[0])
    deliver(broker, b"{not json")
    deliver(broker, {"camera_id": "cam-1"})
    deliver(broker, [1, 2])
    deliver(broker, good[1])
    deliver(broker, good[0])  # a replay
    deliver(broker, good[2])
    assert wait_for(lambda: len(sink.inspections()) == 3, 10)
    assert [i.unique_id for i in sink.inspections()] == [b["unique_id"] for b in good]
    counters = service.status()["status"]
    assert counters["rejected"] == 3 and counters["duplicates"] == 1
    assert counters["inspections"] == 3
    state, inspection = sink.calls[-1]
    assert inspection is not None and inspection.camera_id == state.camera_id == "cam-2"
    assert (state.verdict, state.inspections) == (OK, 1)
    cam1 = service.status()["status"]["cameras"]["cam-1"]
    assert (cam1["verdict"], cam1["inspections"], cam1["ng_count"]) == (OK, 2, 1)
    assert service.status()["status"]["last_rejected"]["error"]


def test_the_verdict_and_the_rules_that_fired_come_from_the_message(bridge) -> None:
    service, sink, broker = bridge
    fired = [
        {"rule": "seal", "kind": "defect", "yields": "NG", "zone": "seal", "class": "scratch"},
        {"rule": "helmet", "kind": "required_with", "yields": "alarm", "zone": None},
        {"rule": "seal", "kind": "defect", "yields": "NG", "zone": "lip", "class": "scratch"},
    ]
    bodies = [
        inference_body("cam-1", ("scratch",), verdict=OK, rules=[]),  # on a flange: passes
        inference_body("cam-1", (), verdict=NG, rules=fired[:1]),  # a count short: NG
        inference_body("cam-1", ("scratch", "person"), verdict=NG, rules=fired),
        inference_body("cam-1", ("hole",)),  # from a CIS before verdicts were sent
        inference_body("cam-1", ("hole",), verdict="maybe"),
    ]
    for body in bodies:
        deliver(broker, body)
    assert wait_for(lambda: len(sink.inspections()) == 4, 10)
    assert [(i.verdict, i.defects, i.rules) for i in sink.inspections()] == [
        (OK, ("scratch",), ()),
        (NG, (), ("seal",)),
        (NG, ("person", "scratch"), ("seal", "helmet")),
        (NG, ("hole",), ()),
    ]
    assert service.status()["status"]["rejected"] == 1
    assert "verdict" in service.status()["status"]["last_rejected"]["error"]


def test_a_camera_module_state_change_is_passed_on(bridge, tmp_path: Path) -> None:
    _service, sink, _broker = bridge
    folder = tmp_path / "data" / STATUS_FOLDER
    config = {"settings": {"camera_location": "line7", "camera_position": "side"}}
    write_status(folder, "cam-7", "CIS7", {"status": {"state": "running"}, "config": config})
    assert wait_for(lambda: [s.state for s in sink.states()] == ["running"], 10)
    assert (sink.states()[0].location, sink.states()[0].position) == ("line7", "side")
    write_status(folder, "cam-7", "CIS7", {"status": {"state": "camera_error"}})
    assert wait_for(lambda: [s.state for s in sink.states()] == ["running", "camera_error"], 10)
    assert sink.states()[-1].camera_id == "cam-7"


def test_a_trigger_nobody_answers_gives_the_fail_safe_and_its_late_result_is_not_a_part(
    bridge,
) -> None:
    service, sink, broker = bridge
    with pytest.raises(TimeoutError):
        service.trigger("cam-1", 0.2)
    [fail_safe] = sink.inspections()
    assert fail_safe.fail_safe and fail_safe.verdict == OK and fail_safe.camera_id == "cam-1"
    [(_, _, sent)] = broker.upstream
    assert sent.json()["camera_id"] == "cam-1"
    deliver(broker, inference_body("cam-1", ("hole",), trigger_id=sent.json()["trigger_id"]))
    assert wait_for(lambda: service.status()["status"]["late"] == 1, 10)
    assert len(sink.inspections()) == 1
    assert service.status()["status"]["fail_safe"] == 1


def test_settings_apply_live_and_bad_ones_leave_the_last_good_in_force(bridge) -> None:
    service, sink, broker = bridge
    broker.patch_desired("LineBridge", {"fail_safe": "NG"})
    assert wait_for(lambda: service.status()["config"]["settings"]["fail_safe"] == NG, 10)
    with pytest.raises(TimeoutError):
        service.trigger("cam-1", 0.1)
    assert sink.inspections()[-1].verdict == NG
    broker.patch_desired("LineBridge", {"fail_safe": "maybe"})
    assert wait_for(
        lambda: "fail_safe" in (service.status()["config"]["error"] or {}).get("keys", {}), 10
    )
    broker.patch_desired("LineBridge", {"fail_safe": None, "mqtt": {"password": "x"}})
    assert wait_for(lambda: "password" in str(service.status()["config"]["error"]), 10)
    with pytest.raises(TimeoutError):
        service.trigger("cam-1", 0.1)
    assert sink.inspections()[-1].verdict == NG


def test_a_trigger_is_answered_by_the_cameras_fresh_inspection(
    tmp_path: Path, models_dir: Path, frames_dir: Path
) -> None:
    broker = InProcessBroker(ROUTES)
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    cis_desired = {
        "camera_type": "folder",
        "camera_uri": str(frames_dir),
        "camera_id": "cam-9",
        "camera_location": "line9",
        "camera_position": "left",
        "camera_fps": 20,
        "inference_fps": 0.01,
        "model_name": "const",
        "model_version": "1",
        "store_all_inferences": False,
    }
    db = Database(f"sqlite:///{tmp_path / 'data' / 'cis.db'}")
    cis = CisService(broker.hub("CIS1", cis_desired), paths, db, report_every_s=0.2)
    cis.start()
    service, sink = start_bridge(tmp_path, broker, {"trigger_timeout_s": 10})
    try:
        assert cis.pipeline is not None and cis.pipeline.models.wait_ready(20)
        answers = [service.trigger("cam-9", 10) for _ in range(3)]
        sent = [m.json()["trigger_id"] for _, _, m in broker.upstream]
        assert [a.trigger_id for a in answers] == sent
        assert all(a.verdict == NG and set(a.defects) == {"scratch", "hole"} for a in answers)
        assert [i.trigger_id for i in sink.inspections() if i.trigger_id] == sent
        assert (answers[0].location, answers[0].position) == ("line9", "left")
        assert service.status()["status"]["parts"] == 3
    finally:
        service.stop()
        cis.stop()


def test_a_connection_that_cannot_be_built_leaves_the_module_running_degraded(
    bridge, tmp_path: Path
) -> None:
    service, sink, broker = bridge
    mqtt = {"enabled": True, "tls": True, "ca_file": str(tmp_path / "missing-ca.pem")}
    broker.patch_desired("LineBridge", {"mqtt": mqtt})
    assert wait_for(lambda: service.status()["status"]["state"] == "degraded", 10)
    assert "connections not built" in service.status()["status"]["reasons"][0]
    deliver(broker, inference_body("cam-1"))
    assert wait_for(lambda: len(sink.inspections()) == 1, 10)
    broker.patch_desired("LineBridge", {"mqtt": {"enabled": False}})
    assert wait_for(lambda: service.status()["status"]["state"] == "running", 10)
