"""InferenceResult.scaled and annotation drawing."""

from __future__ import annotations

import numpy as np
import pytest

from mfgvision.inference.annotate import draw_detections
from mfgvision.inference.palette import CLASS_COLOURS, class_colour_bgr, class_colour_hex
from mfgvision.inference.types import Box, Detection, InferenceResult


def detection(label_id: int, box: tuple[float, float, float, float], width: int, height: int):
    b = Box(*box)
    return Detection(label_id, f"class{label_id}", 0.876, b, b.normalised(width, height))


def test_scaled_multiplies_boxes_and_renormalises() -> None:
    result = InferenceResult(
        [detection(0, (10, 20, 110, 220), 480, 270), detection(1, (400, 200, 480, 270), 480, 270)],
        480,
        270,
        {"infer": 5.0},
    )

    # a 1918x1078 frame decoded at a quarter of its size gives 480x270 (sizes round up)
    full = result.scaled(4.0, 1918, 1078)

    assert (full.frame_width, full.frame_height) == (1918, 1078)
    first, second = full.detections
    assert first.box.as_list() == [40, 80, 440, 880]
    assert first.box_norm.as_list() == pytest.approx([40 / 1918, 80 / 1078, 440 / 1918, 880 / 1078])
    assert second.box.as_list() == [1600, 800, 1918, 1078]
    assert second.box_norm.as_list() == pytest.approx([1600 / 1918, 800 / 1078, 1, 1])
    assert [d.label for d in full.detections] == ["class0", "class1"]
    assert full.timings_ms == {"infer": 5.0}
    assert result.detections[0].box.as_list() == [10, 20, 110, 220]  # original untouched


def test_scaled_clips_rounding_overshoot() -> None:
    result = InferenceResult([detection(0, (0, 0, 481, 271), 481, 271)], 481, 271)
    (det,) = result.scaled(2.0, 960, 540).detections
    assert det.box.as_list() == [0, 0, 960, 540]
    with pytest.raises(ValueError):
        result.scaled(0, 960, 540)


def test_draw_detections_draws_on_a_copy() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    dets = [
        detection(0, (100, 100, 400, 300), 1280, 720),
        detection(3, (0, 0, 1280, 720), 1280, 720),
    ]

    drawn = draw_detections(image, dets)

    assert not image.any()
    assert drawn.shape == image.shape
    # box outline in the class colour, interior untouched
    assert tuple(int(v) for v in drawn[200, 100]) == class_colour_bgr(0)
    assert not drawn[200, 250].any()
    # label background above the first box
    assert tuple(int(v) for v in drawn[95, 102]) == class_colour_bgr(0)
    # the whole-frame box gets its label inside the frame
    assert drawn[5:30, 0:80].any()


def test_a_class_keeps_its_colour_and_the_first_eight_differ() -> None:
    assert len({class_colour_bgr(i) for i in range(8)}) == 8
    assert class_colour_bgr(9) == class_colour_bgr(1)
    assert class_colour_hex(0) == CLASS_COLOURS[0] == "#E69F00"
    assert class_colour_bgr(0) == (0x00, 0x9F, 0xE6)
