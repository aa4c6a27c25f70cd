"""The messages the CIS module sends (one per stored inference, one per stored image) and the names
of its inputs and outputs.

Field names keep the original system's contract where it had one (``model_name``, ``object_detected``,
``camera_id``, ``camera_name``, ``raw_image_name``, ``annotated_image_name``, ``inferencing_time``,
``created``, ``unique_id``, ``detected_objects``), with fixed semantics: ``created`` is ISO-8601 UTC,
probabilities are 0..1 and every box is x1, y1, x2, y2 in original-frame pixels plus normalised.
The ``inference`` message adds the ``verdict`` (``OK`` or ``NG``, by the camera's rules when it has
some) and the ``rules`` that fired (null when the camera has no rules), what the verdict was made
with: ``prob_threshold`` and ``settings_version`` (the desired-twin ``$version`` applied; null when
unknown), beside ``model_name`` and ``model_version``; an inference made for a ``trigger`` message
(from LineBridge) carries that message's ``trigger_id``.
An inference sends at most one ``alerts`` message: for its detections at or above
``alert_probability`` and for the rules yielding an alarm that fired, whichever it has.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from mfgvision.store.images import blob_name, name_parts
from mfgvision.store.records import ALARM, InferenceRecord, fired_json

#: Input whose messages make the camera inspect its next frame (from LineBridge):
#: ``{"trigger_id": ..., "camera_id": ...}``; the software trigger fires too.
TRIGGER_INPUT = "trigger"
#: The input ImageUpload's receipts arrive on: which announced images it has taken.
RECEIPTS_INPUT = "uploadReceipts"
INFERENCE_OUTPUT = "inference"
IMAGE_UPLOAD_OUTPUT = "imageUpload"
ALERTS_OUTPUT = "alerts"
#: Every output the CIS module sends on (the deployment checks hold routes to these).
OUTPUTS = (INFERENCE_OUTPUT, IMAGE_UPLOAD_OUTPUT, ALERTS_OUTPUT)
ALERT_SCHEMA = "mfgvision.alert/2"
SCHEMA = "mfgvision.inference/1"

CONTAINERS = {
    "annotated": "images-annotated",
    "raw": "images-frame",
    "retrain": "images-retraining",
}


def iso_utc(when: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix."""
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def inference_message(
    record: InferenceRecord,
    location: str,
    position: str,
    timings: dict[str, float],
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """The body sent on the ``inference`` output (routed upstream); an inference made for a
    trigger message also carries its ``trigger_id``."""
    body = {
        "schema": SCHEMA,
        **_about(record, location, position),
        "object_detected": record.object_detected,
        "detected_objects": [d.to_dict() for d in record.detections],
        "verdict": record.verdict,
        "rules": fired_json(record.fired_rules),
        "inferencing_time": round(record.inferencing_time_ms, 3),
        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
        "frame": {"width": record.frame_width, "height": record.frame_height},
        "raw_image_name": record.raw_image_name,
        "annotated_image_name": record.annotated_image_name,
        "image_error": record.image_error,
        "prob_threshold": record.prob_threshold,
        "settings_version": record.settings_version,
        "retrain_reason": record.retrain_reason,
    }
    if trigger_id is not None:
        body["trigger_id"] = trigger_id
    return body


def _about(record: InferenceRecord, location: str, position: str) -> dict[str, Any]:
    """The fields naming an inference: which one, when, which camera and model."""
    return {
        "unique_id": record.unique_id,
        "created": iso_utc(record.created),
        "camera_id": record.camera_id,
        "camera_name": record.camera_name,
        "location": location,
        "position": position,
        "model_name": record.model_name,
        "model_version": record.model_version,
    }


def upload_message(
    kind: str, image_name: str, path: str, record: InferenceRecord, location: str, position: str
) -> dict[str, Any]:
    """The body sent on the ``imageUpload`` output for one stored image.

    Location and position are given as they appear in the file and blob names (sanitised).
    """
    place, spot = name_parts(location, position)
    return {
        "kind": kind,
        "container": CONTAINERS[kind],
        "img_name": image_name,
        "path": path,
        "blob_name": blob_name(location, position, record.created, image_name),
        "location": place,
        "position": spot,
        "camera_id": record.camera_id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "unique_id": record.unique_id,
        "created": iso_utc(record.created),
    }


def alert_message(
    record: InferenceRecord, location: str, position: str, threshold: float
) -> dict[str, Any] | None:
    """The body sent on the ``alerts`` output: the detections at or above ``threshold`` (0: none)
    and the rules yielding an alarm that fired; None when there are neither."""
    hits = [d for d in record.detections if d.probability >= threshold] if threshold > 0 else []
    alarms = [f for f in record.fired_rules or () if f.yields == ALARM]
    if not hits and not alarms:
        return None
    return {
        "schema": ALERT_SCHEMA,
        **_about(record, location, position),
        "alert_probability": threshold,
        "max_probability": round(max(d.probability for d in hits), 6) if hits else None,
        "labels": sorted({d.label for d in hits}),
        "detected_objects": [d.to_dict() for d in hits],
        "verdict": record.verdict,
        "alarms": [f.to_dict() for f in alarms],
        "annotated_image_name": record.annotated_image_name,
    }
