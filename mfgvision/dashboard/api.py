"""The JSON API (documented in docs/dashboard-api.md) and the health check.

Every parameter is checked strictly: an unknown or repeated parameter, or a value out of its
format, is a 400 with a JSON ``error`` that says what is wrong.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from flask import Blueprint, Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from mfgvision.dashboard.context import dashboard_context
from mfgvision.dashboard.drift import drift_summary, panel_json
from mfgvision.dashboard.files import resolve_image
from mfgvision.dashboard.live import ENV_VARS, MIMETYPE
from mfgvision.dashboard.overview import build_overview, record_json, zones_json
from mfgvision.dashboard.stats import WindowError, iso, parse_time, parse_window, stats_json
from mfgvision.inference.palette import class_colour_hex
from mfgvision.settings import RULE_NAME
from mfgvision.store import queries
from mfgvision.store.drift import frame_path, read_history, read_view
from mfgvision.store.feedback import FeedbackError, feedback_for, parse_feedback, save_feedback
from mfgvision.store.records import InferenceRecord, verdict_rule
from mfgvision.store.status import is_safe_id, read_status, read_statuses, status_path
from mfgvision.web.auth import current_user

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

DEFAULT_PAGE_SIZE = 50
LIVE_RETRY_AFTER_S = 10
THUMBNAIL_WIDTH = 160
_CAMERA = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_UNIQUE_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_RULE = re.compile(RULE_NAME)


class BadRequest(ValueError):
    """A request parameter that cannot be used; the message is shown to the client."""


def _args(*allowed: str) -> dict[str, str]:
    """The query parameters, refusing unknown, repeated and empty ones."""
    args = request.args
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown parameter(s) {unknown}; allowed: {sorted(allowed)}")
    out = {}
    for key in args:
        values = args.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"'{key}' given more than once")
        if values[0] == "":
            raise BadRequest(f"'{key}' is empty")
        out[key] = values[0]
    return out


def _match(pattern: re.Pattern[str], value: str, name: str) -> str:
    if pattern.fullmatch(value) is None:
        raise BadRequest(f"'{name}' is malformed")
    return value


def image_urls(record: InferenceRecord) -> dict[str, str | None]:
    """URLs of the record's images that exist in the image folder, and a thumbnail URL."""
    images_dir = dashboard_context().images_dir
    urls: dict[str, str | None] = {}
    names = {"annotated": record.annotated_image_name, "raw": record.raw_image_name}
    if not names["raw"]:  # the copy kept for retraining is the same frame
        names["raw"] = record.retrain_image_name
    for kind, name in names.items():
        ok = bool(name) and resolve_image(images_dir, str(name)) is not None
        urls[kind] = url_for("images.image", name=name) if ok else None
    best = names["annotated"] if urls["annotated"] else names["raw"]
    urls["thumbnail"] = (
        url_for("images.image", name=best, size=THUMBNAIL_WIDTH)
        if urls["annotated"] or urls["raw"]
        else None
    )
    return urls


@bp.get("/api/overview")
def overview() -> ResponseReturnValue:
    """Per camera: the latest inference, module status and counts over the window."""
    args = _args("window", "from", "to")
    now = datetime.now(timezone.utc)
    window = parse_window(args.get("window"), args.get("from"), args.get("to"), now)
    context = dashboard_context()
    latest = queries.latest_per_camera(context.db.engine)
    statuses = read_statuses(context.status_dir, now)
    stats = context.rollup.stats(window, labels=False)
    payload = build_overview(now, latest, statuses, stats, image_urls)
    for camera in payload["cameras"]:
        if camera["latest"] is not None:
            uid = camera["latest"]["unique_id"]
            camera["latest"]["detail_url"] = url_for("pages.detail", unique_id=uid)
        cam = camera["camera_id"]
        safe = is_safe_id(cam)
        camera["health_url"] = url_for("pages.camera", camera_id=cam) if safe else None
        camera["drift"] = drift_summary(read_view(context.drift_dir, cam)) if safe else None
    return jsonify(payload)


@bp.get("/api/stats")
def stats() -> ResponseReturnValue:
    """OK/NG counts and yield, defects per class and time bucket, inference time over time."""
    args = _args("window", "from", "to", "camera")
    now = datetime.now(timezone.utc)
    window = parse_window(args.get("window"), args.get("from"), args.get("to"), now)
    camera = _match(_CAMERA, args["camera"], "camera") if "camera" in args else None
    result = dashboard_context().rollup.stats(window, camera)
    return jsonify({"generated_at": iso(now), **stats_json(result)})


