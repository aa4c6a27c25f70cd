"""AP / mAP50 computation against hand-made predictions with known answers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from mfgvision.evaluation import (
    add_eval_arguments,
    average_precision,
    class_ap,
    eval_main,
    iou,
    mean_ap,
)
from tests.inference.graphs import constant_model, frame_to_input, write_model_dir, yolov8_output
from tests.test_datasets import LAYOUTS, SIZE

NAMES = ["scratch", "hole", "spot"]
GT = [
    [(0, 10.0, 10.0, 50.0, 20.0), (1, 100.0, 100.0, 120.0, 120.0)],
    [(2, 30.0, 30.0, 60.0, 70.0), (1, 5.0, 5.0, 15.0, 15.0)],
]


def perfect() -> list[list[tuple]]:
    """Predictions that equal the ground truth, all at score 0.9."""
    return [[(g[0], 0.9, *g[1:]) for g in image] for image in GT]


def test_iou_known_values() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0


def test_perfect_predictions_give_one() -> None:
    report = mean_ap(perfect(), GT, NAMES)
    assert report["mAP50"] == 1.0
    assert report["per_class"] == {"scratch": 1.0, "hole": 1.0, "spot": 1.0}


def test_one_missed_box_halves_the_class() -> None:
    preds = perfect()
    preds[1] = [p for p in preds[1] if p[0] != 1]
    report = mean_ap(preds, GT, NAMES)
    assert report["per_class"]["hole"] == pytest.approx(0.5)
    assert report["mAP50"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-4)


def test_false_positive_above_the_true_one() -> None:
    preds = perfect()
    preds[1].append((2, 0.99, 200.0, 200.0, 220.0, 220.0))
    assert class_ap(preds, GT, 2) == pytest.approx(0.5)


def test_false_positive_below_every_true_one_costs_nothing() -> None:
    preds = perfect()
    preds[0].append((0, 0.1, 200.0, 200.0, 220.0, 220.0))
    assert class_ap(preds, GT, 0) == pytest.approx(1.0)


def test_duplicate_counts_once() -> None:
    preds = perfect()
    preds[0].insert(0, (0, 0.95, 11.0, 10.0, 51.0, 20.0))
    assert class_ap(preds, GT, 0) == pytest.approx(1.0)
    preds[0].append((0, 0.5, 10.0, 10.0, 50.0, 20.0))
    gt_two = [[*GT[0], (0, 300.0, 300.0, 320.0, 310.0)], GT[1]]
    assert class_ap(preds, gt_two, 0) == pytest.approx(0.5)


def test_wrong_class_or_poor_overlap_is_a_miss() -> None:
    wrong_class = [[(1, 0.9, 10.0, 10.0, 50.0, 20.0)], []]
    assert class_ap(wrong_class, GT, 0) == 0.0
    shifted = [[(0, 0.9, 30.0, 10.0, 70.0, 20.0)], []]
    assert class_ap(shifted, GT, 0) == 0.0


def test_all_point_interpolation_matches_hand_computation() -> None:
    gt = [[(0, 0.0, 0.0, 10.0, 10.0), (0, 20.0, 0.0, 30.0, 10.0), (0, 40.0, 0.0, 50.0, 10.0)]]
    preds = [
        [
            (0, 0.9, 0.0, 0.0, 10.0, 10.0),
            (0, 0.8, 100.0, 0.0, 110.0, 10.0),
            (0, 0.7, 200.0, 0.0, 210.0, 10.0),
            (0, 0.6, 20.0, 0.0, 30.0, 10.0),
            (0, 0.5, 40.0, 0.0, 50.0, 10.0),
        ]
    ]
    # precision 1, 1/2, 1/3, 1/2, 3/5: at recall 2/3 it is raised to the later 3/5
    expected = (1 / 3) * 1.0 + (1 / 3) * 0.6 + (1 / 3) * 0.6
    assert class_ap(preds, gt, 0) == pytest.approx(expected)


def test_average_precision_of_curve() -> None:
    recall = np.array([0.5, 0.5, 0.75, 1.0])
    precision = np.array([1.0, 0.5, 0.4, 0.667])
    assert average_precision(recall, precision) == pytest.approx(0.5 + 0.5 * 0.667)


def test_class_without_ground_truth_is_left_out() -> None:
    gt = [[(0, 10.0, 10.0, 50.0, 20.0)]]
    preds = [[(0, 0.9, 10.0, 10.0, 50.0, 20.0), (2, 0.8, 0.0, 0.0, 5.0, 5.0)]]
    report = mean_ap(preds, gt, NAMES)
    assert report["per_class"]["hole"] is None
    assert report["per_class"]["spot"] is None
    assert report["mAP50"] == 1.0


def test_no_predictions_give_zero() -> None:
    assert mean_ap([[], []], GT, NAMES)["mAP50"] == 0.0


def test_precision_and_recall_at_the_threshold() -> None:
    preds = perfect()
    preds[1] = [p for p in preds[1] if p[0] != 1]
    preds[0].append((0, 0.3, 300.0, 300.0, 320.0, 320.0))
    report = mean_ap(preds, GT, NAMES)
    assert report["precision"] == {"scratch": 0.5, "hole": 1.0, "spot": 1.0}
    assert report["recall"] == {"scratch": 1.0, "hole": 0.5, "spot": 1.0}
    assert report["instances"] == {"scratch": 1, "hole": 2, "spot": 1}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model that finds one hole at 0.8 where image ``a`` has it, in every image."""
    box = frame_to_input([300, 100, 700, 500], *SIZE, 640, 640)
    output = yolov8_output([box], [1], [0.8], num_classes=2)
    return write_model_dir(
        tmp_path / "models", constant_model({"output0": output}), ["scratch", "hole"]
    )


