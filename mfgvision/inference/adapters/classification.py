"""Image classifiers: softmax (one class per frame) and sigmoid (any classes per frame)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from mfgvision.inference.adapters.base import Adapter, as_float
from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo, TensorInfo
from mfgvision.inference.letterbox import Transform
from mfgvision.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from mfgvision.inference.types import Box, Detection

FULL_FRAME_NORM = Box(0.0, 0.0, 1.0, 1.0)
_TOLERANCE = 1e-3


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def in_unit_range(x: np.ndarray) -> bool:
    return bool(x.size) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def is_distribution(x: np.ndarray) -> bool:
    return in_unit_range(x) and abs(float(x.sum()) - 1.0) <= _TOLERANCE


def is_score_map(tensor: TensorInfo) -> bool:
    """A ZipMap output: a sequence of {label: probability} maps."""
    return tensor.type.startswith("seq(map(")


def is_score_vector(tensor: TensorInfo) -> bool:
    """A float output holding one score per class: ``[C]``, ``[1, C]`` or ``[1, C, 1, 1]``."""
    if not tensor.is_float:
        return False
    if tensor.rank == 4:
        return tensor.dim(2) == 1 and tensor.dim(3) == 1
    return tensor.rank in (1, 2)


class _Classifier(Adapter):
    """Shared input handling and score extraction; subclasses pick the classes to report.

    Raw scores are turned into probabilities with ``activate`` unless the model card says they
    already are, or, without a card entry, ``looks_like_probabilities`` holds for them.
    """

    defaults = InputSpec(
        size=(224, 224),
        resize="stretch",
        pad_colour=(0, 0, 0),
        channel_order="RGB",
        scale=255.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )

    def __init__(self, graph: GraphInfo, card: ModelCard, labels: list[str]) -> None:
        super().__init__(graph, card, labels)
        out = next((t for t in graph.outputs if is_score_map(t)), None)
        out = out or next((t for t in graph.outputs if is_score_vector(t)), None)
        if out is None:
            raise ModelLoadError(
                f"{self.family}: expected an output of class scores ([1, C] or a label map), "
                f"found {graph.describe()}"
            )
        self.output_names = [out.name]
        self._is_map = is_score_map(out)
        self._scores = card.scores
        if not self._is_map:
            self.num_classes = out.dim(1) if out.rank > 1 else out.dim(0)

    def class_scores(self, output: Any) -> np.ndarray:
        """One probability per label."""
        if self._is_map:
            scores = output[0]
            values = [scores.get(name, scores.get(i, 0.0)) for i, name in enumerate(self.labels)]
            return np.asarray(values, dtype=np.float32)
        raw = as_float(output).reshape(-1)
        if self._scores == "probabilities" or (
            self._scores is None and self.looks_like_probabilities(raw)
        ):
            return raw
        return self.activate(raw)

    @abstractmethod
    def activate(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores to probabilities."""

    @abstractmethod
    def looks_like_probabilities(self, raw: np.ndarray) -> bool:
        """Whether raw scores already are probabilities."""

    @abstractmethod
    def chosen(self, probs: np.ndarray, prob_threshold: float, max_detections: int) -> list[int]:
        """The class ids to report, best first."""

    def postprocess(
        self,
        outputs: Sequence[Any],
        transform: Transform,
        prob_threshold: float,
        iou_threshold: float,
        max_detections: int,
    ) -> list[Detection]:
        probs = self.class_scores(outputs[0])
        return [
            self.whole_frame(i, float(probs[i]), transform)
            for i in self.chosen(probs, prob_threshold, max_detections)
        ]

    def whole_frame(self, class_id: int, probability: float, transform: Transform) -> Detection:
        box = Box(0.0, 0.0, float(transform.frame_width), float(transform.frame_height))
        probability = min(max(probability, 0.0), 1.0)
        return Detection(class_id, self.label(class_id), probability, box, FULL_FRAME_NORM)


class SoftmaxClassifier(_Classifier):
    """Multi-class: the best class, when its probability exceeds the threshold."""

    family = "classification-softmax"

    def activate(self, raw: np.ndarray) -> np.ndarray:
        return softmax(raw)

    def looks_like_probabilities(self, raw: np.ndarray) -> bool:
        return is_distribution(raw)

    def chosen(self, probs: np.ndarray, prob_threshold: float, max_detections: int) -> list[int]:
        best = int(probs.argmax())
        if max_detections < 1 or probs[best] <= prob_threshold:
            return []
        return [best]


class SigmoidClassifier(_Classifier):
    """Multi-label: every class whose probability exceeds the threshold, best first."""

    family = "classification-sigmoid"

    def activate(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(raw)

    def looks_like_probabilities(self, raw: np.ndarray) -> bool:
        return in_unit_range(raw)

    def chosen(self, probs: np.ndarray, prob_threshold: float, max_detections: int) -> list[int]:
        ids = np.flatnonzero(probs > prob_threshold)
        return [int(i) for i in ids[np.argsort(-probs[ids], kind="stable")][:max_detections]]