@bp.get("/api/inferences")
def inferences() -> ResponseReturnValue:
    """History: stored inferences, newest first, filtered, one page at a time."""
    args = _args("camera", "label", "verdict", "rule", "from", "to", "limit", "cursor")
    verdict = args.get("verdict")
    if verdict is not None and verdict not in ("OK", "NG"):
        raise BadRequest("'verdict' must be OK or NG")
    rule = args.get("rule")
    if rule is not None and rule != queries.ANY_RULE and _RULE.fullmatch(rule) is None:
        raise BadRequest(f"'rule' must be a rule's name or {queries.ANY_RULE} (any rule)")
    start = parse_time(args["from"], "from") if "from" in args else None
    end = parse_time(args["to"], "to") if "to" in args else None
    if start and end and end <= start:
        raise BadRequest("'to' must be after 'from'")
    flt = queries.HistoryFilter(
        camera_id=_match(_CAMERA, args["camera"], "camera") if "camera" in args else None,
        label=_match(_LABEL, args["label"], "label") if "label" in args else None,
        verdict=verdict,
        start=start,
        end=end,
        rule=rule,
    )
    limit = DEFAULT_PAGE_SIZE
    if "limit" in args:
        limit = int(_match(_LIMIT, args["limit"], "limit"))
        if limit > queries.MAX_PAGE_SIZE:
            raise BadRequest(f"'limit' is at most {queries.MAX_PAGE_SIZE}")
    cursor = args.get("cursor")
    if cursor is not None:
        try:
            queries.decode_cursor(cursor)
        except ValueError as exc:
            raise BadRequest(f"'cursor': {exc}") from None
    page = queries.history(dashboard_context().db.engine, flt, limit, cursor)
    items = []
    for record in page.records:
        item = record_json(record, image_urls(record))
        item["detail_url"] = url_for("pages.detail", unique_id=record.unique_id)
        items.append(item)
    return jsonify(
        {
            "items": items,
            "next_cursor": page.next_cursor,
            "total": page.total,
            "total_capped": page.total_capped,
        }
    )


@bp.get("/api/inferences/<unique_id>")
def inference(unique_id: str) -> ResponseReturnValue:
    """One stored inference with its detections, image URLs and the verdict rule it was made by,
    and the camera's zones as its settings in force have them."""
    _args()
    _match(_UNIQUE_ID, unique_id, "unique_id")
    context = dashboard_context()
    record = queries.inference(context.db.engine, unique_id)
    if record is None:
        return jsonify(error="no such inference"), 404
    item = record_json(record, image_urls(record))
    item["verdict_rule"] = verdict_rule(record.prob_threshold, record.fired_rules)
    item["zones"] = zones_json(read_status(context.status_dir, record.camera_id))
    item["detail_url"] = url_for("pages.detail", unique_id=record.unique_id)
    item["retrain_reason"] = record.retrain_reason
    stored = feedback_for(context.db.engine, [unique_id]).get(unique_id)
    item["feedback"] = None if stored is None else stored.to_json()
    item["feedback_url"] = url_for("api.post_feedback", unique_id=record.unique_id)
    return jsonify(item)


@bp.post("/api/inferences/<unique_id>/feedback")
def post_feedback(unique_id: str) -> ResponseReturnValue:
    """Store an operator's word on one inspection (``{"judgement", "boxes"?, "note"?}``, JSON);
    it replaces any earlier one, and the frame joins the retraining set."""
    _args()
    _match(_UNIQUE_ID, unique_id, "unique_id")
    if not request.is_json:
        raise BadRequest("the body must be JSON (Content-Type: application/json)")
    try:
        feedback = parse_feedback(unique_id, request.get_json(silent=True), current_user())
        stored = save_feedback(dashboard_context().db.engine, feedback)
    except FeedbackError as exc:
        raise BadRequest(str(exc)) from None
    except LookupError:
        return jsonify(error="no such inference"), 404
    logger.info(
        "operator feedback stored",
        extra={"unique_id": unique_id, "judgement": stored.judgement, "operator": stored.operator},
    )
    return jsonify(stored.to_json())


