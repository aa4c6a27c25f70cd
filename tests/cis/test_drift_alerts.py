"""The drift alerts' hysteresis and thresholds, and the model-behaviour figures, on known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from mfgvision.cis.drift.alerts import RULES, Hysteresis, judge
from mfgvision.cis.drift.behaviour import CONFIDENCE_BINS, BehaviourWindow, Counts, psi
from mfgvision.settings import CisSettings

RULE = {r.alert: r for r in RULES}


def run(alert: str, values: list[float | None], **settings: float) -> list[str]:
    """Feed ``values`` of an alert's first figure (the others at 0) through its hysteresis."""
    s = CisSettings(**settings)
    rule, state = RULE[alert], Hysteresis()
    changes = []
    for value in values:
        figures = {limit.figure: 0.0 for limit in rule.limits} | {rule.limits[0].figure: value}
        verdict = judge(rule, figures, s)
        change = state.update(verdict.past, verdict.clear, s.drift_consecutive)
        if change:
            changes.append(change)
    return changes


def test_a_noisy_figure_hovering_around_its_threshold_raises_once_and_never_flaps() -> None:
    rng = np.random.default_rng(1)
    threshold = 0.25
    hovering = list(threshold * rng.uniform(0.85, 1.15, 2000))
    assert run("brightness", hovering) == ["raised"]
    calm = list(threshold * rng.uniform(0.0, 0.6, 50))
    assert run("brightness", hovering + calm) == ["raised", "cleared"]
    # between the clear threshold (0.7 of it) and the threshold nothing changes, either way
    between = list(threshold * rng.uniform(0.72, 0.98, 500))
    assert run("brightness", hovering + between) == ["raised"]
    assert run("brightness", between) == []


def test_it_takes_the_set_number_of_checks_in_a_row() -> None:
    past, calm = 0.5, 0.0
    assert run("brightness", [past, past, calm, past, past, calm]) == []
    assert run("brightness", [past, past, past]) == ["raised"]
    assert run("brightness", [past] * 3 + [calm, calm, past, calm, calm]) == ["raised"]
    assert run("brightness", [past] * 3 + [calm] * 3) == ["raised", "cleared"]
    assert run("brightness", [past], drift_consecutive=1) == ["raised"]


def test_each_figure_counts_the_way_its_alert_watches() -> None:
    assert run("brightness", [-0.5] * 3) == ["raised"]  # darker or brighter
    assert run("blur", [0.9] * 3) == []  # sharper is no blur
    assert run("blur", [-0.6] * 3) == ["raised"]
    assert run("camera_moved", [25.0] * 3) == ["raised"]
    assert run("camera_moved", [25.0] * 3, drift_shift_px=30) == []


def test_a_frame_that_no_longer_matches_counts_as_moved_until_it_matches_again() -> None:
    assert run("camera_moved", [None] * 3) == ["raised"]
    assert run("camera_moved", [None] * 3 + [None, 0.0, 0.0, 0.0]) == ["raised", "cleared"]
    verdict = judge(
        RULE["camera_moved"],
        {"shift_px": None, "rotation_deg": 0.2, "scale_change": 0},
        CisSettings(),
    )
    assert (verdict.past, verdict.clear, verdict.figure, verdict.value) == (
        True,
        False,
        "shift_px",
        None,
    )


def test_the_worst_figure_of_an_alert_is_the_one_reported() -> None:
    figures = {"shift_px": 12.0, "rotation_deg": -2.5, "scale_change": 0.01}
    verdict = judge(RULE["camera_moved"], figures, CisSettings())
    assert (verdict.figure, verdict.value, verdict.threshold) == ("rotation_deg", -2.5, 1.0)
    assert verdict.clear_below == pytest.approx(0.7)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    same = [0, 10, 20, 30, 40, 0, 0, 0, 0, 0, 0]
    assert psi(same, same) == pytest.approx(0.0)
    assert psi(same, [2 * c for c in same]) == pytest.approx(0.0, abs=0.02)
    moved = [0, 0, 0, 0, 0, 0, 40, 30, 20, 10, 0]
    assert psi(same, moved) > 1.0


def test_the_baseline_is_the_first_inferences_and_restarts_with_another_model() -> None:
    window = BehaviourWindow(baseline=20, window=10)
    for i in range(20):
        ng = bool(i % 2)
        window.observe(("m", "1"), 0.9 if ng else None, frozenset({"scratch"} if ng else ()), ng)
    assert window.progress() == (20, 20) and window.reading() is not None
    for _ in range(10):
        window.observe(("m", "1"), 0.9, frozenset({"scratch"}), True)  # every part NG now
    figures, detail = window.reading()  # type: ignore[misc]
    assert figures["ng_rate_change"] == pytest.approx(0.5)
    assert figures["class_rate_change"] == pytest.approx(0.5) and detail["class"] == "scratch"
    window.observe(("m", "2"), None, frozenset(), False)
    assert window.progress() == (1, 20) and window.reading() is None


def test_counts_survive_json() -> None:
    counts = Counts()
    counts.add(0.93, frozenset({"hole", "spot"}), True)
    counts.add(None, frozenset(), False)
    again = Counts.from_json(counts.to_json())
    assert again == counts and len(again.bins) == CONFIDENCE_BINS
    with pytest.raises(ValueError):
        Counts.from_json({**counts.to_json(), "bins": [1, 2]})
    before = {k: v for k, v in counts.to_json().items() if k != "ng_verdicts"} | {"ng": 1}
    with pytest.raises(KeyError):  # saved when NG meant any detection: taken again
        Counts.from_json(before)


def test_the_ng_rate_is_the_share_of_ng_verdicts_not_of_detections() -> None:
    window = BehaviourWindow(baseline=10, window=10)
    for _ in range(10):
        window.observe(("m", "1"), 0.9, frozenset({"screw"}), False)  # a part, OK
    for i in range(10):  # half the parts missing: nothing found, NG by a count rule
        missing = i % 2 == 0
        window.observe(
            ("m", "1"),
            None if missing else 0.9,
            frozenset(set() if missing else {"screw"}),
            missing,
        )
    figures, detail = window.reading()  # type: ignore[misc]
    assert figures["ng_rate_change"] == pytest.approx(0.5)
    assert detail["ng_rate"] == {"baseline": 0.0, "recent": 0.5}
