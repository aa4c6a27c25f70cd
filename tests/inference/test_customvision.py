"""Azure Custom Vision object-detection exports through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfgvision.inference import load_model

from .graphs import acv_grid_output, constant_model, sigmoid, softmax, write_model_dir

LABELS = ["hardhat", "no_hardhat", "no_safety_vest", "safety_vest"]

# x1, y1, x2, y2 normalised to the input: two overlapping boxes and one apart.
BOXES = [[0.20, 0.30, 0.45, 0.70], [0.22, 0.31, 0.46, 0.70], [0.60, 0.10, 0.90, 0.50]]


def grid_dir(tmp_path: Path, class_ids: list[int]) -> Path:
    logits = [[0.0] * len(LABELS) for _ in class_ids]
    for row, cls in zip(logits, class_ids, strict=True):
        row[cls] = 6.0
    output = acv_grid_output(BOXES, logits, objectness_logits=[4.0, 2.0, 1.0], anchors=[2, 3, 1])
    graph = constant_model(
        {"model_outputs0": output}, input_name="data", input_shape=(1, 3, 416, 416)
    )
    return write_model_dir(tmp_path, graph, LABELS, labels_file="labels.txt", labels_in_parent=True)


def expected_probability(objectness_logit: float) -> float:
    return float(sigmoid(objectness_logit)) * float(softmax([6.0, 0, 0, 0])[0])


def test_grid_decodes_to_frame_pixels(tmp_path: Path, frame) -> None:
    height, width = frame.shape[:2]
    model = load_model(grid_dir(tmp_path, class_ids=[1, 1, 3]))
    assert model.family == "acv-od-grid"
    assert model.labels == LABELS

    result = model.detect(frame, prob_threshold=0.5, iou_threshold=0.45)

    assert [d.label for d in result.detections] == ["no_hardhat", "safety_vest"]
    assert [d.probability for d in result.detections] == pytest.approx(
        [expected_probability(4.0), expected_probability(1.0)], rel=1e-4
    )
    for det, box in zip(result.detections, [BOXES[0], BOXES[2]], strict=True):
        assert det.box_norm.as_list() == pytest.approx(box, abs=1e-4)
        assert det.box.as_list() == pytest.approx(
            [box[0] * width, box[1] * height, box[2] * width, box[3] * height], abs=0.1
        )


def test_grid_nms_keeps_other_classes_and_honours_thresholds(tmp_path: Path) -> None:
    model = load_model(grid_dir(tmp_path, class_ids=[1, 0, 3]))
    frame = np.zeros((720, 1280, 3), np.uint8)

    result = model.detect(frame, prob_threshold=0.5)
    assert [d.label for d in result.detections] == ["no_hardhat", "hardhat", "safety_vest"]
    assert [d.label for d in model.detect(frame, prob_threshold=0.8).detections] == [
        "no_hardhat",
        "hardhat",
    ]
    assert [d.label for d in model.detect(frame, prob_threshold=0.9).detections] == ["no_hardhat"]


def test_grid_model_is_fed_bgr_0_to_255(tmp_path: Path) -> None:
    model = load_model(grid_dir(tmp_path, class_ids=[0, 1, 2]))
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:] = (10, 100, 200)  # B, G, R

    feeds, _ = model.adapter.preprocess(frame)

    (tensor,) = feeds.values()
    assert list(feeds) == ["data"]
    assert tensor.shape == (1, 3, 416, 416)
    assert tensor.dtype == np.float32
    assert [float(tensor[0, c].mean()) for c in range(3)] == pytest.approx([10, 100, 200])


def boxes_model(metadata: dict[str, str] | None = None):
    boxes = np.array([[BOXES[0], BOXES[1], BOXES[2], [0, 0, 0.1, 0.1]]], np.float32)
    return constant_model(
        {
            "detected_boxes": boxes,
            "detected_scores": np.array([[0.8, 0.7, 0.6, 0.1]], np.float32),
            "detected_classes": np.array([[2, 2, 0, 1]], np.int64),
        },
        input_name="image_tensor",
        input_shape=(1, 3, 320, 320),
        metadata=metadata,
    )


def test_separate_outputs_export(tmp_path: Path, frame) -> None:
    height, width = frame.shape[:2]
    model = load_model(write_model_dir(tmp_path, boxes_model(), LABELS, labels_file="labels.txt"))
    assert model.family == "acv-od"

    result = model.detect(frame, prob_threshold=0.5, iou_threshold=0.45)

    assert [(d.label, d.probability) for d in result.detections] == [
        ("no_safety_vest", pytest.approx(0.8)),
        ("hardhat", pytest.approx(0.6)),
    ]
    box = BOXES[2]
    assert result.detections[1].box.as_list() == pytest.approx(
        [box[0] * width, box[1] * height, box[2] * width, box[3] * height], abs=0.1
    )


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, [200 / 255, 100 / 255, 10 / 255]),
        (
            {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": "NominalRange_0_255"},
            [10, 100, 200],
        ),
        (
            {"Image.BitmapPixelFormat": "Rgb8", "Image.NominalPixelRange": "Normalized_1_1"},
            [200 / 127.5 - 1, 100 / 127.5 - 1, 10 / 127.5 - 1],
        ),
    ],
)
def test_image_metadata_of_the_export_is_honoured(
    tmp_path: Path, metadata: dict[str, str], expected: list[float]
) -> None:
    model = load_model(write_model_dir(tmp_path, boxes_model(metadata), LABELS))
    frame = np.zeros((50, 80, 3), np.uint8)
    frame[:] = (10, 100, 200)
    (tensor,) = model.adapter.preprocess(frame)[0].values()
    assert [float(tensor[0, c].mean()) for c in range(3)] == pytest.approx(expected, rel=1e-5)
