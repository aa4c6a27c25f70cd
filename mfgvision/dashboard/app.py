"""The dashboard's Flask application factory."""

from __future__ import annotations

import gzip
import threading
from importlib.resources import files as package_files
from pathlib import Path

import plotly
from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from mfgvision.dashboard import api, files, pages
from mfgvision.dashboard.context import EXTENSION_KEY, DashboardContext
from mfgvision.dashboard.live import LiveConfig, LiveView
from mfgvision.dashboard.stats import Rollup
from mfgvision.dashboard.thumbnails import ThumbnailCache
from mfgvision.store.database import Database
from mfgvision.store.drift import DRIFT_FOLDER
from mfgvision.store.live import LIVE_FOLDER
from mfgvision.store.status import STATUS_FOLDER
from mfgvision.web.auth import AuthConfig, install_auth
from mfgvision.web.headers import install_security_headers

# Plotly sets inline styles on the elements it draws, hence 'unsafe-inline' for styles (not scripts).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
VENDOR_MAX_AGE_S = 7 * 24 * 3600
CACHEABLE_ENDPOINTS = frozenset(
    {"images.image", "images.drift_frame", "static", "vendor.plotly_js"}
)

vendor = Blueprint("vendor", __name__)
_plotly_lock = threading.Lock()
_plotly_js: dict[str, bytes] = {}


def _plotly_bytes(encoding: str) -> bytes:
    """plotly.js as bundled with the installed ``plotly`` package, plain or gzip-compressed."""
    with _plotly_lock:
        if "identity" not in _plotly_js:
            path = package_files("plotly") / "package_data" / "plotly.min.js"
            _plotly_js["identity"] = path.read_bytes()
            _plotly_js["gzip"] = gzip.compress(_plotly_js["identity"], compresslevel=6, mtime=0)
        return _plotly_js[encoding]


@vendor.get("/vendor/plotly.min.js")
def plotly_js() -> ResponseReturnValue:
    """The charting library, served from the installed package (no CDN)."""
    encoding = "gzip" if "gzip" in request.headers.get("Accept-Encoding", "") else "identity"
    response = Response(_plotly_bytes(encoding), mimetype="text/javascript")
    if encoding == "gzip":
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.set_etag(f"plotly-{plotly.__version__}-{encoding}")
    response.cache_control.public = True
    response.cache_control.max_age = VENDOR_MAX_AGE_S
    return response.make_conditional(request)


def create_app(
    db: Database,
    images_dir: Path,
    title: str = "mfgvision",
    status_dir: Path | None = None,
    auth: AuthConfig | None = None,
    rollup: Rollup | None = None,
    live: LiveConfig | None = None,
) -> Flask:
    """A dashboard app reading ``db``, serving images from ``images_dir``, camera status from
    ``status_dir`` (default: ``status/`` beside the image folder), and live frames and drift
    checks from ``live/`` and ``drift/`` beside the image folder.

    ``auth`` and ``live`` default to the environment (:class:`AuthConfig`, :class:`LiveConfig`);
    login is off when it is empty, the live view unless it is turned on.
    """
    images_dir = Path(images_dir).resolve()
    live_view = LiveView(
        live if live is not None else LiveConfig.from_env(), images_dir.parent / LIVE_FOLDER
    )
    app = Flask(__name__)
    app.config["MFGVISION_TITLE"] = title
    app.extensions[EXTENSION_KEY] = DashboardContext(
        db=db,
        images_dir=images_dir,
        title=title,
        status_dir=Path(status_dir or images_dir.parent / STATUS_FOLDER).resolve(),
        drift_dir=(images_dir.parent / DRIFT_FOLDER).resolve(),
        rollup=rollup or Rollup(db.engine),
        thumbnails=ThumbnailCache(),
        live=live_view,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in (pages.bp, api.bp, files.bp, vendor):
        app.register_blueprint(blueprint)
    install_auth(
        app,
        auth if auth is not None else AuthConfig.from_env(),
        cookie_name="mfgvision_dashboard",
        public_endpoints={"api.healthz"},
        token_prefixes=("/api/", "/images/"),
    )
    app.register_error_handler(404, _not_found)
    app.register_error_handler(405, _not_found)
    install_security_headers(app, CONTENT_SECURITY_POLICY, CACHEABLE_ENDPOINTS)
    return app


def _not_found(exc: HTTPException) -> ResponseReturnValue:
    """JSON errors under ``/api/``; the default pages elsewhere."""
    if request.path.startswith("/api/"):
        return jsonify(error=exc.description or exc.name), exc.code or 404
    return exc
