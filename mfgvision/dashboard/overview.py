"""JSON shapes of the dashboard: inference records, camera cards and the overview payload."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from mfgvision.dashboard.stats import WindowStats, counts_json, iso, window_json
from mfgvision.store.records import InferenceRecord, fired_json
from mfgvision.store.status import CameraStatus

ImageUrls = Callable[[InferenceRecord], dict[str, str | None]]
"""Maps a record to the URLs of its images that exist: ``annotated``, ``raw``, ``thumbnail``."""


def detections_json(record: InferenceRecord) -> list[dict[str, Any]]:
    """Detections sorted by probability, highest first."""
    detections = sorted(record.detections, key=lambda d: d.probability, reverse=True)
    return [
        {
            "label": d.label,
            "label_id": d.label_id,
            "probability": round(d.probability, 4),
            "probability_pct": round(100.0 * d.probability, 1),
            "box": [round(v, 1) for v in d.box.as_list()],
            "box_norm": [round(v, 5) for v in d.box_norm.as_list()],
        }
        for d in detections
    ]


def record_json(record: InferenceRecord, urls: dict[str, str | None]) -> dict[str, Any]:
    """One stored inference as the API shows it."""
    return {
        "unique_id": record.unique_id,
        "camera_id": record.camera_id,
        "camera_name": record.camera_name,
        "created": iso(record.created),
        "verdict": record.verdict,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "prob_threshold": record.prob_threshold,
        "settings_version": record.settings_version,
        "inferencing_time_ms": round(record.inferencing_time_ms, 1),
        "frame": {"width": record.frame_width, "height": record.frame_height},
        "detections": detections_json(record),
        "rules": fired_json(record.fired_rules),
        "images": urls,
    }


def zones_json(status: CameraStatus | None) -> dict[str, Any]:
    """A camera's zones as its settings in force have them (not necessarily those an inspection
    was judged with), normalised 0..1, and the settings version they came with."""
    return {
        "settings_version": status.settings_version if status else None,
        "items": [
            {"name": zone.name, "points": [list(point) for point in zone.points]}
            for zone in (status.zones if status else ())
        ],
    }


def camera_json(
    camera_id: str,
    record: InferenceRecord | None,
    status: CameraStatus | None,
    counts: tuple[int, int],
    image_urls: ImageUrls,
) -> dict[str, Any]:
    """One camera card: its latest inference (if any), its module status (if any), its counts."""
    latest = None
    if record is not None:
        urls = image_urls(record)
        latest = record_json(record, urls)
        latest["image_url"] = urls.get("annotated") or urls.get("raw")
        latest["image_kind"] = (
            "annotated" if urls.get("annotated") else "raw" if urls.get("raw") else None
        )
    return {
        "camera_id": camera_id,
        "camera_name": record.camera_name if record else camera_id,
        "latest": latest,
        "status": status.to_json() if status else None,
        "zones": zones_json(status),
        "counts": counts_json(*counts),
    }


def build_overview(
    now: datetime,
    latest: list[InferenceRecord],
    statuses: dict[str, CameraStatus],
    stats: WindowStats,
    image_urls: ImageUrls,
) -> dict[str, Any]:
    """Everything the overview page shows, as JSON-ready data, cameras sorted by id."""
    by_camera = {r.camera_id: r for r in latest}
    camera_ids = sorted(set(by_camera) | set(statuses))
    total = sum(t for t, _ in stats.counts.values())
    ng = sum(n for _, n in stats.counts.values())
    return {
        "generated_at": iso(now),
        "window": window_json(stats.window),
        "totals": counts_json(total, ng),
        "cameras": [
            camera_json(
                cam,
                by_camera.get(cam),
                statuses.get(cam),
                stats.counts.get(cam, (0, 0)),
                image_urls,
            )
            for cam in camera_ids
        ],
    }
