"""Has the camera moved? The frame is aligned with the reference frame by matching ORB features and
fitting a rotation + uniform scale + shift with RANSAC (``cv2.estimateAffinePartial2D``).

Parts passing by do not match the reference and are left out by RANSAC; what is left is the fixed
scene (conveyor, fixtures, background). The figures are the shift of the image centre in frame
pixels, the rotation in degrees (positive: the image turned clockwise) and the scale change
(``0.05``: 5 % larger, e.g. refocused or zoomed). A frame that no longer matches the reference at
all (the camera looks elsewhere, the lens is covered) has no figures: it counts as moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: ORB on a ~320 px image: a low FAST threshold and small patches find enough corners on a plain
#: scene (a belt, a few parts); 200 features on a 4-level pyramid keep it near a millisecond.
_ORB = {
    "nfeatures": 200,
    "nlevels": 4,
    "fastThreshold": 10,
    "edgeThreshold": 19,
    "patchSize": 19,
}
#: Lowe's ratio test: a match counts only when clearly better than the second best.
RATIO = 0.8
#: RANSAC's tolerance, in analysis-image pixels.
REPROJECTION_PX = 2.0
#: Fewer features than this in the reference: the camera check cannot work on this scene.
MIN_FEATURES = 30
#: Fewer matches agreeing on one motion than this: the frame does not match the reference.
MIN_INLIERS = 12


@dataclass(frozen=True)
class Alignment:
    """Where the frame is against the reference: ``shift_px`` (frame pixels), ``rotation_deg``,
    ``scale_change`` (relative), and how many feature matches agree (``inliers``)."""

    shift_px: float
    rotation_deg: float
    scale_change: float
    inliers: int


class ReferenceFeatures:
    """The reference frame's ORB features, computed once; aligns frames with it."""

    def __init__(self, grey_reference: np.ndarray) -> None:
        self._orb = cv2.ORB_create(**_ORB)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.shape = grey_reference.shape
        self._points, self._descriptors = self._orb.detectAndCompute(grey_reference, None)

    @property
    def count(self) -> int:
        """How many features the reference has."""
        return len(self._points)

    @property
    def usable(self) -> bool:
        """Enough features to align frames with."""
        return self.count >= MIN_FEATURES and self._descriptors is not None

    def align(self, grey_frame: np.ndarray, frame_width: int) -> Alignment | None:
        """The frame's motion against the reference; None when it does not match the reference.

        ``grey_frame`` is the analysis image of a frame ``frame_width`` pixels wide, the same size
        as the reference's.
        """
        points, descriptors = self._orb.detectAndCompute(grey_frame, None)
        if descriptors is None or len(points) < MIN_INLIERS or self._descriptors is None:
            return None
        pairs = self._matcher.knnMatch(self._descriptors, descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        if len(good) < MIN_INLIERS:
            return None
        src = np.float32([self._points[m.queryIdx].pt for m in good])
        dst = np.float32([points[m.trainIdx].pt for m in good])
        matrix, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PX
        )
        if matrix is None or inliers is None or int(inliers.sum()) < MIN_INLIERS:
            return None
        h, w = grey_frame.shape
        centre = np.array([w / 2.0, h / 2.0, 1.0])
        dx, dy = matrix @ centre - centre[:2]
        return Alignment(
            shift_px=round(math.hypot(dx, dy) * frame_width / w, 2),
            rotation_deg=round(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])), 3),
            scale_change=round(math.hypot(matrix[0, 0], matrix[1, 0]) - 1.0, 4),
            inliers=int(inliers.sum()),
        )


def camera_figures(alignment: Alignment | None) -> dict[str, float | None]:
    """The camera figures of an alignment; all None when the frame does not match the reference."""
    if alignment is None:
        return {"shift_px": None, "rotation_deg": None, "scale_change": None}
    return {
        "shift_px": alignment.shift_px,
        "rotation_deg": alignment.rotation_deg,
        "scale_change": alignment.scale_change,
    }
