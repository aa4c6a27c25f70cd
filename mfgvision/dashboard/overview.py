"""The overview payload: the latest inference of each camera plus OK/NG totals."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from mfgvision.store.database import Counts, Database
from mfgvision.store.records import InferenceRecord

LAST_HOUR = timedelta(hours=1)

ImageUrl = Callable[[InferenceRecord], tuple[str | None, str | None]]
"""Maps a record to (URL, kind) of the image to show, or (None, None)."""


def iso_utc(when: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and milliseconds, as browsers parse it."""
    text = when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def counts_json(counts: Counts) -> dict[str, Any]:
    """Counts with their yield in percent (``None`` when there is nothing yet)."""
    pct = counts.yield_pct
    return {
        "total": counts.total,
        "ok": counts.ok,
        "ng": counts.ng,
        "yield_pct": None if pct is None else round(pct, 1),
    }


def sum_counts(counts: Iterable[Counts]) -> Counts:
    """The sum of several cameras' counts."""
    items = list(counts)
    return Counts(
        total=sum(c.total for c in items),
        ok=sum(c.ok for c in items),
        ng=sum(c.ng for c in items),
    )


def camera_json(
    record: InferenceRecord, last_hour: Counts, all_time: Counts, image_url: ImageUrl
) -> dict[str, Any]:
    """One camera card: its latest inference, detections sorted by probability, and counts."""
    url, kind = image_url(record)
    detections = sorted(record.detections, key=lambda d: d.probability, reverse=True)
    return {
        "camera_id": record.camera_id,
        "camera_name": record.camera_name,
        "verdict": "NG" if record.object_detected else "OK",
        "created": iso_utc(record.created),
        "model_name": record.model_name,
        "model_version": record.model_version,
        "inferencing_time_ms": round(record.inferencing_time_ms, 1),
        "image_url": url,
        "image_kind": kind,
        "detections": [
            {
                "label": d.label,
                "label_id": d.label_id,
                "probability": round(d.probability, 4),
                "probability_pct": round(100.0 * d.probability, 1),
            }
            for d in detections
        ],
        "counts": {"last_hour": counts_json(last_hour), "all": counts_json(all_time)},
    }


def build_overview(db: Database, now: datetime, image_url: ImageUrl) -> dict[str, Any]:
    """Everything the overview page shows, as JSON-ready data."""
    latest = db.latest_per_camera()
    last_hour = db.counts(now - LAST_HOUR)
    all_time = db.counts()
    cameras = [
        camera_json(
            record,
            last_hour.get(record.camera_id, Counts()),
            all_time.get(record.camera_id, Counts()),
            image_url,
        )
        for record in latest
    ]
    return {
        "generated_at": iso_utc(now),
        "totals": {
            "last_hour": counts_json(sum_counts(last_hour.values())),
            "all": counts_json(sum_counts(all_time.values())),
        },
        "cameras": cameras,
    }
