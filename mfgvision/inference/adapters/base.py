"""The interface every model family implements, and the helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo, TensorInfo
from mfgvision.inference.letterbox import Transform
from mfgvision.inference.nms import nms
from mfgvision.inference.preprocess import ImageInput, InputSpec, resolve_input
from mfgvision.inference.types import Box, Detection


class Adapter(ABC):
    """Converts frames into a family's input tensors and its outputs into detections."""

    family: ClassVar[str]
    defaults: ClassVar[InputSpec]

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        self.image_input: ImageInput = resolve_input(graph, card, self.defaults)
        self.labels = labels
        self.output_names: list[str] = []
        # The class count the graph implies; None when the graph cannot tell.
        self.num_classes: int | None = None

    def preprocess(self, frame: np.ndarray) -> tuple[dict[str, np.ndarray], Transform]:
        """ORT feeds for one BGR frame, and where the frame landed in the input."""
        tensor, transform = self.image_input(frame)
        return {self.image_input.name: tensor}, transform

    @abstractmethod
    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        """Detections in frame pixels from the outputs named by ``output_names``, in that order."""

    def label(self, class_id: int) -> str:
        """The name of a class index; indices the labels do not cover get a placeholder name."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else f"class_{class_id}"

    def detections(
        self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, transform: Transform
    ) -> list[Detection]:
        """Detections from boxes in input pixels; boxes left empty in the frame are dropped."""
        frame_boxes = transform.to_frame(boxes)
        width, height = transform.frame_width, transform.frame_height
        found = []
        for (x1, y1, x2, y2), score, class_id in zip(
            frame_boxes.tolist(),
            np.asarray(scores).tolist(),
            np.asarray(class_ids).tolist(),
            strict=True,
        ):
            if x2 <= x1 or y2 <= y1:
                continue
            box = Box(x1, y1, x2, y2)
            found.append(
                Detection(
                    int(class_id),
                    self.label(int(class_id)),
                    min(max(float(score), 0.0), 1.0),
                    box,
                    box.normalised(width, height),
                )
            )
        return found

    def suppressed(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        transform: Transform,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        """Detections of the candidate boxes (input pixels) that per-class NMS keeps."""
        picked = nms(boxes, scores, class_ids, iou_threshold, max_detections)
        return self.detections(boxes[picked], scores[picked], class_ids[picked], transform)


def single_output(graph: GraphInfo, family: str, rank: int) -> TensorInfo:
    """The first output, checked to be a float tensor of ``rank`` with batch size 1."""
    if not graph.outputs:
        raise ModelLoadError(f"{family}: the graph has no outputs")
    out = graph.outputs[0]
    if not out.is_float or out.rank != rank or out.dim(0) not in (1, None):
        raise ModelLoadError(
            f"{family}: expected a float output of rank {rank} with batch 1, found "
            f"{out.describe()} ({graph.describe()})"
        )
    return out


def as_float(value: Any) -> np.ndarray:
    """An output as float32 (FP16 models return float16)."""
    return np.asarray(value, dtype=np.float32)