@bp.get("/api/cameras")
def cameras() -> ResponseReturnValue:
    """Camera ids with stored data or a status file, with their status."""
    _args()
    context = dashboard_context()
    statuses = read_statuses(context.status_dir)
    ids = sorted(set(queries.camera_ids(context.db.engine)) | set(statuses))
    return jsonify(
        [
            {
                "camera_id": cam,
                "status": statuses[cam].to_json() if cam in statuses else None,
            }
            for cam in ids
        ]
    )


@bp.get("/api/cameras/<camera_id>/drift")
def drift(camera_id: str) -> ResponseReturnValue:
    """The camera health panel: the camera's drift reference and latest checked frame, figures
    with their limits, raised alerts, and the figures and alert changes over the window."""
    args = _args("window", "from", "to")
    now = datetime.now(timezone.utc)
    window = parse_window(args.get("window"), args.get("from"), args.get("to"), now)
    if not is_safe_id(camera_id):
        raise BadRequest("'camera_id' is malformed")
    context = dashboard_context()
    view = read_view(context.drift_dir, camera_id)
    status = read_statuses(context.status_dir, now).get(camera_id)
    if view is None and status is None and camera_id not in queries.camera_ids(context.db.engine):
        return jsonify(error="no such camera"), 404

    def frame_url(name: str) -> str | None:
        if frame_path(context.drift_dir, camera_id, name) is None:
            return None
        return url_for("images.drift_frame", camera_id=camera_id, name=name)

    points = read_history(context.drift_dir, camera_id)
    module_id = status.module_id if status else None
    return jsonify(panel_json(camera_id, module_id, view, points, window, frame_url, now))


@bp.get("/api/cameras/<camera_id>/live.mjpeg")
def live(camera_id: str) -> ResponseReturnValue:
    """The camera's annotated frames as an MJPEG stream, at most ``max_fps`` and ``max_width``.

    404 when the live view is off or the camera is unknown; 503 when every viewer slot is taken.
    """
    _args()
    context = dashboard_context()
    view = context.live
    if not view.config.enabled:
        return jsonify(
            error=f"the live view is off on this dashboard; set {ENV_VARS['enabled']}=on to turn it on"
        ), 404
    if not is_safe_id(camera_id) or not (
        status_path(context.status_dir, camera_id).is_file()
        or camera_id in queries.camera_ids(context.db.engine)
    ):
        return jsonify(error="no such camera"), 404
    if not view.acquire():
        response = jsonify(
            error=f"the live view serves {view.config.max_clients} streams at a time; "
            "close one or try again later"
        )
        response.status_code = 503
        response.headers["Retry-After"] = str(LIVE_RETRY_AFTER_S)
        return response
    response = Response(view.stream(camera_id), mimetype=MIMETYPE)
    response.headers["X-Accel-Buffering"] = "no"
    response.call_on_close(view.release)
    return response


@bp.get("/api/labels")
def labels() -> ResponseReturnValue:
    """Every class name with at least one stored detection."""
    _args()
    return jsonify(queries.labels(dashboard_context().db.engine))


@bp.get("/api/rules")
def rules() -> ResponseReturnValue:
    """Every rule name in the settings in force of a camera with a status file."""
    _args()
    statuses = read_statuses(dashboard_context().status_dir).values()
    names = {name for status in statuses for name in status.rules if _RULE.fullmatch(name)}
    return jsonify(sorted(names))


@bp.get("/api/label-colours")
def label_colours() -> ResponseReturnValue:
    """The colour of every stored class name, as boxes and charts draw it."""
    _args()
    ids = queries.label_ids(dashboard_context().db.engine)
    return jsonify({label: class_colour_hex(label_id) for label, label_id in ids.items()})


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 when the database answers, 503 when it does not."""
    try:
        dashboard_context().db.ping()
    except SQLAlchemyError as exc:
        logger.warning("health check: database unavailable", extra={"error": type(exc).__name__})
        return jsonify(status="error", db="unavailable"), 503
    return jsonify(status="ok", db="ok")


@bp.errorhandler(BadRequest)
@bp.errorhandler(WindowError)
def bad_request(exc: ValueError) -> ResponseReturnValue:
    """Malformed parameters become 400 with the reason."""
    return jsonify(error=str(exc)), 400


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Database failures in the API become 503 with a short JSON body (details go to the log)."""
    logger.warning("database query failed", extra={"error": type(exc).__name__}, exc_info=exc)
    return jsonify(error="database unavailable"), 503
