"""YOLOv5, YOLOv8/11 and end-to-end YOLO models through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfgvision.inference import load_model

from .graphs import (
    constant_model,
    e2e_output,
    frame_to_input,
    write_model_dir,
    yolov5_output,
    yolov8_output,
)

LABELS = ["scratch", "hole", "spot"]


def frame_boxes(width: int, height: int) -> list[list[float]]:
    """Three boxes in frame pixels: two overlapping a lot, one elsewhere."""
    return [
        [0.10 * width, 0.20 * height, 0.40 * width, 0.60 * height],
        [0.11 * width, 0.21 * height, 0.41 * width, 0.60 * height],
        [0.60 * width, 0.50 * height, 0.90 * width, 0.95 * height],
    ]


def assert_box(actual: list[float], expected: list[float], tol: float = 1.0) -> None:
    assert np.allclose(actual, expected, atol=tol), f"{actual} != {expected}"


def yolov8_dir(tmp_path: Path, width: int, height: int, class_ids: list[int]) -> Path:
    boxes = [frame_to_input(b, width, height, 640, 640) for b in frame_boxes(width, height)]
    output = yolov8_output(boxes, class_ids, [0.9, 0.8, 0.7], num_classes=len(LABELS))
    return write_model_dir(tmp_path, constant_model({"output0": output}), LABELS, name="yolo8")


def test_yolov8_boxes_map_back_to_frame_and_nms_is_per_class(tmp_path: Path, frame) -> None:
    height, width = frame.shape[:2]
    model = load_model(yolov8_dir(tmp_path, width, height, class_ids=[0, 0, 2]))
    assert model.family == "yolov8"
    assert model.input_size == (640, 640)

    result = model.detect(frame, prob_threshold=0.25, iou_threshold=0.45)

    expected = frame_boxes(width, height)
    assert (result.frame_width, result.frame_height) == (width, height)
    assert [d.label for d in result.detections] == ["scratch", "spot"]
    assert [d.probability for d in result.detections] == pytest.approx([0.9, 0.7])
    assert_box(result.detections[0].box.as_list(), expected[0])
    assert_box(result.detections[1].box.as_list(), expected[2])
    norm = result.detections[1].box_norm.as_list()
    assert norm == pytest.approx([0.6, 0.5, 0.9, 0.95], abs=2e-3)
    assert set(result.timings_ms) == {"preprocess", "queue", "infer", "postprocess"}


def test_yolov8_overlapping_boxes_of_different_classes_both_stay(tmp_path: Path) -> None:
    model = load_model(yolov8_dir(tmp_path, 1280, 720, class_ids=[0, 1, 2]))
    result = model.detect(np.zeros((720, 1280, 3), np.uint8), prob_threshold=0.25)
    assert [d.label for d in result.detections] == ["scratch", "hole", "spot"]


def test_yolov8_thresholds(tmp_path: Path) -> None:
    model = load_model(yolov8_dir(tmp_path, 1280, 720, class_ids=[0, 0, 2]))
    frame = np.zeros((720, 1280, 3), np.uint8)

    assert [d.probability for d in model.detect(frame, prob_threshold=0.75).detections] == (
        pytest.approx([0.9])
    )
    kept = model.detect(frame, prob_threshold=0.25, iou_threshold=0.95).detections
    assert [d.probability for d in kept] == pytest.approx([0.9, 0.8, 0.7])
    assert len(model.detect(frame, prob_threshold=0.25, max_detections=1).detections) == 1
    assert model.detect(frame, prob_threshold=0.95).detections == []


def test_yolov5_objectness_times_class_score(tmp_path: Path, frame) -> None:
    height, width = frame.shape[:2]
    boxes = [frame_to_input(b, width, height, 320, 320) for b in frame_boxes(width, height)]
    output = yolov5_output(
        boxes,
        class_ids=[1, 1, 0],
        objectness=[0.95, 0.9, 0.8],
        class_scores=[0.9, 0.9, 0.5],
        num_classes=2,
        rows=6300,  # a YOLOv5 head at 320 px
    )
    graph = constant_model({"output0": output}, input_shape=(1, 3, 320, 320))
    model = load_model(write_model_dir(tmp_path, graph, ["hardhat", "no_hardhat"]))
    assert model.family == "yolov5"

    result = model.detect(frame, prob_threshold=0.3)

    expected = frame_boxes(width, height)
    assert [d.label for d in result.detections] == ["no_hardhat", "hardhat"]
    assert [d.probability for d in result.detections] == pytest.approx([0.95 * 0.9, 0.8 * 0.5])
    assert_box(result.detections[0].box.as_list(), expected[0], tol=2.0)
    assert_box(result.detections[1].box.as_list(), expected[2], tol=2.0)
    assert model.detect(frame, prob_threshold=0.5).detections[0].label == "no_hardhat"
    assert len(model.detect(frame, prob_threshold=0.5).detections) == 1


def test_end_to_end_output_is_not_suppressed_again(tmp_path: Path, frame) -> None:
    height, width = frame.shape[:2]
    boxes = [frame_to_input(b, width, height, 640, 640) for b in frame_boxes(width, height)]
    output = e2e_output(boxes, class_ids=[2, 2, 1], scores=[0.6, 0.85, 0.3])
    model = load_model(write_model_dir(tmp_path, constant_model({"output0": output}), LABELS))
    assert model.family == "yolo-e2e"

    result = model.detect(frame, prob_threshold=0.25, iou_threshold=0.45)

    expected = frame_boxes(width, height)
    assert [d.label for d in result.detections] == ["spot", "spot", "hole"]
    assert [d.probability for d in result.detections] == pytest.approx([0.85, 0.6, 0.3])
    for det, box in zip(result.detections, [expected[1], expected[0], expected[2]], strict=True):
        assert_box(det.box.as_list(), box)
    assert len(model.detect(frame, prob_threshold=0.5).detections) == 2


def test_box_in_the_padding_is_clipped_to_the_frame(tmp_path: Path) -> None:
    # 1280x720 in 640x640: the image occupies rows 140..500; this box starts in the top pad.
    output = yolov8_output([[100, 100, 300, 300]], [0], [0.9], num_classes=len(LABELS))
    model = load_model(write_model_dir(tmp_path, constant_model({"output0": output}), LABELS))
    (det,) = model.detect(np.zeros((720, 1280, 3), np.uint8)).detections
    assert det.box.y1 == 0.0
    assert_box(det.box.as_list(), [200, 0, 600, 320])
    assert det.box_norm.y1 == 0.0


def test_one_class_yolov5_head_is_told_from_end_to_end(tmp_path: Path) -> None:
    output = yolov5_output([[10, 10, 50, 50]], [0], [0.9], [0.9], num_classes=1, rows=6300)
    graph = constant_model({"output0": output}, input_shape=(1, 3, 320, 320))
    assert load_model(write_model_dir(tmp_path, graph, ["part"])).family == "yolov5"


def test_symbolic_anchor_dim_is_still_yolov8(tmp_path: Path) -> None:
    output = yolov8_output([[10, 10, 50, 50]], [0], [0.9], num_classes=len(LABELS))
    graph = constant_model({"output0": output}, output_shapes={"output0": [1, 7, "anchors"]})
    model = load_model(write_model_dir(tmp_path, graph, LABELS))
    assert model.family == "yolov8"
    assert model.detect(np.zeros((640, 640, 3), np.uint8)).detections[0].label == "scratch"
