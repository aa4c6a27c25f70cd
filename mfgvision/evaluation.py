"""Detection accuracy on a labelled dataset: mAP at IoU 0.5, and AP, precision and recall per class.

AP is the VOC all-point interpolated area under the precision/recall curve; a prediction is a true
positive when its IoU with a not-yet-matched ground-truth box of the same class is at least 0.5.
``eval_main`` runs the product's own inference engine over every image, so the number it prints is
what the deployed model delivers, pre- and post-processing included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfgvision.datasets import SPLITS, DatasetError, load_dataset

BoxXYXY = tuple[float, float, float, float]
GroundTruth = tuple[int, float, float, float, float]
Prediction = tuple[int, float, float, float, float, float]
"""``(class_id, score, x1, y1, x2, y2)``"""


def iou(a: BoxXYXY, b: BoxXYXY) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated AP from recall/precision ordered by falling score."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@dataclass(frozen=True)
class ClassScore:
    """One class over a dataset: AP50, and precision and recall of the detections kept."""

    ap: float
    precision: float | None
    recall: float
    instances: int


def class_score(
    predictions: Sequence[Sequence[Prediction]],
    ground_truth: Sequence[Sequence[GroundTruth]],
    class_id: int,
    iou_threshold: float = 0.5,
) -> ClassScore | None:
    """AP, precision and recall of one class over a dataset (lists per image); None when the
    class has no ground truth."""
    gts = [[g[1:] for g in image if g[0] == class_id] for image in ground_truth]
    total = sum(len(g) for g in gts)
    if total == 0:
        return None
    ranked = sorted(
        (
            (p[1], i, p[2:])
            for i, image in enumerate(predictions)
            for p in image
            if p[0] == class_id
        ),
        key=lambda item: -item[0],
    )
    used = [[False] * len(g) for g in gts]
    hits = np.zeros(len(ranked))
    for k, (_score, i, box) in enumerate(ranked):
        best, best_j = iou_threshold, -1
        for j, gt in enumerate(gts[i]):
            overlap = iou(box, gt)
            if not used[i][j] and overlap >= best:
                best, best_j = overlap, j
        if best_j >= 0:
            used[i][best_j] = True
            hits[k] = 1.0
    tp = np.cumsum(hits)
    recall = tp / total
    precision = tp / np.arange(1, len(ranked) + 1)
    found = float(tp[-1]) if len(ranked) else 0.0
    return ClassScore(
        ap=average_precision(recall, precision),
        precision=found / len(ranked) if ranked else None,
        recall=found / total,
        instances=total,
    )


def class_ap(
    predictions: Sequence[Sequence[Prediction]],
    ground_truth: Sequence[Sequence[GroundTruth]],
    class_id: int,
    iou_threshold: float = 0.5,
) -> float | None:
    """AP of one class over a dataset (lists per image); None when the class has no ground truth."""
    score = class_score(predictions, ground_truth, class_id, iou_threshold)
    return None if score is None else score.ap


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def mean_ap(
    predictions: Sequence[Sequence[Prediction]],
    ground_truth: Sequence[Sequence[GroundTruth]],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
) -> dict:
    """``mAP50`` (mean over classes with ground truth), and per class name its AP
    (``per_class``), ``precision``, ``recall`` and ground-truth ``instances``; None where the class
    has no ground truth (precision also where nothing of it was detected)."""
    scores = {
        name: class_score(predictions, ground_truth, c, iou_threshold)
        for c, name in enumerate(class_names)
    }
    present = [s.ap for s in scores.values() if s is not None]
    return {
        "mAP50": round(float(np.mean(present)), 4) if present else None,
        "per_class": {k: None if s is None else _rounded(s.ap) for k, s in scores.items()},
        "precision": {k: None if s is None else _rounded(s.precision) for k, s in scores.items()},
        "recall": {k: None if s is None else _rounded(s.recall) for k, s in scores.items()},
        "instances": {k: 0 if s is None else s.instances for k, s in scores.items()},
    }


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``eval`` command."""
    parser.add_argument("model_dir", type=Path, help="model version folder (model.onnx, labels)")
    parser.add_argument(
        "dataset",
        type=Path,
        help="a YOLO folder with data.yaml (Ultralytics, Roboflow), a folder with images/, "
        "labels/ and labels.json, or COCO JSON (a .json file or a folder holding one)",
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="val", help="split of a data.yaml (default: val)"
    )
    parser.add_argument(
        "--conf",
        type=float,
        default=None,
        help="probability threshold (default: the model card's prob_threshold, else 0.5)",
    )
    parser.add_argument(
        "--iou",
        type=float,
        default=None,
        help="NMS IoU threshold (default: the model card's iou_threshold, else 0.45)",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="print a table per class (instances, AP50, precision, recall) instead of JSON",
    )


