"""Zones and rules through the twin while frames flow: every frame inferred with new settings is
judged by their rules, and its row and ``inference`` message carry the verdict and the rules that
fired.

The constant model reports, in every 1280 x 720 frame, a scratch at (100, 80)-(300, 200) and a hole
at (700, 400)-(900, 650) (tests/cis/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.metrics.source import VERDICTS
from mfgvision.store.database import Database
from mfgvision.store.records import NG, OK, FiredRule, InferenceRecord
from tests.cis.conftest import RunningCis
from tests.factories import recent, wait_for

LEFT = [[0, 0], [640, 0], [640, 720], [0, 720]]
RIGHT = [[640, 0], [1280, 0], [1280, 720], [640, 720]]
HOLE_ON_LEFT = {"kind": "defect", "classes": ["hole"], "zones": ["left"]}


@pytest.fixture
def running(start_cis: Callable[[dict[str, Any]], RunningCis]) -> tuple[Any, ...]:
    started = start_cis({"camera_id": "cam-r", "inference_fps": 0, "retrain_interval_s": 3600})
    return started.broker, started.reader, started.cis


def judged_with(
    broker: InProcessBroker, db: Database, patch: dict[str, Any]
) -> list[InferenceRecord]:
    """Patch the twin, then wait for three frames inferred with the new settings; every row made
    with them (the rows record the settings' version)."""
    version = broker.patch_desired("cam", patch)
    assert wait_for(lambda: sum(r.settings_version == version for r in recent(db, 50)) >= 3)
    return [r for r in recent(db, 1000) if r.settings_version == version]


def messages_of(broker: InProcessBroker, rows: list[InferenceRecord]) -> list[dict[str, Any]]:
    ids = {r.unique_id for r in rows}
    assert wait_for(
        lambda: len(ids & {m.json()["unique_id"] for _, _, m in broker.upstream}) == len(ids)
    )
    return [m.json() for _, _, m in broker.upstream if m.json()["unique_id"] in ids]


def verdicts_counted(cis: CisService, verdict: str) -> float:
    """``mfgvision_verdicts_total`` of the CIS's camera for ``verdict``."""
    registry = CollectorRegistry()
    registry.register(VERDICTS)
    series = cis.pipeline.metrics.series
    labels = {"module": series.module, "camera_id": series.camera_id, "verdict": verdict}
    return registry.get_sample_value("mfgvision_verdicts_total", labels) or 0.0


def test_zones_and_rules_changed_through_the_twin_judge_the_next_frame(running) -> None:
    broker, db, cis = running
    assert wait_for(lambda: len(recent(db, 5)) >= 2)
    before = recent(db, 1)[0]  # no rules: NG, the model found something
    assert (before.verdict, before.given_verdict, before.fired_rules) == (NG, NG, None)

    zones = {"zones_frame": [1280, 720], "zones": {"left": LEFT, "right": RIGHT}}
    rows = judged_with(broker, db, {**zones, "rules": {"hole_on_left": HOLE_ON_LEFT}})
    assert {(r.verdict, r.fired_rules, len(r.detections)) for r in rows} == {(OK, (), 2)}
    bodies = messages_of(broker, rows)
    assert {(b["verdict"], str(b["rules"]), b["object_detected"]) for b in bodies} == {
        (OK, "[]", True)
    }
    assert verdicts_counted(cis, OK) >= len(rows)  # the metrics count the rules' verdict

    # the zone moves over the hole: the same rule fires from the next frame on
    rows = judged_with(broker, db, {"zones": {"left": RIGHT}})
    hole = FiredRule("hole_on_left", "defect", NG, "left", "hole", 1, "1 hole in left")
    assert {(r.verdict, r.fired_rules) for r in rows} == {(NG, (hole,))}
    assert {(b["verdict"], b["rules"][0]["rule"]) for b in messages_of(broker, rows)} == {
        (NG, "hole_on_left")
    }

    # rules replaced at once: a count that is short, and an alarm that leaves the verdict alone
    rules = {
        "hole_on_left": None,
        "three_parts": {"kind": "count", "classes": ["scratch", "hole"], "min": 3},
        "hole_needs_spot": {"kind": "required_with", "classes": ["hole"], "with_classes": ["spot"]},
    }
    rows = judged_with(broker, db, {"rules": rules})
    assert {r.verdict for r in rows} == {NG}
    assert {tuple((f.rule, f.yields, f.count) for f in r.fired_rules or ()) for r in rows} == {
        (("three_parts", NG, 2), ("hole_needs_spot", "alarm", 1))
    }

    # rules gone: the verdict is NG again because something was detected
    rows = judged_with(broker, db, {"rules": None, "zones": None, "zones_frame": None})
    assert {(r.verdict, r.fired_rules) for r in rows} == {(NG, None)}
    assert {(b["verdict"], b["rules"]) for b in messages_of(broker, rows)} == {(NG, None)}


def test_refused_zones_leave_the_rules_in_force(running) -> None:
    broker, db, _ = running
    hub = broker.hub("cam")
    zones = {"zones_frame": [1280, 720], "zones": {"left": LEFT}}
    good = judged_with(broker, db, {**zones, "rules": {"hole_on_left": HOLE_ON_LEFT}})
    assert {r.verdict for r in good} == {OK}
    refused = broker.patch_desired("cam", {"zones": {"left": [[0, 0], [1300, 0], [0, 700]]}})
    assert wait_for(
        lambda: (hub.get_twin()["reported"]["config"].get("error") or {}).get("version") == refused
    )
    error = hub.get_twin()["reported"]["config"]["error"]
    assert error["keys"] == {"zones": "left[1]: outside the zones_frame"}
    n = len(recent(db, 1000))
    assert wait_for(lambda: len(recent(db, 1000)) >= n + 2)
    assert recent(db, 1)[0].settings_version == good[0].settings_version
    assert recent(db, 1)[0].verdict == OK


def test_a_missing_part_is_stored_even_when_only_detections_are(running) -> None:
    broker, db, cis = running
    one_part = {"one_part": {"kind": "count", "classes": ["scratch"], "min": 1}}
    nothing_found = {"prob_threshold": 0.95, "store_all_inferences": False}
    rows = judged_with(broker, db, {**nothing_found, "rules": one_part})
    assert {(r.verdict, len(r.detections)) for r in rows} == {(NG, 0)}
    assert {r.fired_rules[0].detail for r in rows if r.fired_rules} == {
        "0 scratch in the frame, expected at least 1"
    }
    version = broker.patch_desired("cam", {"rules": None})  # nothing found, nothing wrong
    skipped = cis.pipeline.metrics.counters["not_stored"]
    assert wait_for(lambda: cis.pipeline.metrics.counters["not_stored"] >= skipped + 3)
    assert all(r.settings_version != version for r in recent(db, 1000))


def test_capture_now_answers_with_the_verdict_and_the_rules_that_fired(running) -> None:
    broker, db, cis = running
    hub = broker.hub("cam")
    assert cis.pipeline.models.wait_ready(20)
    status, result = hub.call_method("capture_now", {"timeout_s": 10})
    assert status == 200 and (result["verdict"], result["rules"]) == (NG, None)
    judged_with(broker, db, {"rules": {"no_spot": {"kind": "defect", "classes": ["spot"]}}})
    status, result = hub.call_method("capture_now", {"timeout_s": 10})
    assert status == 200 and (result["verdict"], result["rules"]) == (OK, [])
    assert {d["label"] for d in result["detections"]} == {"scratch", "hole"}
