"""Drift detection on generated sequences with known answers: a steady line, a knocked, turned,
defocused or darkened camera, a model whose answers change; what survives a restart, and what is
recorded for the dashboard."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mfgvision.cis.drift.alerts import RULES
from mfgvision.cis.drift.monitor import DriftMonitor
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.settings import CisSettings
from mfgvision.store.drift import frame_path, read_history, read_view
from tests.cis.drift_scenes import Hub, LineCamera, check, outcome, take_reference
from tests.factories import make_detection

CAMERA = "cam-d"


def settings(**extra: Any) -> CisSettings:
    return CisSettings(camera_id=CAMERA, drift_every_s=0.001, **extra)


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Callable[..., DriftMonitor]]:
    """Starts drift monitors on one data folder (a restart is a second one); stops them all."""
    started: list[DriftMonitor] = []

    def start(s: CisSettings, hub: Hub) -> DriftMonitor:
        m = DriftMonitor(tmp_path / "drift", hub, s, PipelineMetrics())
        m.start()
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def camera() -> LineCamera:
    return LineCamera()


def test_a_steady_line_raises_nothing(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    assert m.status()["reference"] is None
    answer = take_reference(m, outcome(camera.frame(), s))
    assert answer["camera_check"] and answer["frame"] == {"width": 1280, "height": 720}
    worst: dict[str, float] = {}
    for _ in range(40):
        figures = check(m, outcome(camera.frame(), s))["figures"]
        for name, value in figures.items():
            worst[name] = max(worst.get(name, 0.0), abs(value))
    assert hub.taken == [] and m.status()["alerts"] == {}
    assert worst["shift_px"] < 3 and worst["rotation_deg"] < 0.3
    for name in ("brightness", "contrast", "saturation", "sharpness"):  # below even the clear level
        assert worst[f"{name}_change"] < s.drift_clear_ratio * getattr(s, f"drift_{name}"), name


@pytest.mark.parametrize(("dx", "dy"), [(30, -20), (0, 45)])
def test_a_knocked_camera_raises_camera_moved_once_with_its_shift(monitor, camera, dx, dy) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    take_reference(m, outcome(camera.frame(), s))
    for _ in range(8):
        check(m, outcome(camera.frame(dx=dx, dy=dy), s))
    assert hub.changes() == [("camera_moved", "raised")]
    output, body = hub.taken[0]
    assert output == "alerts" and body["kind"] == "drift" and body["camera_id"] == CAMERA
    assert (body["detector"], body["figure"], body["threshold"]) == ("camera", "shift_px", 20.0)
    assert body["value"] == pytest.approx(np.hypot(dx, dy), abs=3)
    assert body["raised_at"].endswith("Z") and body["cleared_at"] is None
    assert m.status()["alerts"]["camera_moved"]["figure"] == "shift_px"
    for _ in range(8):  # put back where it was
        check(m, outcome(camera.frame(), s))
    assert hub.changes() == [("camera_moved", "raised"), ("camera_moved", "cleared")]
    cleared = hub.taken[1][1]
    assert cleared["raised_at"] == body["raised_at"] and cleared["cleared_at"] >= body["raised_at"]
    assert cleared["value"] < 0.7 * 20 and m.status()["alerts"] == {}


def test_a_turned_camera_raises_camera_moved_with_its_rotation(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    take_reference(m, outcome(camera.frame(), s))
    for _ in range(5):
        check(m, outcome(camera.frame(angle=3.0), s))
    assert hub.changes() == [("camera_moved", "raised")]
    body = hub.taken[0][1]
    assert body["figure"] == "rotation_deg" and abs(body["value"]) == pytest.approx(3.0, abs=0.3)
    assert body["figures"]["shift_px"] < 5


def test_a_defocused_camera_raises_blur(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    take_reference(m, outcome(camera.frame(), s))
    for _ in range(5):
        check(m, outcome(camera.frame(blur=3.0), s))
    assert hub.changes() == [("blur", "raised")]
    body = hub.taken[0][1]
    assert (body["detector"], body["figure"]) == ("image", "sharpness_change")
    assert body["value"] < -0.4


def test_a_darker_lamp_raises_brightness(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    take_reference(m, outcome(camera.frame(), s))
    for _ in range(5):
        check(m, outcome(camera.frame(gain=0.6), s))
    raised = {alert: body for (_, body), (alert, _) in zip(hub.taken, hub.changes(), strict=True)}
    assert "brightness" in raised and "camera_moved" not in raised and "blur" not in raised
    assert raised["brightness"]["value"] == pytest.approx(-0.4, abs=0.05)


def _inferences(m: DriftMonitor, s: CisSettings, answers: list[tuple[str, float] | None]) -> None:
    """One check per inference; each answer is (class, top confidence), None for an OK part."""
    image = np.zeros((48, 64, 3), np.uint8)
    for answer in answers:
        found = [make_detection(0, answer[0], answer[1])] if answer else []
        check(m, outcome(image, s, found))


def _answers(
    n: int, ng_every: int, label: str, confidence: float
) -> list[tuple[str, float] | None]:
    return [(label, confidence) if i % ng_every == 0 else None for i in range(n)]


def test_a_confidence_shift_raises_confidence(monitor) -> None:
    s, hub = settings(drift_baseline=40, drift_window=40), Hub()
    m = monitor(s, hub)
    _inferences(m, s, _answers(40, 2, "scratch", 0.93))
    assert m.status()["baseline"] == {"inferences": 40, "of": 40}
    _inferences(m, s, _answers(40, 2, "scratch", 0.93))
    assert hub.taken == []
    _inferences(m, s, _answers(60, 2, "scratch", 0.62))  # as many NG parts, less sure
    assert hub.changes() == [("confidence", "raised")]
    body = hub.taken[0][1]
    assert body["detector"] == "model" and body["value"] > 0.25


def test_a_rise_of_the_ng_rate_raises_ng_rate(monitor) -> None:
    s, hub = settings(drift_baseline=40, drift_window=40), Hub()
    m = monitor(s, hub)
    _inferences(m, s, _answers(80, 10, "scratch", 0.9))
    assert hub.taken == []
    _inferences(m, s, _answers(60, 2, "scratch", 0.9))
    raised = [alert for alert, state in hub.changes() if state == "raised"]
    assert "ng_rate" in raised and len(raised) == len(set(raised))
    body = next(b for _, b in hub.taken if b["alert"] == "ng_rate")
    assert body["value"] > 0.1 and body["detail"]["ng_rate"]["baseline"] == pytest.approx(0.1)
    assert m.status()["figures"]["ng_rate_change"] == pytest.approx(0.4)  # the window: 1 in 2


def test_another_class_at_the_same_rate_raises_class_rate_only(monitor) -> None:
    s, hub = settings(drift_baseline=40, drift_window=40), Hub()
    m = monitor(s, hub)
    _inferences(m, s, _answers(80, 3, "scratch", 0.9))
    _inferences(m, s, _answers(60, 3, "hole", 0.9))
    assert hub.changes() == [("class_rate", "raised")]
    assert hub.taken[0][1]["detail"]["class"] in ("scratch", "hole")


def test_the_reference_and_a_raised_alert_survive_a_restart(monitor, camera, tmp_path) -> None:
    s, hub = settings(), Hub()
    first = monitor(s, hub)
    answer = take_reference(first, outcome(camera.frame(), s))
    for _ in range(4):
        check(first, outcome(camera.frame(dx=40), s))
    assert hub.changes() == [("camera_moved", "raised")]
    first.stop()
    folder = tmp_path / "drift" / CAMERA
    assert (folder / answer["image"]).is_file()
    assert json.loads((folder / "reference.json").read_text())["taken_at"] == answer["taken_at"]

    again = monitor(s, hub)
    status = again.status()
    assert status["reference"]["taken_at"] == answer["taken_at"]
    assert set(status["alerts"]) == {"camera_moved"}
    for _ in range(6):  # still moved: not raised a second time
        check(again, outcome(camera.frame(dx=40), s))
    assert hub.changes() == [("camera_moved", "raised")]
    for _ in range(4):
        check(again, outcome(camera.frame(), s))
    assert hub.changes() == [("camera_moved", "raised"), ("camera_moved", "cleared")]
    view = json.loads((tmp_path / "drift" / f"{CAMERA}.json").read_text())
    assert view["reference"]["image"] == answer["image"] and view["alerts"] == {}
    assert view["figures"]["shift_px"] < 3 and view["updated"].endswith("Z")


def test_an_alert_the_hub_did_not_take_is_sent_at_the_next_start(monitor, camera) -> None:
    s, hub = settings(), Hub()
    first = monitor(s, hub)
    take_reference(first, outcome(camera.frame(), s))
    hub.away = True
    for _ in range(5):
        check(first, outcome(camera.frame(dx=40), s))
    first.stop()
    assert hub.taken == []
    hub.away = False
    monitor(s, hub)
    assert hub.changes() == [("camera_moved", "raised")]


def test_the_model_baseline_is_kept_across_a_restart_only_once_set_up(monitor, camera) -> None:
    s, hub = settings(drift_baseline=30, drift_window=30), Hub()
    first = monitor(s, hub)
    _inferences(first, s, _answers(30, 10, "scratch", 0.9))  # a baseline after start: not kept
    first.stop()
    second = monitor(s, hub)
    assert second.status()["baseline"]["inferences"] == 0
    take_reference(second, outcome(camera.frame(), s))
    _inferences(second, s, _answers(30, 10, "scratch", 0.9))  # after set-up: kept
    second.stop()
    third = monitor(s, hub)
    assert third.status()["baseline"]["inferences"] == 30
    _inferences(third, s, _answers(40, 2, "scratch", 0.9))
    assert ("ng_rate", "raised") in hub.changes()


def test_a_baseline_saved_when_ng_meant_any_detection_is_taken_again(
    monitor, camera, tmp_path
) -> None:
    s, hub = settings(drift_baseline=30, drift_window=30), Hub()
    first = monitor(s, hub)
    take_reference(first, outcome(camera.frame(), s))
    _inferences(first, s, _answers(30, 10, "scratch", 0.9))
    first.stop()
    state_file = tmp_path / "drift" / CAMERA / "state.json"
    state = json.loads(state_file.read_text())
    counts = state["baseline"]["counts"]
    counts["ng"] = counts.pop("ng_verdicts")  # as the previous release saved it
    state["baseline"]["key"] = state["baseline"]["key"][:4]
    state_file.write_text(json.dumps(state))
    again = monitor(s, hub)
    assert again.status()["reference"] is not None
    assert again.status()["baseline"]["inferences"] == 0
    _inferences(again, s, _answers(30, 10, "scratch", 0.9))
    assert again.status()["baseline"]["inferences"] == 30


SCREW_PRESENT = {"kind": "count", "classes": ["screw"], "min": 1}


def test_missing_parts_by_a_count_rule_raise_the_ng_rate(monitor) -> None:
    s, hub = settings(drift_baseline=40, drift_window=40, rules={"screw": SCREW_PRESENT}), Hub()
    m = monitor(s, hub)
    _inferences(m, s, [("screw", 0.9)] * 40)  # every part there: OK
    _inferences(m, s, _answers(60, 2, "screw", 0.9))  # half of them missing: NG
    assert ("ng_rate", "raised") in hub.changes()
    body = next(b for _, b in hub.taken if b["alert"] == "ng_rate")
    assert body["value"] > 0.1 and body["detail"]["ng_rate"]["baseline"] == 0.0  # a rise
    assert m.status()["figures"]["ng_rate_change"] == pytest.approx(0.5)  # the window: 1 in 2


def test_detections_the_rules_let_pass_leave_the_ng_rate_alone(monitor) -> None:
    holes = {"kind": "defect", "classes": ["hole"]}
    s, hub = settings(drift_baseline=40, drift_window=40, rules={"hole": holes}), Hub()
    m = monitor(s, hub)
    _inferences(m, s, [None] * 40)
    _inferences(m, s, _answers(60, 2, "scratch", 0.9))  # scratches, OK by the rules
    assert ("class_rate", "raised") in hub.changes()
    assert "ng_rate" not in {alert for alert, _ in hub.changes()}
    assert m.status()["figures"]["ng_rate_change"] == 0.0


def test_other_rules_start_the_baseline_again(monitor) -> None:
    s, hub = settings(drift_baseline=20, drift_window=20, rules={"screw": SCREW_PRESENT}), Hub()
    m = monitor(s, hub)
    _inferences(m, s, [("screw", 0.9)] * 20)
    assert m.status()["baseline"]["inferences"] == 20
    same = settings(drift_baseline=20, drift_window=20, rules={"screw": SCREW_PRESENT})
    _inferences(m, same, [("screw", 0.9)])  # the same rules, settings made again
    assert m.status()["baseline"]["inferences"] == 20
    two = settings(drift_baseline=20, drift_window=20, rules={"screw": {**SCREW_PRESENT, "min": 2}})
    _inferences(m, two, [("screw", 0.9)])
    assert m.status()["baseline"]["inferences"] == 1


def test_set_reference_without_frames_times_out_and_takes_none_later(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    with pytest.raises(TimeoutError):
        m.set_reference(0.2)
    check(m, outcome(camera.frame(), s))
    assert m.status()["reference"] is None


def test_frames_of_another_size_than_the_reference_are_not_compared(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    take_reference(m, outcome(camera.frame(), s))
    smaller = camera.frame()[:540, :960]
    for _ in range(5):
        status = check(m, outcome(smaller, s))
    assert hub.taken == [] and "shift_px" not in status["figures"]
    assert status["notes"] == [
        "frames are 960x540, the reference 1280x720: set the reference again"
    ]


def test_a_plain_scene_has_no_camera_check_but_the_image_checks(monitor) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    rng = np.random.default_rng(5)
    plain = np.clip(rng.normal(120, 1.0, (720, 1280, 3)), 0, 255).astype(np.uint8)
    answer = take_reference(m, outcome(plain, s))
    assert answer["camera_check"] is False
    for _ in range(4):
        status = check(m, outcome((plain * 0.5).astype(np.uint8), s))
    assert "few for the camera check" in status["notes"][0] and "shift_px" not in status["figures"]
    assert ("brightness", "raised") in hub.changes()


def test_checks_are_recorded_for_the_dashboard_at_once_when_something_changes(
    monitor, camera, tmp_path
) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    answer = take_reference(m, outcome(camera.frame(), s))
    for _ in range(3):  # the first check brings figures: recorded; the next two change nothing
        check(m, outcome(camera.frame(), s))
    for _ in range(4):
        check(m, outcome(camera.frame(dx=40), s))
    assert hub.changes() == [("camera_moved", "raised")]
    points = read_history(tmp_path / "drift", CAMERA)
    assert len(points) == 2, points
    steady, raised = points
    assert steady["figures"]["shift_px"] < 3 and steady["raised"] == [] and steady["changes"] == []
    assert raised["raised"] == ["camera_moved"] and raised["at"].endswith("Z")
    assert raised["changes"] == [
        {
            "alert": "camera_moved",
            "state": "raised",
            "figure": "shift_px",
            "value": hub.taken[0][1]["value"],
            "threshold": 20.0,
        }
    ]
    view = read_view(tmp_path / "drift", CAMERA)
    assert view is not None and view["reference"]["image"] == answer["image"]
    assert view["current"]["checked_at"] == raised["at"]
    limits = {limit["figure"]: limit for limit in view["limits"]}
    assert limits["shift_px"] == {
        "alert": "camera_moved",
        "detector": "camera",
        "figure": "shift_px",
        "direction": "above",
        "threshold": 20.0,
        "clear_below": 14.0,
    }
    assert set(limits) == {limit.figure for rule in RULES for limit in rule.limits}
    frames = sorted(p.name for p in (tmp_path / "drift" / CAMERA).glob("current-*.jpg"))
    assert frames == [view["current"]["image"]]  # the older checked frame is gone
    current = frame_path((tmp_path / "drift").resolve(), CAMERA, frames[0])
    assert current is not None
    image = cv2.imread(str(current))
    assert image.shape == (180, 320, 3)


def test_raised_since_tells_the_pipeline_while_an_alert_is_raised(monitor, camera) -> None:
    s, hub = settings(), Hub()
    m = monitor(s, hub)
    take_reference(m, outcome(camera.frame(), s))
    check(m, outcome(camera.frame(), s))
    assert m.raised_since() is None
    before = time.monotonic()
    for _ in range(3):
        check(m, outcome(camera.frame(dx=40), s))
    assert (m.raised_since() or 0) >= before
    m.apply(CisSettings(camera_id=CAMERA, drift_every_s=0))  # checks off: no drift frames
    assert m.raised_since() is None
    m.apply(s)
    for _ in range(3):
        check(m, outcome(camera.frame(), s))
    assert hub.changes()[-1] == ("camera_moved", "cleared") and m.raised_since() is None