def evaluate(
    model_dir: Path,
    dataset_path: Path,
    conf: float | None = None,
    iou_threshold: float | None = None,
    split: str = "val",
) -> dict:
    """Run the product's inference engine over every image of a dataset and score it.

    Classes are matched by name between the dataset and the model. Raises DatasetError or
    ModelLoadError (one-line messages) when either cannot be read.
    """
    import cv2

    from mfgvision.inference import load_model

    dataset = load_dataset(Path(dataset_path), split)
    if not dataset.samples:
        raise DatasetError(f"{dataset.source}: no images")
    model = load_model(model_dir)
    prob, nms, said = model.thresholds(conf, iou_threshold)
    class_ids = {name: i for i, name in enumerate(dataset.names)}
    predictions: list[list[Prediction]] = []
    ground_truth: list[list[GroundTruth]] = []
    unreadable: list[str] = []
    elapsed = 0.0
    for sample in dataset.samples:
        frame = cv2.imread(str(sample.image), cv2.IMREAD_COLOR)
        if frame is None:
            unreadable.append(str(sample.image))
            continue
        start = time.perf_counter()
        result = model.detect(frame, prob_threshold=prob, iou_threshold=nms)
        elapsed += time.perf_counter() - start
        predictions.append(
            [
                (class_ids[d.label], d.probability, d.box.x1, d.box.y1, d.box.x2, d.box.y2)
                for d in result.detections
                if d.label in class_ids
            ]
        )
        h, w = frame.shape[:2]
        ground_truth.append(
            [
                (class_ids[name], x1 * w, y1 * h, x2 * w, y2 * h)
                for name, x1, y1, x2, y2 in sample.boxes
            ]
        )
    inferred = len(predictions)
    report = mean_ap(predictions, ground_truth, dataset.names)
    report["images"] = inferred
    report["unreadable_images"] = unreadable
    report["model"] = str(model_dir)
    report["dataset"] = dataset.source
    report["thresholds"] = said
    report["classes_not_in_model"] = sorted(set(dataset.names) - set(model.labels))
    report["ms_per_image"] = round(1000.0 * elapsed / max(inferred, 1), 2)
    return report


def format_table(report: dict) -> str:
    """The report's classes as a text table (instances, AP50, precision, recall; ``-`` where a
    figure does not exist), then mAP50, images and thresholds."""

    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    names = list(report["per_class"])
    width = max([len("class"), *(len(name) for name in names)])
    lines = [f"{'class':<{width}}  instances   AP50  precision  recall"]
    for name in names:
        lines.append(
            f"{name:<{width}}  {report['instances'][name]:>9}  {figure(report['per_class'][name]):>5}"
            f"  {figure(report['precision'][name]):>9}  {figure(report['recall'][name]):>6}"
        )
    lines.append(f"mAP50 {figure(report['mAP50'])} over {report['images']} images")
    lines.append(report["thresholds"])
    return "\n".join(lines)


def eval_main(args: argparse.Namespace) -> int:
    """The ``eval`` command: mAP50 and per-class AP, precision and recall, as one JSON object or
    (``--table``) a table.

    Exit 1 with a one-line error when the model or the dataset cannot be read, and after the
    report when an image could not be read.
    """
    from mfgvision.inference import ModelLoadError

    try:
        report = evaluate(args.model_dir, args.dataset, args.conf, args.iou, args.split)
    except (DatasetError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(report) if args.table else json.dumps(report))
    for path in report["unreadable_images"]:
        print(f"error: cannot read image {path}", file=sys.stderr)
    for name in report["classes_not_in_model"]:
        print(f"warning: the model has no class '{name}' (scored as missed)", file=sys.stderr)
    return 1 if report["unreadable_images"] else 0
