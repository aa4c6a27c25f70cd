"""HTML pages. Each page is a shell that fetches its data from the JSON API."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for
from flask.typing import ResponseReturnValue

from mfgvision.dashboard.context import dashboard_context

POLL_INTERVAL_MS = 2000

bp = Blueprint("pages", __name__)


@bp.get("/")
def overview() -> ResponseReturnValue:
    """One card per camera, refreshed in place from ``/api/overview``."""
    return render_template(
        "overview.html",
        title=dashboard_context().title,
        api_url=url_for("api.overview"),
        poll_ms=POLL_INTERVAL_MS,
    )
