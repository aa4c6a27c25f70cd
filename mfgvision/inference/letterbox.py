"""Fitting a frame into the model input, and mapping boxes back to frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Transform:
    """Where a frame landed in the model input: ``input = frame * scale + pad`` per axis."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    frame_width: int
    frame_height: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` x1, y1, x2, y2 boxes from input to frame pixels, clipped to the frame."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        x = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        y = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        out = np.empty_like(boxes)
        out[:, 0::2] = np.clip(x, 0, self.frame_width)
        out[:, 1::2] = np.clip(y, 0, self.frame_height)
        return out


def letterbox(
    image: np.ndarray, size: tuple[int, int], colour: Colour
) -> tuple[np.ndarray, Transform]:
    """Fit ``image`` into ``size`` (width, height), keeping its aspect, centred on ``colour``."""
    width, height = size
    frame_h, frame_w = image.shape[:2]
    ratio = min(width / frame_w, height / frame_h)
    new_w = min(width, max(1, round(frame_w * ratio)))
    new_h = min(height, max(1, round(frame_h * ratio)))
    if (new_w, new_h) != (frame_w, frame_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left = (width - new_w) // 2
    top = (height - new_h) // 2
    if (new_w, new_h) != (width, height):
        image = cv2.copyMakeBorder(
            image,
            top,
            height - new_h - top,
            left,
            width - new_w - left,
            cv2.BORDER_CONSTANT,
            value=colour,
        )
    return image, Transform(new_w / frame_w, new_h / frame_h, left, top, frame_w, frame_h)


def stretch(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """Resize ``image`` to exactly ``size`` (width, height), ignoring its aspect."""
    width, height = size
    frame_h, frame_w = image.shape[:2]
    if (frame_w, frame_h) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image, Transform(width / frame_w, height / frame_h, 0, 0, frame_w, frame_h)
