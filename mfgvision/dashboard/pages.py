"""HTML pages. Each page is a shell that fetches its data from the JSON API and updates in place."""

from __future__ import annotations

import json
import re

from flask import Blueprint, abort, render_template, url_for
from flask.typing import ResponseReturnValue

from mfgvision.dashboard.context import dashboard_context
from mfgvision.dashboard.stats import WINDOW_LABELS
from mfgvision.inference.palette import CLASS_COLOURS
from mfgvision.store.status import is_safe_id

POLL_INTERVAL_MS = 2000
STATS_INTERVAL_MS = 15000
HISTORY_INTERVAL_MS = 5000
HEALTH_INTERVAL_MS = 10000
_UNIQUE_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")

bp = Blueprint("pages", __name__)


def _page(template: str, **values: object) -> str:
    return render_template(
        template,
        title=dashboard_context().title,
        windows=WINDOW_LABELS,
        plotly_url=url_for("vendor.plotly_js"),
        class_colours=json.dumps(CLASS_COLOURS),
        label_colours_url=url_for("api.label_colours"),
        **values,
    )


@bp.get("/")
def overview() -> ResponseReturnValue:
    """One card per camera and the window's statistics, refreshed in place from the API; with
    the live view on, each card has a Live toggle."""
    return _page(
        "overview.html",
        active="overview",
        api_url=url_for("api.overview"),
        stats_url=url_for("api.stats"),
        live_base=url_for("api.cameras") if dashboard_context().live.config.enabled else "",
        poll_ms=POLL_INTERVAL_MS,
        stats_ms=STATS_INTERVAL_MS,
    )


@bp.get("/history")
def history() -> ResponseReturnValue:
    """Stored inferences, filtered and paged; the first page follows new data."""
    return _page(
        "history.html",
        active="history",
        api_url=url_for("api.inferences"),
        cameras_url=url_for("api.cameras"),
        labels_url=url_for("api.labels"),
        rules_url=url_for("api.rules"),
        poll_ms=HISTORY_INTERVAL_MS,
    )


@bp.get("/inferences/<unique_id>")
def detail(unique_id: str) -> ResponseReturnValue:
    """One inference: the full image with its boxes, the detections and the raw JSON."""
    if _UNIQUE_ID.fullmatch(unique_id) is None:
        abort(400)
    return _page(
        "detail.html",
        active="history",
        api_url=url_for("api.inference", unique_id=unique_id),
        history_url=url_for("pages.history"),
    )


@bp.get("/cameras/<camera_id>")
def camera(camera_id: str) -> ResponseReturnValue:
    """One camera's health: its drift figures over the window, the reference frame beside the
    latest checked one, and the drift alerts."""
    if not is_safe_id(camera_id):
        abort(400)
    return _page(
        "camera.html",
        active="overview",
        camera_id=camera_id,
        api_url=url_for("api.drift", camera_id=camera_id),
        overview_url=url_for("pages.overview"),
        poll_ms=HEALTH_INTERVAL_MS,
    )
