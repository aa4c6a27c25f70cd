"""Detectors with separate boxes / labels / scores outputs (AutoML Faster R-CNN, RetinaNet, ...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mfgvision.inference.adapters.base import Adapter, as_float
from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo, TensorInfo
from mfgvision.inference.letterbox import Transform
from mfgvision.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from mfgvision.inference.types import Detection

BACKGROUND = "--bg--"


def _pick(
    outputs: Sequence[TensorInfo], words: tuple[str, ...], fits: Callable[[TensorInfo], bool]
) -> TensorInfo | None:
    """The one output whose name has one of ``words`` and fits, else the one that merely fits."""
    fitting = [t for t in outputs if fits(t)]
    named = [t for t in fitting if any(w in t.name.lower() for w in words)]
    for group in (named, fitting):
        if len(group) == 1:
            return group[0]
        if group:
            return None
    return None


def find_box_outputs(graph: GraphInfo) -> tuple[TensorInfo, TensorInfo, TensorInfo] | None:
    """The (boxes, labels, scores) outputs, told apart by name, then dtype and shape."""
    boxes = _pick(
        graph.outputs, ("box",), lambda t: t.is_float and t.rank in (2, 3) and t.dim(-1) == 4
    )
    if boxes is None:
        return None
    rest = [t for t in graph.outputs if t is not boxes]
    labels = _pick(rest, ("label", "class"), lambda t: t.is_integer and t.rank in (1, 2))
    rest = [t for t in rest if t is not labels]
    scores = _pick(rest, ("score", "conf"), lambda t: t.is_float and t.rank == boxes.rank - 1)
    if labels is None or scores is None:
        return None
    return boxes, labels, scores


class BoxesLabelsScoresAdapter(Adapter):
    """Boxes ``[K, 4]`` x1, y1, x2, y2 in input pixels, labels ``[K]``, scores ``[K]`` (any order,
    optional batch dimension). A ``--bg--`` first label marks index 0 as background."""

    family = "boxes-labels-scores"
    defaults = InputSpec(
        size=(800, 600),
        resize="letterbox",
        pad_colour=(104, 116, 124),  # the ImageNet mean in BGR: padding normalises to about zero
        channel_order="RGB",
        scale=255.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        offset = 1 if labels[0] == BACKGROUND else 0
        super().__init__(graph, card, labels[offset:])
        found = find_box_outputs(graph)
        if found is None:
            raise ModelLoadError(
                f"{self.family}: cannot tell the boxes, labels and scores outputs apart "
                f"({graph.describe()})"
            )
        self.output_names = [t.name for t in found]
        self._offset = offset

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        boxes = as_float(outputs[0]).reshape(-1, 4)
        class_ids = np.asarray(outputs[1]).astype(np.int64).reshape(-1) - self._offset
        scores = as_float(outputs[2]).reshape(-1)
        keep = (scores > prob_threshold) & (class_ids >= 0)
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        return self.suppressed(boxes, scores, class_ids, transform, iou_threshold, max_detections)
