"""JSON endpoints: the overview data the page polls, the camera list and the health check."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from flask import Blueprint, jsonify, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from mfgvision.dashboard.context import dashboard_context
from mfgvision.dashboard.files import resolve_image
from mfgvision.dashboard.overview import build_overview, iso_utc
from mfgvision.store.records import InferenceRecord

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__)


def image_url(record: InferenceRecord) -> tuple[str | None, str | None]:
    """URL and kind of the record's annotated image, else its raw image, when the file exists."""
    images_dir = dashboard_context().images_dir
    for name, kind in (
        (record.annotated_image_name, "annotated"),
        (record.raw_image_name, "raw"),
    ):
        if name and resolve_image(images_dir, name) is not None:
            return url_for("images.image", name=name), kind
    return None, None


@bp.get("/api/overview")
def overview() -> ResponseReturnValue:
    """Latest inference per camera with totals for the last hour and all data."""
    now = datetime.now(timezone.utc)
    return jsonify(build_overview(dashboard_context().db, now, image_url))


@bp.get("/api/cameras")
def cameras() -> ResponseReturnValue:
    """Cameras that have stored data, with when each was last seen."""
    return jsonify(
        [
            {
                "camera_id": c.camera_id,
                "camera_name": c.camera_name,
                "last_seen": iso_utc(c.last_seen),
            }
            for c in dashboard_context().db.cameras()
        ]
    )


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when the database answers, 503 when it does not."""
    try:
        dashboard_context().db.ping()
    except SQLAlchemyError as exc:
        logger.warning("health check: database unavailable", extra={"error": type(exc).__name__})
        return jsonify(status="error", db="unavailable"), 503
    return jsonify(status="ok", db="ok")


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Database failures in the API become 503 with a short JSON body (details go to the log)."""
    logger.warning("database query failed", extra={"error": type(exc).__name__}, exc_info=exc)
    return jsonify(error="database unavailable"), 503
