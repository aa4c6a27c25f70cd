"""Image file serving: only plain JPEG files directly inside the image folder, and a camera's
drift frames (its reference and latest checked frame) directly inside its drift folder."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Blueprint, Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from mfgvision.dashboard.context import dashboard_context
from mfgvision.dashboard.thumbnails import parse_width
from mfgvision.store.drift import frame_path, is_frame_name
from mfgvision.store.status import is_safe_id

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


@bp.get("/images/drift/<camera_id>/<name>")
def drift_frame(camera_id: str, name: str) -> ResponseReturnValue:
    """Serve a camera's drift reference (PNG) or its latest checked frame (JPEG).

    400 for a malformed camera id or a name the CIS does not give these frames; 404 for anything
    not servable.
    """
    if not is_safe_id(camera_id) or not is_frame_name(name) or request.args:
        abort(400)
    path = frame_path(dashboard_context().drift_dir, camera_id, name)
    if path is None:
        abort(404)
    mimetype = "image/png" if path.suffix == ".png" else "image/jpeg"
    return send_file(path, mimetype=mimetype, max_age=IMAGE_MAX_AGE_S, conditional=True)
