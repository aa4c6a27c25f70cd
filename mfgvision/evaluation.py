"""Detection accuracy on a YOLO-format dataset: mAP at IoU 0.5 and AP per class.

AP is the VOC all-point interpolated area under the precision/recall curve; a prediction is a true
positive when its IoU with a not-yet-matched ground-truth box of the same class is at least 0.5.
``eval_main`` runs the product's own inference engine over every image, so the number it prints is
what the deployed model delivers, pre- and post-processing included.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


def class_ap(
    predictions: Sequence[Sequence[Prediction]],
    ground_truth: Sequence[Sequence[GroundTruth]],
    class_id: int,
    iou_threshold: float = 0.5,
) -> float | None:
    """AP of one class over a dataset (lists per image); None when the class has no ground truth."""
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
    return average_precision(recall, precision)


def mean_ap(
    predictions: Sequence[Sequence[Prediction]],
    ground_truth: Sequence[Sequence[GroundTruth]],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
) -> dict:
    """``{"mAP50": mean over classes with ground truth, "per_class": {name: AP or None}}``."""
    per_class = {
        name: class_ap(predictions, ground_truth, c, iou_threshold)
        for c, name in enumerate(class_names)
    }
    present = [ap for ap in per_class.values() if ap is not None]
    return {
        "mAP50": round(float(np.mean(present)), 4) if present else None,
        "per_class": {k: None if v is None else round(v, 4) for k, v in per_class.items()},
    }


def load_dataset(dataset_dir: Path) -> tuple[list[str], list[tuple[Path, Path]]]:
    """Class names and (image, label) path pairs of a YOLO-format dataset directory."""
    names = json.loads((dataset_dir / "labels.json").read_text())
    images = sorted(
        p for p in (dataset_dir / "images").iterdir() if p.suffix.lower() in {".jpg", ".png"}
    )
    return names, [(p, dataset_dir / "labels" / f"{p.stem}.txt") for p in images]


def read_labels(path: Path, width: int, height: int) -> list[GroundTruth]:
    """YOLO ``class cx cy w h`` lines (normalised) as pixel boxes; a missing file means none."""
    if not path.exists():
        return []
    out: list[GroundTruth] = []
    for line in path.read_text().split("\n"):
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            cx, cy, w, h = cx * width, cy * height, w * width, h * height
            out.append((int(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``eval`` command."""
    parser.add_argument("model_dir", type=Path, help="model version folder (model.onnx, labels)")
    parser.add_argument(
        "dataset_dir", type=Path, help="YOLO dataset: images/, labels/, labels.json"
    )
    parser.add_argument("--conf", type=float, default=0.25, help="probability threshold")
    parser.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")


def evaluate(
    model_dir: Path, dataset_dir: Path, conf: float = 0.25, iou_threshold: float = 0.45
) -> dict:
    """Run the product's inference engine over every image of a dataset and score it."""
    import cv2

    from mfgvision.inference import load_model

    model = load_model(model_dir)
    names, pairs = load_dataset(Path(dataset_dir))
    predictions: list[list[Prediction]] = []
    ground_truth: list[list[GroundTruth]] = []
    elapsed = 0.0
    for image_path, label_path in pairs:
        frame = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        start = time.perf_counter()
        result = model.detect(frame, prob_threshold=conf, iou_threshold=iou_threshold)
        elapsed += time.perf_counter() - start
        predictions.append(
            [
                (d.label_id, d.probability, d.box.x1, d.box.y1, d.box.x2, d.box.y2)
                for d in result.detections
            ]
        )
        ground_truth.append(read_labels(label_path, frame.shape[1], frame.shape[0]))
    report = mean_ap(predictions, ground_truth, names)
    report["images"] = len(pairs)
    report["model"] = str(model_dir)
    report["ms_per_image"] = round(1000.0 * elapsed / max(len(pairs), 1), 2)
    return report


def eval_main(args: argparse.Namespace) -> int:
    """The ``eval`` command: print one JSON object with mAP50, AP per class and image count."""
    print(json.dumps(evaluate(args.model_dir, args.dataset_dir, args.conf, args.iou)))
    return 0
