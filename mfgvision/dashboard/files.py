"""Image file serving: only plain JPEG files directly inside the image folder."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, abort, send_file
from flask.typing import ResponseReturnValue

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
    """Serve one stored image; 400 for a malformed name, 404 for anything not servable."""
    if not is_safe_name(name):
        abort(400)
    path = resolve_image(dashboard_context().images_dir, name)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/jpeg", max_age=IMAGE_MAX_AGE_S, conditional=True)
