"""AutoML Faster R-CNN / RetinaNet style models: separate boxes, labels and scores outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfgvision.inference import load_model

from .graphs import constant_model, frame_to_input, write_model_dir

CLASSES = ["hardhat", "no_hardhat", "no_safety_vest", "safety_vest"]


def frame_boxes(width: int, height: int) -> list[list[float]]:
    return [
        [0.10 * width, 0.10 * height, 0.30 * width, 0.50 * height],
        [0.11 * width, 0.11 * height, 0.31 * width, 0.50 * height],  # overlaps the first
        [0.10 * width, 0.10 * height, 0.30 * width, 0.50 * height],  # same place, other class
        [0.50 * width, 0.60 * height, 0.95 * width, 0.90 * height],
    ]


def detector_model(width: int, height: int, class_ids: list[int], order: str):
    boxes = [frame_to_input(b, width, height, 800, 600) for b in frame_boxes(width, height)]
    outputs: dict[str, np.ndarray] = {
        "boxes": np.array(boxes, np.float32),
        "labels": np.array(class_ids, np.int64),
        "scores": np.array([0.9, 0.8, 0.7, 0.4], np.float32),
    }
    ordered = {name: outputs[name] for name in order.split(",")}
    return constant_model(ordered, input_name="input", input_shape=(1, 3, 600, 800))


@pytest.mark.parametrize(
    ("order", "labels", "class_ids"),
    [
        ("boxes,labels,scores", ["--bg--", *CLASSES], [2, 2, 4, 1]),  # Faster R-CNN
        ("boxes,scores,labels", CLASSES, [1, 1, 3, 0]),  # RetinaNet
    ],
    ids=["faster-rcnn", "retinanet"],
)
def test_boxes_labels_scores(
    tmp_path: Path, frame: np.ndarray, order: str, labels: list[str], class_ids: list[int]
) -> None:
    height, width = frame.shape[:2]
    graph = detector_model(width, height, class_ids, order)
    model = load_model(write_model_dir(tmp_path, graph, labels))
    assert model.family == "boxes-labels-scores"
    assert model.labels == CLASSES
    assert model.input_size == (800, 600)

    result = model.detect(frame, prob_threshold=0.3, iou_threshold=0.45)

    expected = frame_boxes(width, height)
    assert [(d.label, d.label_id) for d in result.detections] == [
        ("no_hardhat", 1),
        ("safety_vest", 3),
        ("hardhat", 0),
    ]
    assert [d.probability for d in result.detections] == pytest.approx([0.9, 0.7, 0.4])
    for det, box in zip(result.detections, [expected[0], expected[2], expected[3]], strict=True):
        assert np.allclose(det.box.as_list(), box, atol=1.5)

    assert len(model.detect(frame, prob_threshold=0.3, iou_threshold=0.95).detections) == 4
    assert [d.probability for d in model.detect(frame, prob_threshold=0.75).detections] == (
        pytest.approx([0.9])
    )


def test_background_class_is_never_reported(tmp_path: Path) -> None:
    graph = detector_model(640, 480, [0, 0, 0, 3], "boxes,labels,scores")
    model = load_model(write_model_dir(tmp_path, graph, ["--bg--", *CLASSES]))
    result = model.detect(np.zeros((480, 640, 3), np.uint8), prob_threshold=0.1)
    assert [d.label for d in result.detections] == ["no_safety_vest"]


def test_imagenet_normalisation_in_rgb_order(tmp_path: Path) -> None:
    graph = detector_model(640, 480, [1, 1, 1, 1], "boxes,labels,scores")
    model = load_model(write_model_dir(tmp_path, graph, CLASSES))
    frame = np.zeros((600, 800, 3), np.uint8)
    frame[:] = (10, 100, 200)  # B, G, R

    (tensor,) = model.adapter.preprocess(frame)[0].values()

    expected = [
        (200 / 255 - 0.485) / 0.229,
        (100 / 255 - 0.456) / 0.224,
        (10 / 255 - 0.406) / 0.225,
    ]
    assert [float(tensor[0, c].mean()) for c in range(3)] == pytest.approx(expected, rel=1e-5)


def test_outputs_told_apart_by_dtype_when_names_say_nothing(tmp_path: Path) -> None:
    width, height = 1280, 720
    boxes = [frame_to_input(b, width, height, 800, 600) for b in frame_boxes(width, height)]
    graph = constant_model(
        {
            "out_a": np.array([0.2, 0.9, 0.3, 0.1], np.float32),
            "out_b": np.array([0, 2, 1, 1], np.int64),
            "out_c": np.array(boxes, np.float32),
        },
        input_name="input",
        input_shape=(1, 3, 600, 800),
    )
    model = load_model(write_model_dir(tmp_path, graph, CLASSES))
    (det,) = model.detect(np.zeros((height, width, 3), np.uint8), prob_threshold=0.5).detections
    assert (det.label, det.probability) == ("no_safety_vest", pytest.approx(0.9))
    assert np.allclose(det.box.as_list(), frame_boxes(width, height)[1], atol=1.5)
