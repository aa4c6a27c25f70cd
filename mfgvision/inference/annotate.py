"""Drawing detections on an image: the class's colour (see ``palette``), label and probability,
sized to the image."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from mfgvision.inference.palette import class_colour_bgr
from mfgvision.inference.types import Detection

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_detections(image_bgr: np.ndarray, detections: Iterable[Detection]) -> np.ndarray:
    """A copy of ``image_bgr`` with each detection's box and ``label NN%`` drawn on it.

    Boxes are taken in the image's pixels, so draw on the frame the detections refer to.
    """
    image = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR) if image_bgr.ndim == 2 else image_bgr.copy()
    height, width = image.shape[:2]
    thickness = max(1, round(max(width, height) / 640))
    font_scale = 0.4 + 0.2 * thickness
    text_thickness = max(1, thickness - 1)
    for det in detections:
        colour = class_colour_bgr(det.label_id)
        x1, y1 = round(det.box.x1), round(det.box.y1)
        x2, y2 = round(det.box.x2), round(det.box.y2)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)

        text = f"{det.label} {det.probability:.0%}"
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, text_thickness)
        label_h = text_h + baseline + thickness
        top = y1 - label_h if y1 - label_h >= 0 else y1  # above the box, else inside it
        left = min(max(x1, 0), max(width - text_w, 0))
        cv2.rectangle(image, (left, top), (left + text_w, top + label_h), colour, cv2.FILLED)
        luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(
            image,
            text,
            (left, top + text_h + thickness // 2),
            _FONT,
            font_scale,
            ink,
            text_thickness,
            cv2.LINE_AA,
        )
    return image
