"""The rules engine with known answers: each rule kind, zones by centre and by overlap, pixels and
normalised zones, and no rules at all (the verdict as it always was)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from mfgvision.cis.rules import RuleBook
from mfgvision.inference.types import Box, Detection
from mfgvision.settings import CisSettings, parse_settings
from mfgvision.store.records import NG, OK, FiredRule
from tests.services import REPO

W, H = 1000, 1000
#: Zones in pixels of a 1000 x 1000 frame: a sealing face (left half, top), and an L-shaped cell.
ZONES: dict[str, Any] = {
    "zones_frame": [W, H],
    "zones": {
        "seal": [[0, 0], [500, 0], [500, 500], [0, 500]],
        "cell": [[0, 0], [1000, 0], [1000, 500], [500, 500], [500, 1000], [0, 1000]],
    },
}


def det(label: str, x1: float, y1: float, x2: float, y2: float, p: float = 0.9) -> Detection:
    box = Box(x1, y1, x2, y2)
    return Detection(0, label, p, box, box.normalised(W, H))


def book(rules: dict[str, Any], **settings: Any) -> RuleBook:
    desired = {**ZONES, **settings, "rules": rules}
    return RuleBook(parse_settings(CisSettings, desired))  # type: ignore[arg-type]


def fired(book_: RuleBook, detections: list[Detection]) -> list[tuple[str, str | None, str, int]]:
    judgement = book_.judge(detections)
    assert judgement.fired is not None
    return [(f.rule, f.zone, f.label, f.count) for f in judgement.fired]


def test_without_rules_anything_detected_is_ng_and_nothing_fires() -> None:
    rules = RuleBook(CisSettings())
    assert rules.judge([]).verdict == OK and rules.judge([]).fired is None
    assert rules.judge([det("scratch", 0, 0, 10, 10)]).verdict == NG


def test_a_defect_rule_fires_inside_its_zone_only() -> None:
    rules = book({"scratch_on_seal": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]}})
    on_seal = det("scratch", 100, 100, 200, 200)
    on_flange = det("scratch", 700, 700, 800, 800)
    judgement = rules.judge([on_seal, on_seal, on_flange])
    assert judgement.verdict == NG
    assert judgement.fired == (
        FiredRule("scratch_on_seal", "defect", NG, "seal", "scratch", 2, "2 scratch in seal"),
    )
    flange_only = rules.judge([on_flange, det("hole", 100, 100, 120, 120)])
    assert flange_only.verdict == OK and flange_only.fired == ()


def test_a_box_centred_on_a_zone_edge_is_in_the_zone() -> None:
    rules = book({"r": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]}})
    assert fired(rules, [det("scratch", 450, 100, 550, 200)]) == [("r", "seal", "scratch", 1)]
    assert fired(rules, [det("scratch", 452, 100, 552, 200)]) == []  # centre at 502


def test_membership_by_overlap_takes_the_share_of_the_box() -> None:
    rule = {"kind": "defect", "classes": ["scratch"], "zones": ["seal"], "membership": "overlap"}
    box_40 = det("scratch", 400, 100, 650, 200)  # 100 of 250 px wide inside: 40 %
    assert fired(book({"r": {**rule, "overlap_fraction": 0.4}}), [box_40]) == [
        ("r", "seal", "scratch", 1)
    ]
    assert fired(book({"r": {**rule, "overlap_fraction": 0.41}}), [box_40]) == []
    by_centre = book({"r": {k: v for k, v in rule.items() if k != "membership"}})
    assert fired(by_centre, [box_40]) == []  # its centre (525) is outside


def test_a_concave_zone_leaves_its_notch_out() -> None:
    rules = book({"r": {"kind": "absent", "classes": ["hand"], "zones": ["cell"]}})
    in_notch = det("hand", 700, 700, 800, 800)
    in_arm = det("hand", 100, 700, 200, 800)
    assert fired(rules, [in_notch]) == []
    assert fired(rules, [in_notch, in_arm]) == [("r", "cell", "hand", 1)]
    assert rules.judge([in_arm]).verdict == NG


def test_min_probability_leaves_weaker_detections_out() -> None:
    rules = book({"r": {"kind": "defect", "classes": ["scratch"], "min_probability": 0.8}})
    assert fired(rules, [det("scratch", 0, 0, 9, 9, p=0.79)]) == []
    assert fired(rules, [det("scratch", 0, 0, 9, 9, p=0.8)]) == [("r", None, "scratch", 1)]


def test_a_count_rule_fires_below_min_and_above_max_in_each_zone() -> None:
    rules = book(
        {
            "screws": {
                "kind": "count",
                "classes": ["screw", "bolt"],
                "zones": ["seal"],
                "min": 3,
                "max": 4,
            }
        }
    )
    screw = det("screw", 10, 10, 20, 20)
    bolt = det("bolt", 30, 30, 40, 40)
    elsewhere = det("screw", 900, 900, 910, 910)
    two, three, five = [screw, bolt, elsewhere], [screw, bolt, screw], [screw] * 4 + [bolt]
    assert fired(rules, two) == [("screws", "seal", "screw,bolt", 2)]
    assert rules.judge(two).fired[0].detail == "2 screw,bolt in seal, expected 3 to 4"  # type: ignore[index]
    assert fired(rules, three) == [] and rules.judge(three).verdict == OK
    assert fired(rules, five) == [("screws", "seal", "screw,bolt", 5)]
    assert fired(rules, []) == [("screws", "seal", "screw,bolt", 0)]  # a missing part is NG
    assert rules.judge([]).verdict == NG


def test_a_count_rule_without_zones_counts_the_whole_frame() -> None:
    rules = book({"twelve": {"kind": "count", "classes": ["screw"], "min": 12, "max": 12}})
    eleven = [det("screw", 80 * i, 10, 80 * i + 20, 30) for i in range(11)]
    assert fired(rules, eleven) == [("twelve", None, "screw", 11)]
    assert rules.judge(eleven).fired[0].detail == "11 screw in the frame, expected 12"  # type: ignore[index]
    assert fired(rules, [*eleven, det("screw", 900, 900, 920, 920)]) == []


def test_required_with_raises_an_alarm_for_each_person_in_the_cell_without_a_helmet() -> None:
    rules = book(
        {
            "helmet": {
                "kind": "required_with",
                "classes": ["person"],
                "with_classes": ["helmet"],
                "zones": ["cell"],
            }
        }
    )
    worker = det("person", 100, 100, 300, 500)
    helmet = det("helmet", 150, 80, 250, 160)  # its centre (200, 120) is in the worker's box
    visitor = det("person", 600, 100, 800, 400)
    outside = det("person", 700, 700, 800, 900)  # in the cell's notch: not in the cell
    judgement = rules.judge([worker, helmet, visitor, outside])
    assert judgement.verdict == OK  # an alarm leaves the verdict alone
    assert [(f.rule, f.yields, f.zone, f.label, f.count) for f in judgement.alarms] == [
        ("helmet", "alarm", "cell", "person", 1)
    ]
    assert judgement.alarms[0].detail == "1 person in cell without helmet"
    assert rules.judge([worker, helmet]).fired == ()
    far_helmet = det("helmet", 600, 600, 650, 650)
    assert fired(rules, [worker, far_helmet]) == [("helmet", "cell", "person", 1)]


def test_required_with_by_overlap_needs_that_share_of_the_companion_inside() -> None:
    rule = {
        "kind": "required_with",
        "classes": ["person"],
        "with_classes": ["helmet"],
        "membership": "overlap",
        "overlap_fraction": 0.5,
        "yields": "NG",
    }
    worker = det("person", 100, 100, 300, 500)
    half_in = det("helmet", 250, 100, 350, 200)
    assert rules_verdict(rule, [worker, half_in]) == OK
    assert rules_verdict({**rule, "overlap_fraction": 0.6}, [worker, half_in]) == NG


def rules_verdict(rule: dict[str, Any], detections: list[Detection]) -> str:
    return book({"r": rule}).judge(detections).verdict


def test_only_rules_yielding_ng_make_the_part_ng() -> None:
    rules = book(
        {
            "hand": {"kind": "absent", "classes": ["hand"], "yields": "alarm"},
            "scratch": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]},
        }
    )
    hand = det("hand", 700, 700, 800, 800)
    assert rules.judge([hand]).verdict == OK and len(rules.judge([hand]).alarms) == 1
    both = rules.judge([hand, det("scratch", 10, 10, 20, 20)])
    assert both.verdict == NG and [f.rule for f in both.fired or ()] == ["hand", "scratch"]


def test_normalised_zones_and_pixel_zones_judge_alike() -> None:
    rule = {"r": {"kind": "defect", "classes": ["s"], "zones": ["seal"], "membership": "overlap"}}
    normalised = RuleBook(
        parse_settings(  # type: ignore[arg-type]
            CisSettings,
            {"zones": {"seal": [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]}, "rules": rule},
        )
    )
    pixels = book(rule)
    detections = [det("s", 400, 400, 600, 600), det("s", 300, 300, 550, 450)]
    assert normalised.judge(detections) == pixels.judge(detections)
    assert fired(pixels, detections) == [("r", "seal", "s", 1)]


def test_the_rules_benchmark_runs_and_reports_one_json_line() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/rules_cost.py", "--frames", "20", "--repeats", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = result.stdout.splitlines()
    report = json.loads(line)
    assert (report["zones"], report["detections"], report["frames"]) == (20, 50, 20)
    assert report["fired_per_frame"] > 0 and report["p50_ms"] > 0


def documented_example() -> dict[str, Any]:
    """The example twin of docs/configuration.md, "Zones and rules"."""
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text[text.index("### Zones and rules") :]
    example = section[section.index("**Example**") :]
    block = example[example.index("```json") + len("```json") : example.index("```\n", 10)]
    return json.loads(block)


def test_the_documented_example_gives_the_documented_verdicts() -> None:
    settings = parse_settings(CisSettings, documented_example())
    rules = RuleBook(settings)  # type: ignore[arg-type]
    W_, H_ = settings.zones_frame  # type: ignore[misc]

    def found(label: str, x1: float, y1: float, x2: float, y2: float, p: float = 0.9) -> Detection:
        box = Box(x1, y1, x2, y2)
        return Detection(0, label, p, box, box.normalised(W_, H_))

    screws = [found("screw", 320 + 55 * i, 140, 340 + 55 * i, 160) for i in range(12)]
    person = found("person", 50, 200, 200, 600)  # in the cell's left arm
    frames = {
        "scratch off the seal": [*screws, found("scratch", 320, 400, 420, 450, 0.8)],
        "scratch 40 % on the seal": [*screws, found("scratch", 420, 300, 520, 340, 0.7)],
        "11 screws": screws[:11],
        "person without helmet": [*screws, person],
        "person outside the cell": [*screws, found("person", 1000, 300, 1200, 700)],
    }
    judged = {
        name: (j.verdict, [(f.rule, f.yields, f.zone, f.label, f.count) for f in j.fired or ()])
        for name, j in ((name, rules.judge(d)) for name, d in frames.items())
    }
    assert judged == {
        "scratch off the seal": (OK, []),
        "scratch 40 % on the seal": (NG, [("scratch_on_seal", NG, "sealing_face", "scratch", 1)]),
        "11 screws": (NG, [("twelve_screws", NG, "board", "screw", 11)]),
        "person without helmet": (OK, [("helmet_in_cell", "alarm", "cell", "person", 1)]),
        "person outside the cell": (OK, []),
    }
    assert rules.judge(screws[:11]).fired[0].detail == "11 screw in board, expected 12"  # type: ignore[index]
