"""Image file serving: only plain JPEG files directly inside the image folder."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
from flask import Blueprint, Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from mfgvision.capture.jpeg import decode, jpeg_size
from mfgvision.dashboard.context import dashboard_context

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg"})
IMAGE_MAX_AGE_S = 24 * 3600
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")

bp = Blueprint("images", __name__)


def is_safe_name(name: str) -> bool:
    """A bare file name: no folder part, no ``..``, no hidden file, nothing exotic, <= 255 chars."""
    return _SAFE_NAME.fullmatch(name) is not None and ".." not in name


def resolve_image(images_dir: Path, name: str) -> Path | None:
    """The real path of image ``name`` if it is a regular JPEG file inside ``images_dir``.

    ``images_dir`` must already be resolved. Symbolic links are followed, and refused when their
    target is not directly inside ``images_dir``.
    """
    if not is_safe_name(name) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        real = (images_dir / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != images_dir or real.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return real if real.is_file() else None


@bp.get("/images/<name>")
def image(name: str) -> ResponseReturnValue:
    """Serve one stored image, or its thumbnail with ``?size=<width>``.

    400 for a malformed name, an unknown parameter or a width not in ``THUMBNAIL_WIDTHS``; 404 for
    anything not servable.
    """
    if not is_safe_name(name):
        abort(400)
    args = request.args
    if set(args) - {"size"} or any(len(args.getlist(k)) > 1 for k in args):
        abort(400)
    width = None
    if "size" in args:
        width = parse_width(args["size"])
        if width is None:
            abort(400)
    context = dashboard_context()
    path = resolve_image(context.images_dir, name)
    if path is None:
        abort(404)
    if width is None:
        return send_file(path, mimetype="image/jpeg", max_age=IMAGE_MAX_AGE_S, conditional=True)
    try:
        data = context.thumbnails.get(path, width)
    except OSError:
        abort(404)
    if data is None:
        abort(404)
    response = Response(data, mimetype="image/jpeg")
    response.set_etag(hashlib.sha1(data, usedforsecurity=False).hexdigest())
    response.cache_control.public = True
    response.cache_control.max_age = IMAGE_MAX_AGE_S
    return response.make_conditional(request)


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


def make_thumbnail(jpeg: bytes, width: int) -> bytes | None:
    """``jpeg`` scaled down to ``width`` pixels wide (aspect kept); unchanged when not wider."""
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
    elif reduction == 1:
        return jpeg
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
    return buffer.tobytes() if ok else None


def parse_width(value: str) -> int | None:
    """A thumbnail width from ``THUMBNAIL_WIDTHS`` written plainly (no sign, space or zeros)."""
    if _WIDTH.fullmatch(value) is None:
        return None
    width = int(value)
    return width if width in THUMBNAIL_WIDTHS else None
