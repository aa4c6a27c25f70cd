"""Letterbox / stretch placement and the mapping of boxes back to the frame; NMS."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mfgvision.inference.letterbox import letterbox, stretch
from mfgvision.inference.nms import nms


def random_cases(count: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        frame_w, frame_h = (int(v) for v in rng.integers(40, 2000, 2))
        input_w, input_h = (int(v) for v in rng.choice([224, 320, 416, 640, 800], 2))
        x1, x2 = sorted(int(v) for v in rng.choice(frame_w, 2, replace=False))
        y1, y2 = sorted(int(v) for v in rng.choice(frame_h, 2, replace=False))
        yield (frame_w, frame_h), (input_w, input_h), (x1, y1, x2, y2)


@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
@pytest.mark.parametrize(("frame_size", "input_size", "rect"), list(random_cases(40)))
def test_box_found_in_the_input_maps_back_onto_the_frame_box(
    fit: str, frame_size: tuple[int, int], input_size: tuple[int, int], rect: tuple
) -> None:
    """Round trip through real pixels: paint a box, fit the frame, find the box, map it back."""
    frame_w, frame_h = frame_size
    x1, y1, x2, y2 = rect
    frame = np.zeros((frame_h, frame_w, 3), np.uint8)
    frame[y1:y2, x1:x2] = 255

    if fit == "letterbox":
        fitted, transform = letterbox(frame, input_size, (114, 114, 114))
    else:
        fitted, transform = stretch(frame, input_size)

    assert fitted.shape == (input_size[1], input_size[0], 3)
    mask = (fitted[..., 0] > 114 + 70).astype(np.uint8)
    if not mask.any():  # the box shrank below one input pixel
        return
    bx, by, bw, bh = cv2.boundingRect(mask)
    (back,) = transform.to_frame(np.array([[bx, by, bx + bw, by + bh]], np.float32))
    # One input pixel of resampling blur on each side, in frame pixels.
    tol_x, tol_y = 1.5 / transform.scale_x + 1, 1.5 / transform.scale_y + 1
    assert abs(back[0] - x1) <= tol_x and abs(back[2] - x2) <= tol_x
    assert abs(back[1] - y1) <= tol_y and abs(back[3] - y2) <= tol_y


@pytest.mark.parametrize(
    ("frame_size", "input_size"), [case[:2] for case in random_cases(40, seed=11)]
)
def test_letterbox_keeps_aspect_and_centres(
    frame_size: tuple[int, int], input_size: tuple[int, int]
) -> None:
    frame_w, frame_h = frame_size
    input_w, input_h = input_size
    _, t = letterbox(np.zeros((frame_h, frame_w, 3), np.uint8), input_size, (0, 0, 0))
    assert t.scale_x == pytest.approx(t.scale_y, rel=0.02 + 1 / min(frame_w, frame_h))
    used_w, used_h = round(frame_w * t.scale_x), round(frame_h * t.scale_y)
    assert min(input_w - used_w, input_h - used_h) == 0  # fills one side
    assert abs(2 * t.pad_x - (input_w - used_w)) <= 1 and abs(2 * t.pad_y - (input_h - used_h)) <= 1


def test_to_frame_clips_to_the_frame() -> None:
    _, t = letterbox(np.zeros((720, 1280, 3), np.uint8), (640, 640), (114, 114, 114))
    (box,) = t.to_frame(np.array([[-50, 0, 700, 700]], np.float32))
    assert box.tolist() == [0, 0, 1280, 720]


def test_nms_is_per_class_and_capped() -> None:
    boxes = np.array(
        [[0, 0, 100, 100], [5, 5, 105, 105], [0, 0, 100, 100], [200, 200, 300, 300]], np.float32
    )
    scores = np.array([0.6, 0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 1, 0])

    assert nms(boxes, scores, classes, iou_threshold=0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, classes, iou_threshold=0.95).tolist() == [1, 2, 3, 0]
    assert nms(boxes, scores, classes, iou_threshold=0.5, max_detections=2).tolist() == [1, 2]
    assert nms(boxes[:0], scores[:0], classes[:0], iou_threshold=0.5).tolist() == []
