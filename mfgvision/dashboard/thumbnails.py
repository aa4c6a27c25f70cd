"""Thumbnails of stored images: JPEGs decoded at reduced size, resized and kept in a small cache."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from mfgvision.capture.jpeg import decode, jpeg_size

THUMBNAIL_WIDTHS = (160, 320, 640)
THUMBNAIL_QUALITY = 80
THUMBNAIL_CACHE_BYTES = 48 * 1024 * 1024
_WIDTH = re.compile(r"[1-9][0-9]{1,3}")


class ThumbnailCache:
    """Resized JPEGs by (file, its mtime and size, width), least recently used evicted first."""

    def __init__(self, max_bytes: int = THUMBNAIL_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path, width: int) -> bytes | None:
        """The thumbnail of ``path`` at most ``width`` wide; None when the file does not decode."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, width)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                return data
        data = make_thumbnail(path.read_bytes(), width)
        if data is None:
            return None
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return data


def make_thumbnail(jpeg: bytes, width: int, quality: int = THUMBNAIL_QUALITY) -> bytes | None:
    """``jpeg`` scaled down to ``width`` pixels wide (aspect kept) and encoded at ``quality``;
    unchanged when not wider."""
    size = jpeg_size(jpeg)
    if size is None:
        return None
    if size[0] <= width:
        return jpeg
    image = decode_to_width(jpeg, width)
    return None if image is None else encode(image, quality)


def decode_to_width(jpeg: bytes, width: int) -> np.ndarray | None:
    """``jpeg`` decoded at most ``width`` pixels wide (aspect kept): decoded at 1/2, 1/4 or 1/8
    size where that is still as wide, then resized; None when it does not decode."""
    size = jpeg_size(jpeg)
    if size is None:
        return None
    reduction = 1
    for factor in (2, 4, 8):
        if size[0] / factor >= width:
            reduction = factor
    image = decode(jpeg, reduction)
    if image is None:
        return None
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(
            image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA
        )
    return image


def encode(image: np.ndarray, quality: int) -> bytes | None:
    """``image`` as a JPEG of ``quality``; None when it does not encode."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buffer.tobytes() if ok else None


def parse_width(value: str) -> int | None:
    """A thumbnail width from ``THUMBNAIL_WIDTHS`` written plainly (no sign, space or zeros)."""
    if _WIDTH.fullmatch(value) is None:
        return None
    width = int(value)
    return width if width in THUMBNAIL_WIDTHS else None
