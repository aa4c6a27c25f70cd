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
from mfgvision.inference.nms import cxcywh_to_xyxy
from mfgvision.inference.preprocess import InputSpec
from mfgvision.inference.types import Detection

YOLO_INPUT = InputSpec(
    size=(640, 640),
    resize="letterbox",
    pad_colour=(114, 114, 114),
    channel_order="RGB",
    scale=255.0,
)


class _YoloNmsAdapter(Adapter):
    """YOLO outputs of one rank-3 tensor: box, extra values and class scores along
    ``values_axis``; detections go through NMS here."""

    defaults = YOLO_INPUT
    values_axis: int
    """The output axis holding, per candidate, its box values then its class scores."""
    leading_values: int
    """How many values (box, objectness) come before the class scores."""
    layout: str

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        out = single_output(graph, self.family, rank=3)
        values = out.dim(self.values_axis)
        if values is not None and values <= self.leading_values:
            raise ModelLoadError(f"{self.family}: expected {self.layout}, found {out.describe()}")
        self.output_names = [out.name]
        self.num_classes = values - self.leading_values if values is not None else None


class YoloV8Adapter(_YoloNmsAdapter):
    """``[1, 4+C, N]``: cx, cy, w, h in input pixels, then C class scores; no objectness."""

    family = "yolov8"
    values_axis = 1
    leading_values = 4
    layout = "[1, 4+C, N]"

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
        return self.suppressed(boxes, scores, class_ids, transform, iou_threshold, max_detections)


class YoloV5Adapter(_YoloNmsAdapter):
    """``[1, N, 5+C]``: cx, cy, w, h in input pixels, objectness, C class scores."""

    family = "yolov5"
    values_axis = 2
    leading_values = 5
    layout = "[1, N, 5+C]"

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
        return self.suppressed(boxes, scores, class_ids, transform, iou_threshold, max_detections)


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
