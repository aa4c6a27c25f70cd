"""JPEG helpers: frame size from the header, decoding at reduced size, encoding."""

from __future__ import annotations

import struct

import cv2
import numpy as np

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header, or None when it is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return (width, height) if width and height else None
        i += 2 + length
    return None


def reduction_for(width: int, height: int, model_side: int) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) that keeps the long side at least ``model_side``."""
    factor = 1
    for candidate in (2, 4, 8):
        if max(width, height) / candidate >= model_side:
            factor = candidate
    return factor


def decode(data: bytes, reduction: int = 1) -> np.ndarray | None:
    """Decode JPEG (or any OpenCV-readable) bytes to BGR, optionally at 1/2, 1/4 or 1/8 size."""
    buf = np.frombuffer(data, dtype=np.uint8)
    return cv2.imdecode(buf, _REDUCED.get(reduction, cv2.IMREAD_COLOR))


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode a BGR or greyscale image as JPEG bytes."""
    if not 0 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 0..100, got {quality}")
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buffer.tobytes()
