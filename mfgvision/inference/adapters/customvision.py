"""Azure Custom Vision object-detection exports: the YOLOv2-style grid, and separate outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mfgvision.inference.adapters.base import Adapter, as_float, single_output
from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo
from mfgvision.inference.letterbox import Transform
from mfgvision.inference.preprocess import InputSpec
from mfgvision.inference.types import Detection

ANCHORS = np.array(
    [[0.573, 0.677], [1.87, 2.06], [3.34, 5.47], [7.88, 3.53], [9.77, 9.17]], dtype=np.float32
)
ACV_OUTPUTS = ("detected_boxes", "detected_scores", "detected_classes")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class CustomVisionGridAdapter(Adapter):
    """Input ``data`` (BGR, 0..255); output ``[1, 5*(5+C), H/32, W/32]``.

    Per cell and anchor: tx, ty, tw, th, objectness, C class logits. Boxes come out normalised to
    the input; the class probability is softmax(class logits) x sigmoid(objectness).
    """

    family = "acv-od-grid"
    defaults = InputSpec(
        size=(416, 416), resize="stretch", pad_colour=(0, 0, 0), channel_order="BGR", scale=1.0
    )

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        out = single_output(graph, self.family, rank=4)
        channels = out.dim(1)
        anchors = len(ANCHORS)
        if channels is not None and (channels % anchors or channels // anchors < 6):
            raise ModelLoadError(
                f"{self.family}: expected {anchors} x (5 + C) channels, found {out.describe()}"
            )
        self.output_names = [out.name]
        self.num_classes = channels // anchors - 5 if channels is not None else None

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        grid = as_float(outputs[0])[0]
        channels, grid_h, grid_w = grid.shape
        t = grid.transpose(1, 2, 0).reshape(grid_h, grid_w, len(ANCHORS), channels // len(ANCHORS))
        with np.errstate(over="ignore"):
            cx = (_sigmoid(t[..., 0]) + np.arange(grid_w)[None, :, None]) / grid_w
            cy = (_sigmoid(t[..., 1]) + np.arange(grid_h)[:, None, None]) / grid_h
            w = np.exp(t[..., 2]) * ANCHORS[:, 0] / grid_w
            h = np.exp(t[..., 3]) * ANCHORS[:, 1] / grid_h
            objectness = _sigmoid(t[..., 4])
            logits = t[..., 5:]
            exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = (exp / exp.sum(axis=-1, keepdims=True) * objectness[..., None]).reshape(
            -1, logits.shape[-1]
        )
        in_w, in_h = self.image_input.size
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).reshape(-1, 4)
        boxes = boxes * np.array([in_w, in_h, in_w, in_h], dtype=np.float32)
        rows, class_ids = np.nonzero(probs > prob_threshold)
        boxes, scores = boxes[rows], probs[rows, class_ids]
        return self.suppressed(boxes, scores, class_ids, transform, iou_threshold, max_detections)


class CustomVisionBoxesAdapter(Adapter):
    """Outputs ``detected_boxes [1, K, 4]`` (x1, y1, x2, y2 normalised to the input),
    ``detected_scores [1, K]`` and ``detected_classes [1, K]``."""

    family = "acv-od"
    defaults = InputSpec(
        size=(320, 320), resize="stretch", pad_colour=(0, 0, 0), channel_order="RGB", scale=255.0
    )

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        missing = [name for name in ACV_OUTPUTS if graph.output(name) is None]
        if missing:
            raise ModelLoadError(
                f"{self.family}: outputs {', '.join(missing)} not found ({graph.describe()})"
            )
        self.output_names = list(ACV_OUTPUTS)

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        boxes = as_float(outputs[0]).reshape(-1, 4)
        scores = as_float(outputs[1]).reshape(-1)
        class_ids = np.rint(np.asarray(outputs[2])).astype(np.int64).reshape(-1)
        keep = scores > prob_threshold
        in_w, in_h = self.image_input.size
        boxes = boxes[keep] * np.array([in_w, in_h, in_w, in_h], dtype=np.float32)
        scores, class_ids = scores[keep], class_ids[keep]
        return self.suppressed(boxes, scores, class_ids, transform, iou_threshold, max_detections)
