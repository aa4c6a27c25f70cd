"""YOLO families: v5 ``[1, N, 5+C]``, v8/11 ``[1, 4+C, N]`` and end-to-end ``[1, K, 6]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mfgvision.inference.adapters.base import Adapter, as_float, single_output
from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo
from mfgvision.inference.letterbox import Transform
from mfgvision.inference.nms import cxcywh_to_xyxy, nms
from mfgvision.inference.preprocess import InputSpec
from mfgvision.inference.types import Detection

YOLO_INPUT = InputSpec(
    size=(640, 640),
    resize="letterbox",
    pad_colour=(114, 114, 114),
    channel_order="RGB",
    scale=255.0,
)


class YoloV8Adapter(Adapter):
    """``[1, 4+C, N]``: cx, cy, w, h in input pixels, then C class scores; no objectness."""

    family = "yolov8"
    defaults = YOLO_INPUT

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        out = single_output(graph, self.family, rank=3)
        rows = out.dim(1)
        if rows is not None and rows < 5:
            raise ModelLoadError(f"{self.family}: expected [1, 4+C, N], found {out.describe()}")
        self.output_names = [out.name]
        self.num_classes = rows - 4 if rows is not None else None

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        pred = as_float(outputs[0])[0].T
        class_scores = pred[:, 4:]
        scores = class_scores.max(axis=1)
        keep = scores > prob_threshold
        pred, scores = pred[keep], scores[keep]
        class_ids = class_scores[keep].argmax(axis=1)
        boxes = cxcywh_to_xyxy(pred[:, :4])
        picked = nms(boxes, scores, class_ids, iou_threshold, max_detections)
        return self.detections(boxes[picked], scores[picked], class_ids[picked], transform)


class YoloV5Adapter(Adapter):
    """``[1, N, 5+C]``: cx, cy, w, h in input pixels, objectness, C class scores."""

    family = "yolov5"
    defaults = YOLO_INPUT

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        out = single_output(graph, self.family, rank=3)
        cols = out.dim(2)
        if cols is not None and cols < 6:
            raise ModelLoadError(f"{self.family}: expected [1, N, 5+C], found {out.describe()}")
        self.output_names = [out.name]
        self.num_classes = cols - 5 if cols is not None else None

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        pred = as_float(outputs[0])[0]
        pred = pred[pred[:, 4] > prob_threshold]
        class_scores = pred[:, 5:] * pred[:, 4:5]
        class_ids = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(pred)), class_ids]
        keep = scores > prob_threshold
        boxes = cxcywh_to_xyxy(pred[keep, :4])
        scores, class_ids = scores[keep], class_ids[keep]
        picked = nms(boxes, scores, class_ids, iou_threshold, max_detections)
        return self.detections(boxes[picked], scores[picked], class_ids[picked], transform)


class YoloEndToEndAdapter(Adapter):
    """``[1, K, 6]``: x1, y1, x2, y2 in input pixels, score, class; NMS is done in the graph."""

    family = "yolo-e2e"
    defaults = YOLO_INPUT

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        out = single_output(graph, self.family, rank=3)
        if out.dim(2) not in (6, None):
            raise ModelLoadError(f"{self.family}: expected [1, K, 6], found {out.describe()}")
        self.output_names = [out.name]

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        pred = as_float(outputs[0])[0]
        pred = pred[pred[:, 4] > prob_threshold]
        pred = pred[np.argsort(-pred[:, 4], kind="stable")][:max_detections]
        return self.detections(
            pred[:, :4], pred[:, 4], np.rint(pred[:, 5]).astype(np.int64), transform
        )
