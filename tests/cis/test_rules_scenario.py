"""Frames with known parts and defects played through a CIS module running the demo model, with
zones and rules drawn over them (tests/cis/rules_scenes.py): a scratch inside and outside a
critical zone, a hole not drilled and a missing part, and a person with and without a helmet; every
stored verdict, every rule that fired and every ``inference`` message as expected.

What stands for what: the demo model knows scratches, holes and spots only. Bolt holes are the
parts a count rule checks; in the cell a long scratch stands for a person (a tall box) and a hole
in that scratch's box for the helmet on them, so ``required_with`` sees the same geometry as a
helmet on a person.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mfgvision.store.records import FiredRule
from mfgvision.synthetic import CLASS_NAMES, LabelBox
from tests.cis.rules_scenes import SCENES, Judged, Scene, draw, play
from tests.services import REPO

pytestmark = pytest.mark.slow


def iou(a: list[float], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def found_as_placed(judged: Judged, truth: list[LabelBox]) -> bool:
    """The stored detections are the scene's defects: one of the same class over each placed box
    (IoU 0.5 or more), nothing else."""
    left = list(judged.row.detections)
    for cls, *box in truth:
        match = next(
            (d for d in left if d.label == CLASS_NAMES[cls] and iou(d.box.as_list(), box) >= 0.5),
            None,
        )
        if match is None:
            return False
        left.remove(match)
    return not left


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Judged]]:
    return play(tmp_path_factory.mktemp("rules_scenario"), REPO / "edge_assets" / "models")


@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_each_scene_is_found_and_judged_as_expected(
    scene: Scene, judged: dict[str, list[Judged]]
) -> None:
    _, truth = draw(scene)
    assert judged[scene.name]
    for seen in judged[scene.name]:
        assert found_as_placed(seen, truth), [d.to_dict() for d in seen.row.detections]
        assert (seen.row.verdict, seen.row.fired_rules) == (scene.verdict, scene.fired)
        body = seen.message
        assert (body["verdict"], body["object_detected"]) == (scene.verdict, bool(truth))
        assert tuple(FiredRule.from_dict(r) for r in body["rules"]) == scene.fired
        assert {d["label"] for d in body["detected_objects"]} == {CLASS_NAMES[c] for c, *_ in truth}


def test_the_scenario_script_prints_every_frame_judged_as_expected() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/rules_scenario.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    frames = [line.split(" | ")[0].removeprefix("| ") for line in lines[2:]]
    assert frames == [s.name for s in SCENES]
    assert all(" | yes (" in line for line in lines[2:])
