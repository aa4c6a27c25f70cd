"""One adapter per model family, and telling the family from a graph."""

from __future__ import annotations

from mfgvision.inference.adapters.base import Adapter
from mfgvision.inference.adapters.boxes import BoxesLabelsScoresAdapter, find_box_outputs
from mfgvision.inference.adapters.classification import (
    SigmoidClassifier,
    SoftmaxClassifier,
    is_score_map,
    is_score_vector,
)
from mfgvision.inference.adapters.customvision import (
    ACV_OUTPUTS,
    ANCHORS,
    CustomVisionBoxesAdapter,
    CustomVisionGridAdapter,
)
from mfgvision.inference.adapters.yolo import YoloEndToEndAdapter, YoloV5Adapter, YoloV8Adapter
from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo, TensorInfo

FAMILIES: dict[str, type[Adapter]] = {
    cls.family: cls
    for cls in (
        YoloV8Adapter,
        YoloV5Adapter,
        YoloEndToEndAdapter,
        CustomVisionGridAdapter,
        CustomVisionBoxesAdapter,
        SoftmaxClassifier,
        SigmoidClassifier,
        BoxesLabelsScoresAdapter,
    )
}

__all__ = ["FAMILIES", "Adapter", "create_adapter", "detect_family"]


def create_adapter(family: str, graph: GraphInfo, card: ModelCard, labels: list[str]) -> Adapter:
    """The adapter for ``family``; ModelLoadError if the family is unknown or the graph differs."""
    cls = FAMILIES.get(family)
    if cls is None:
        raise ModelLoadError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return cls(graph, card, labels)


def detect_family(graph: GraphInfo) -> str:
    """The family a graph's outputs follow; ModelLoadError naming what was found otherwise.

    Sigmoid (multi-label) classifiers look like softmax ones and need ``family`` in the model card.
    """
    names = {t.name for t in graph.outputs}
    if any(is_score_map(t) for t in graph.outputs):
        return SoftmaxClassifier.family
    if set(ACV_OUTPUTS) <= names:
        return CustomVisionBoxesAdapter.family
    if len(graph.outputs) >= 3 and find_box_outputs(graph):
        return BoxesLabelsScoresAdapter.family
    if graph.outputs:
        first = graph.outputs[0]
        if first.is_float and first.rank == 3 and first.dim(0) in (1, None):
            family = _yolo_family(first, graph)
            if family:
                return family
        if len(graph.outputs) == 1 and is_score_vector(first):
            return SoftmaxClassifier.family
        if len(graph.outputs) == 1 and first.is_float and first.rank == 4:
            channels = first.dim(1)
            if channels and channels % len(ANCHORS) == 0 and channels // len(ANCHORS) >= 6:
                return CustomVisionGridAdapter.family
    raise ModelLoadError(
        f"unknown model layout ({graph.describe()}); name the family in model.yaml "
        f"(one of {', '.join(FAMILIES)})"
    )


def _yolo_family(out: TensorInfo, graph: GraphInfo) -> str | None:
    """v8 ``[1, 4+C, N]`` has fewer rows than columns; v5 ``[1, N, 5+C]`` the reverse;
    ``[1, K, 6]`` is end-to-end unless K is exactly the row count of a v5 head for this input."""
    rows, cols = out.dim(1), out.dim(2)
    if cols == 6 and rows is not None and rows != _yolov5_rows(graph):
        return YoloEndToEndAdapter.family
    if rows is not None and cols is not None:
        return YoloV8Adapter.family if rows < cols else YoloV5Adapter.family
    if rows is not None:
        return YoloV8Adapter.family
    if cols is not None:
        return YoloV5Adapter.family
    return None


def _yolov5_rows(graph: GraphInfo) -> int | None:
    """Rows of a YOLOv5 head (3 anchors at strides 8, 16, 32) for the graph's input size."""
    if len(graph.inputs) != 1 or graph.inputs[0].rank != 4:
        return None
    height, width = graph.inputs[0].dim(2), graph.inputs[0].dim(3)
    if height is None or width is None:
        return None
    return 3 * sum((width // s) * (height // s) for s in (8, 16, 32))
