"""A folder camera and a constant-output YOLOv8 model whose detections every CIS test knows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.inference.graphs import constant_model, frame_to_input, write_model_dir, yolov8_output

LABELS = ["scratch", "hole", "spot"]
FRAME_W, FRAME_H = 1280, 720
INPUT = 320
# Boxes in original-frame pixels the model will report, with their classes and scores.
FRAME_BOXES = [[100.0, 80.0, 300.0, 200.0], [700.0, 400.0, 900.0, 650.0]]
CLASSES = [0, 1]
SCORES = [0.9, 0.7]


def yolo_model_bytes() -> bytes:
    boxes = [frame_to_input(b, FRAME_W, FRAME_H, INPUT, INPUT) for b in FRAME_BOXES]
    out = yolov8_output(boxes, CLASSES, SCORES, len(LABELS), rows=2100)
    return constant_model({"output0": out}, input_shape=(1, 3, INPUT, INPUT)).SerializeToString()


def write_const_model(root: Path) -> Path:
    """The constant model as ``const/1`` under ``root``."""
    write_model_dir(root, yolo_model_bytes(), LABELS, name="const", version="1")
    return root


def write_frames(folder: Path) -> Path:
    """Four noise frames of the size the model's boxes are given in."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 255, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"f{i}.jpg"), img)
    return folder


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return write_const_model(tmp_path / "models")


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    return write_frames(tmp_path / "frames")
