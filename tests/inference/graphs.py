"""Tiny ONNX graphs with the tensor conventions of each model family, and model folders for them.

The outputs are constants, so every test knows exactly which boxes and scores the model reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ML_OPSET = 3
PROBE_GAIN = 0.001
PROBE_OFFSET = 0.5
Shape = Sequence[int | str | None]


def constant_model(
    outputs: Mapping[str, np.ndarray],
    input_name: str = "images",
    input_shape: Shape = (1, 3, 640, 640),
    input_type: int = TensorProto.FLOAT,
    output_shapes: Mapping[str, Shape] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """A graph with one image input whose outputs are the given arrays.

    ``output_shapes`` overrides the declared shape of an output (e.g. a symbolic dim).
    """
    output_shapes = output_shapes or {}
    nodes, infos = [], []
    for name, value in outputs.items():
        nodes.append(
            helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
        )
        elem = helper.np_dtype_to_tensor_dtype(value.dtype)
        infos.append(
            helper.make_tensor_value_info(name, elem, output_shapes.get(name, value.shape))
        )
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
        infos,
    )
    return _finish(graph, [helper.make_opsetid("", OPSET)], metadata)


def zipmap_model(
    scores: np.ndarray, labels: Sequence[str], input_shape: Shape = (1, 3, 224, 224)
) -> onnx.ModelProto:
    """A classifier in the classic Custom Vision form: ``classLabel`` and a ``loss`` label map."""
    nodes = [
        helper.make_node("Constant", [], ["probs"], value=numpy_helper.from_array(scores, "p")),
        helper.make_node(
            "ZipMap", ["probs"], ["loss"], domain="ai.onnx.ml", classlabels_strings=list(labels)
        ),
        helper.make_node(
            "Constant",
            [],
            ["classLabel"],
            value=numpy_helper.from_array(np.array([[labels[0]]], dtype=object), "l"),
        ),
    ]
    score_map = helper.make_map_type_proto(
        TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    )
    graph = helper.make_graph(
        nodes,
        "zipmap",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, list(input_shape))],
        [
            helper.make_tensor_value_info("classLabel", TensorProto.STRING, [1, 1]),
            helper.make_value_info("loss", helper.make_sequence_type_proto(score_map)),
        ],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    return _finish(graph, opsets, None)


def channel_mean_model(input_shape: Shape = (1, 3, 224, 224)) -> onnx.ModelProto:
    """A "classifier" that shows what it was fed: score c = 0.5 + mean(input channel c) / 1000.

    The offset and gain keep any normalised or 0..255 input within 0..1.
    """
    nodes = [
        helper.make_node("ReduceMean", ["data"], ["means"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["means", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "channel_mean",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, input_shape[1]])],
        initializer=[
            numpy_helper.from_array(np.array(PROBE_GAIN, np.float32), "gain"),
            numpy_helper.from_array(np.array(PROBE_OFFSET, np.float32), "offset"),
        ],
    )
    return _finish(graph, [helper.make_opsetid("", OPSET)], None)


def _finish(
    graph: onnx.GraphProto,
    opsets: list[onnx.OperatorSetIdProto],
    metadata: Mapping[str, str] | None,
) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    return model


def write_model_dir(
    root: Path,
    model: onnx.ModelProto | bytes,
    labels: Sequence[str],
    name: str = "demo",
    version: str = "1",
    labels_file: str = "labels.json",
    labels_in_parent: bool = False,
    card: Mapping[str, object] | None = None,
) -> Path:
    """``root/<name>/<version>/`` with ``model.onnx``, labels and an optional ``model.yaml``."""
    model_dir = root / name / version
    model_dir.mkdir(parents=True)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    (model_dir / "model.onnx").write_bytes(data)
    labels_dir = model_dir.parent if labels_in_parent else model_dir
    if labels_file.endswith(".json"):
        (labels_dir / labels_file).write_text(json.dumps(list(labels)), encoding="utf-8")
    else:
        (labels_dir / labels_file).write_text("\n".join(labels) + "\n", encoding="utf-8")
    if card is not None:
        (model_dir / "model.yaml").write_text(yaml.safe_dump(dict(card)), encoding="utf-8")
    return model_dir


def letterbox_geometry(
    frame_w: int, frame_h: int, input_w: int, input_h: int
) -> tuple[float, float, float]:
    """Scale and centred padding of a letterbox, from its definition, for building expectations."""
    ratio = min(input_w / frame_w, input_h / frame_h)
    return ratio, (input_w - frame_w * ratio) / 2, (input_h - frame_h * ratio) / 2


def frame_to_input(
    box: Sequence[float], frame_w: int, frame_h: int, input_w: int, input_h: int
) -> list[float]:
    """Where an x1, y1, x2, y2 frame box lands in a letterboxed model input."""
    ratio, pad_x, pad_y = letterbox_geometry(frame_w, frame_h, input_w, input_h)
    x1, y1, x2, y2 = box
    return [x1 * ratio + pad_x, y1 * ratio + pad_y, x2 * ratio + pad_x, y2 * ratio + pad_y]


# Output encoders: the tensors each family's model would emit for known boxes and scores.


def yolov8_output(
    boxes: Sequence[Sequence[float]],
    class_ids: Sequence[int],
    scores: Sequence[float],
    num_classes: int,
    rows: int = 8400,
    seed: int = 0,
) -> np.ndarray:
    """``[1, 4+C, N]``: the given x1, y1, x2, y2 input-pixel boxes first, then low-score clutter."""
    rng = np.random.default_rng(seed)
    out = np.zeros((1, 4 + num_classes, rows), np.float32)
    out[0, :2] = rng.uniform(0, 640, (2, rows))
    out[0, 2:4] = rng.uniform(5, 60, (2, rows))
    out[0, 4:] = rng.uniform(0, 0.2, (num_classes, rows))
    for i, (box, cls, score) in enumerate(zip(boxes, class_ids, scores, strict=True)):
        out[0, :4, i] = _cxcywh(box)
        out[0, 4:, i] = min(0.1, score / 2)
        out[0, 4 + cls, i] = score
    return out


def yolov5_output(
    boxes: Sequence[Sequence[float]],
    class_ids: Sequence[int],
    objectness: Sequence[float],
    class_scores: Sequence[float],
    num_classes: int,
    rows: int,
    seed: int = 0,
) -> np.ndarray:
    """``[1, N, 5+C]``: cx, cy, w, h, objectness, class scores; low-objectness clutter after."""
    rng = np.random.default_rng(seed)
    out = np.zeros((1, rows, 5 + num_classes), np.float32)
    out[0, :, :2] = rng.uniform(0, 320, (rows, 2))
    out[0, :, 2:4] = rng.uniform(5, 60, (rows, 2))
    out[0, :, 4] = rng.uniform(0, 0.2, rows)
    out[0, :, 5:] = rng.uniform(0, 1, (rows, num_classes))
    for i, (box, cls, obj, score) in enumerate(
        zip(boxes, class_ids, objectness, class_scores, strict=True)
    ):
        out[0, i, :4] = _cxcywh(box)
        out[0, i, 4] = obj
        out[0, i, 5:] = 0.05
        out[0, i, 5 + cls] = score
    return out


def e2e_output(
    boxes: Sequence[Sequence[float]],
    class_ids: Sequence[int],
    scores: Sequence[float],
    rows: int = 300,
) -> np.ndarray:
    """``[1, K, 6]``: x1, y1, x2, y2, score, class; unused rows are zero."""
    out = np.zeros((1, rows, 6), np.float32)
    for i, (box, cls, score) in enumerate(zip(boxes, class_ids, scores, strict=True)):
        out[0, i] = [*box, score, cls]
    return out


ACV_ANCHORS = [(0.573, 0.677), (1.87, 2.06), (3.34, 5.47), (7.88, 3.53), (9.77, 9.17)]


def acv_grid_output(
    boxes_norm: Sequence[Sequence[float]],
    class_logits: Sequence[Sequence[float]],
    objectness_logits: Sequence[float],
    anchors: Sequence[int],
    grid: tuple[int, int] = (13, 13),
) -> np.ndarray:
    """``[1, 5*(5+C), gh, gw]`` encoding x1, y1, x2, y2 boxes normalised to the input.

    Each box goes to the cell holding its centre and to the given anchor, by inverting
    ``x = (sigmoid(tx) + col) / gw`` and ``w = exp(tw) * anchor_w / gw``. Every other slot has
    objectness logit -12.
    """
    grid_h, grid_w = grid
    num_classes = len(class_logits[0])
    depth = 5 + num_classes
    t = np.zeros((grid_h, grid_w, len(ACV_ANCHORS), depth), np.float32)
    t[..., 4] = -12.0
    for box, logits, obj, anchor in zip(
        boxes_norm, class_logits, objectness_logits, anchors, strict=True
    ):
        x1, y1, x2, y2 = box
        cx, cy = (x1 + x2) / 2 * grid_w, (y1 + y2) / 2 * grid_h
        col, row = int(cx), int(cy)
        anchor_w, anchor_h = ACV_ANCHORS[anchor]
        t[row, col, anchor, 0] = _logit(cx - col)
        t[row, col, anchor, 1] = _logit(cy - row)
        t[row, col, anchor, 2] = np.log((x2 - x1) * grid_w / anchor_w)
        t[row, col, anchor, 3] = np.log((y2 - y1) * grid_h / anchor_h)
        t[row, col, anchor, 4] = obj
        t[row, col, anchor, 5:] = logits
    return t.reshape(grid_h, grid_w, -1).transpose(2, 0, 1)[None].copy()


def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def softmax(x: Sequence[float]) -> np.ndarray:
    e = np.exp(np.asarray(x, np.float64) - np.max(x))
    return e / e.sum()


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _cxcywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