def _eval(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    return eval_main(parser.parse_args(argv))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_eval_scores_the_product_engine_on_every_layout(
    tmp_path: Path, model_dir: Path, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = LAYOUTS[layout](tmp_path / "ds")
    assert _eval(str(model_dir), str(dataset)) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["images"] == 2
    # a: the hole found; b: a hole elsewhere (missed, and the found one is false) and a scratch.
    assert report["per_class"] == {"scratch": 0.0, "hole": 0.5}
    assert report["precision"] == {"scratch": None, "hole": 0.5}
    assert report["recall"] == {"scratch": 0.0, "hole": 0.5}
    assert report["mAP50"] == 0.25
    assert report["thresholds"] == "prob_threshold 0.5 (default), iou_threshold 0.45 (default)"
    assert err == ""


def test_eval_takes_the_model_cards_threshold_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = frame_to_input([300, 100, 700, 500], *SIZE, 640, 640)
    output = yolov8_output([box], [1], [0.8], num_classes=2)
    model_dir = write_model_dir(
        tmp_path / "models",
        constant_model({"output0": output}),
        ["scratch", "hole"],
        card={"prob_threshold": 0.85},
    )
    dataset = LAYOUTS["own"](tmp_path / "ds")
    assert _eval(str(model_dir), str(dataset)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_class"]["hole"] == 0.0
    assert report["thresholds"].startswith("prob_threshold 0.85 (model card)")
    assert _eval(str(model_dir), str(dataset), "--conf", "0.5") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_class"]["hole"] == 0.5
    assert report["thresholds"].startswith("prob_threshold 0.5 (given)")


def test_eval_fails_loudly_on_bad_input(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain").mkdir()
    assert _eval(str(model_dir), str(tmp_path / "plain")) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert _eval(str(tmp_path / "no-model"), str(LAYOUTS["own"](tmp_path / "ds"))) == 1
    assert capsys.readouterr().err.startswith("error: ")
    (tmp_path / "ds" / "images" / "b.jpeg").write_bytes(b"not a jpeg")
    assert _eval(str(model_dir), str(tmp_path / "ds")) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["images"] == 1
    assert "cannot read image" in err and "b.jpeg" in err


def test_eval_table_prints_each_class_as_the_json_does(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = str(LAYOUTS["own"](tmp_path / "ds"))
    assert _eval(str(model_dir), dataset) == 0
    report = json.loads(capsys.readouterr().out)
    assert _eval(str(model_dir), dataset, "--table") == 0
    out, err = capsys.readouterr()
    header, scratch, hole, total, thresholds = out.splitlines()
    assert header.split() == ["class", "instances", "AP50", "precision", "recall"]
    assert scratch.split() == ["scratch", "1", "0.000", "-", "0.000"]
    assert hole.split() == ["hole", "2", "0.500", "0.500", "0.500"]
    for row in (scratch, hole):
        name, instances, ap, precision, recall = row.split()
        assert int(instances) == report["instances"][name]
        assert float(ap) == pytest.approx(report["per_class"][name], abs=5e-4)
        assert float(recall) == pytest.approx(report["recall"][name], abs=5e-4)
        expected = report["precision"][name]
        if expected is None:
            assert precision == "-"
        else:
            assert float(precision) == pytest.approx(expected, abs=5e-4)
    assert total == "mAP50 0.250 over 2 images"
    assert thresholds == report["thresholds"]
    assert err == ""
