"""The image a drift check looks at, the statistics that describe its quality, and the reference
frame checks compare with, encoded for the drift files (``mfgvision.store.drift``).

Frames are shrunk by a whole factor (averaging pixel blocks, halving first: OpenCV's fastest path)
so the long side is close to ``ANALYSIS_SIDE``; every figure is computed on that small image, so a check costs a few
milliseconds whatever the camera's resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from mfgvision.cis.messages import iso_utc
from mfgvision.store.drift import reference_name

#: The long side of the analysis image is near this (the frame shrunk by a whole factor).
ANALYSIS_SIDE = 320
#: Below these reference values a relative change is taken against the floor instead (a black
#: frame's brightness, a grey camera's saturation): tiny numbers would make any change huge.
FLOORS = {"brightness": 10.0, "contrast": 5.0, "saturation": 20.0, "sharpness": 1e-6}
#: Sharpness is measured per tile of this grid (rows, columns) and the median taken, so a part
#: passing by (sharp edges in a few tiles) does not change it.
TILES = (6, 8)
#: JPEG quality of the checked frames kept for the dashboard.
CHECKED_QUALITY = 85


def analysis_image(image: np.ndarray, side: int = ANALYSIS_SIDE) -> np.ndarray:
    """``image`` (BGR or grey) as BGR, shrunk by the whole factor that brings its long side nearest
    to ``side`` (never enlarged)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    factor = max(1, round(max(h, w) / side))
    while factor % 2 == 0:  # halving is OpenCV's fastest path: 1/4 is two of them, not one
        h, w, factor = h // 2, w // 2, factor // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if factor == 1:
        return image
    return cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def grey(image: np.ndarray) -> np.ndarray:
    """The analysis image in grey."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@dataclass(frozen=True)
class ImageStats:
    """Quality statistics of an analysis image: ``brightness`` (mean grey), ``contrast`` (standard
    deviation of grey) and ``saturation`` (mean S of HSV), all on the 0..255 scale, and
    ``sharpness`` (see :func:`sharpness`)."""

    brightness: float
    contrast: float
    saturation: float
    sharpness: float

    def to_json(self) -> dict[str, float]:
        return {k: float(f"{v:.6g}") for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageStats:
        return cls(
            **{k: float(data[k]) for k in ("brightness", "contrast", "saturation", "sharpness")}
        )


def image_stats(image: np.ndarray) -> ImageStats:
    """The statistics of a BGR analysis image."""
    g = grey(image)
    mean, std = cv2.meanStdDev(g)
    saturation = cv2.mean(cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 1])[0]
    return ImageStats(
        brightness=float(mean[0, 0]),
        contrast=float(std[0, 0]),
        saturation=float(saturation),
        sharpness=sharpness(g),
    )


def sharpness(grey_image: np.ndarray) -> float:
    """The variance of the Laplacian (the median over the tiles of ``TILES``) relative to the
    variance of the image: edges that blur lose it, more or less light does not change it."""
    rows, cols = TILES
    lap = cv2.Laplacian(grey_image, cv2.CV_32F)
    th, tw = max(lap.shape[0] // rows, 1), max(lap.shape[1] // cols, 1)
    lap = lap[: th * rows, : tw * cols]
    # Per-tile means of the Laplacian and of its square: block averages, OpenCV's fast path.
    mean = cv2.resize(lap, (cols, rows), interpolation=cv2.INTER_AREA)
    square = cv2.resize(cv2.multiply(lap, lap), (cols, rows), interpolation=cv2.INTER_AREA)
    _, std = cv2.meanStdDev(grey_image)
    return float(np.median(square - mean * mean)) / max(float(std[0, 0]) ** 2, 1.0)


def quality_figures(reference: ImageStats, now: ImageStats) -> dict[str, float | None]:
    """Each statistic's relative change against the reference (``-0.3``: 30 % lower):
    ``brightness_change``, ``contrast_change``, ``saturation_change``, ``sharpness_change``."""
    figures: dict[str, float | None] = {}
    for name, floor in FLOORS.items():
        was, is_ = getattr(reference, name), getattr(now, name)
        figures[f"{name}_change"] = round((is_ - was) / max(was, floor), 4)
    return figures


@dataclass(frozen=True)
class Reference:
    """The frame a camera is compared with: its analysis image (BGR), its statistics, the size of
    the frame it came from and when it was taken (UTC)."""

    image: np.ndarray
    stats: ImageStats
    frame_width: int
    frame_height: int
    taken_at: datetime

    @property
    def image_name(self) -> str:
        return reference_name(self.taken_at)

    def to_json(self) -> dict[str, Any]:
        """What the reference JSON (and the dashboard's view) says of it."""
        h, w = self.image.shape[:2]
        return {
            "taken_at": iso_utc(self.taken_at),
            "frame": {"width": self.frame_width, "height": self.frame_height},
            "image": self.image_name,
            "image_size": {"width": w, "height": h},
            "stats": self.stats.to_json(),
        }

    def png(self) -> bytes:
        """The image as PNG; ValueError when it cannot be encoded."""
        ok, png = cv2.imencode(".png", self.image)
        if not ok:
            raise ValueError("the reference frame could not be encoded as PNG")
        return png.tobytes()

    @classmethod
    def from_saved(cls, about: dict[str, Any], png: bytes) -> Reference:
        """The inverse of :meth:`to_json` and :meth:`png`; ValueError, KeyError or TypeError when
        they do not make a reference."""
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{about['image']} is not an image")
        return cls(
            image=image,
            stats=ImageStats.from_json(about["stats"]),
            frame_width=int(about["frame"]["width"]),
            frame_height=int(about["frame"]["height"]),
            taken_at=datetime.fromisoformat(about["taken_at"].replace("Z", "+00:00")).astimezone(
                timezone.utc
            ),
        )


def checked_jpeg(image: np.ndarray) -> bytes:
    """The analysis image of a recorded check as JPEG; ValueError when it cannot be encoded."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, CHECKED_QUALITY])
    if not ok:
        raise ValueError("the checked frame could not be encoded as JPEG")
    return jpeg.tobytes()
