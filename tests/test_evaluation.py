"""AP / mAP50 computation against hand-made predictions with known answers."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.evaluation import (
    add_eval_arguments,
    average_precision,
    class_ap,
    eval_main,
    iou,
    mean_ap,
    read_labels,
)
from mfgvision.inference.types import Box, Detection, InferenceResult

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


def test_read_labels_converts_to_pixels(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("1 0.5 0.25 0.1 0.2\n\n")
    assert read_labels(label, 200, 100) == [(1, 90.0, 15.0, 110.0, 35.0)]
    assert read_labels(tmp_path / "missing.txt", 200, 100) == []


class _GroundTruthModel:
    """Stands in for the product engine: returns each image's labels as detections."""

    def __init__(self, labels: dict[int, list[tuple]]) -> None:
        self.labels = labels

    def detect(self, frame: np.ndarray, prob_threshold: float, iou_threshold: float):
        h, w = frame.shape[:2]
        key = int(frame[0, 0, 0] // 40)
        dets = [
            Detection(c, NAMES[c], 0.8, Box(x1, y1, x2, y2), Box(x1, y1, x2, y2).normalised(w, h))
            for c, x1, y1, x2, y2 in self.labels[key]
        ]
        return InferenceResult(detections=dets, frame_width=w, frame_height=h)


def test_eval_main_uses_the_product_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels.json").write_text(json.dumps(NAMES))
    for i, boxes in enumerate(GT):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.full((200, 200, 3), i * 40, np.uint8))
        lines = [
            f"{c} {(x1 + x2) / 400} {(y1 + y2) / 400} {(x2 - x1) / 200} {(y2 - y1) / 200}"
            for c, x1, y1, x2, y2 in boxes
        ]
        (tmp_path / "labels" / f"{i}.txt").write_text("\n".join(lines))
    labels = {0: GT[0], 1: GT[1][:1]}
    fake = types.ModuleType("mfgvision.inference")
    fake.load_model = lambda _model_dir: _GroundTruthModel(labels)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mfgvision.inference", fake)
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    assert eval_main(parser.parse_args(["model-dir", str(tmp_path)])) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2
    assert report["per_class"] == {"scratch": 1.0, "hole": 0.5, "spot": 1.0}
    assert report["model"] == "model-dir"
