"""The dashboard's Flask application factory."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, request

from mfgvision.dashboard import api, files, pages
from mfgvision.dashboard.context import EXTENSION_KEY, DashboardContext
from mfgvision.store.database import Database

CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'"


def create_app(db: Database, images_dir: Path, title: str = "mfgvision") -> Flask:
    """A dashboard app reading ``db`` and serving images from ``images_dir``."""
    app = Flask(__name__)
    app.extensions[EXTENSION_KEY] = DashboardContext(db, Path(images_dir).resolve(), title)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in (pages.bp, api.bp, files.bp):
        app.register_blueprint(blueprint)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    """Headers every response gets; dynamic data is never cached."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    is_cacheable = request.endpoint in ("images.image", "static")
    if not is_cacheable:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
