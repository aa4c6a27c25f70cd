"""Class-wise non-maximum suppression."""

from __future__ import annotations

import cv2
import numpy as np

MAX_DETECTIONS = 300


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int = MAX_DETECTIONS,
) -> np.ndarray:
    """Indices of the boxes kept, best score first.

    ``boxes`` are ``(N, 4)`` x1, y1, x2, y2. A box is suppressed only by a better-scoring box
    of the same class overlapping it by more than ``iou_threshold``. At most ``max_detections``
    are kept.
    """
    if len(scores) == 0 or max_detections <= 0:
        return np.empty(0, dtype=np.int64)
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    xywh[:, 2:] -= xywh[:, :2]
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    picked = cv2.dnn.NMSBoxesBatched(
        xywh,  # type: ignore[arg-type]  # OpenCV takes arrays; its stubs list sequences
        scores,  # type: ignore[arg-type]
        class_ids,  # type: ignore[arg-type]
        0.0,
        float(iou_threshold),
    )
    keep = np.asarray(picked, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")][:max_detections]


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre/size boxes ``(N, 4)`` to corner boxes."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)
