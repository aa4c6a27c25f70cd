"""The body of a drift alert, sent on the CIS's ``alerts`` output when an alert is raised or cleared.

``kind`` ``drift`` tells it from an inference alert (which has no ``kind``); ``unique_id`` is new for
each change, so a consumer drops a message sent twice (after a restart) by it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from mfgvision.cis.drift.alerts import Change, Rule, Verdict
from mfgvision.cis.messages import iso_utc
from mfgvision.settings import CisSettings

DRIFT_SCHEMA = "mfgvision.drift/1"


def drift_message(
    settings: CisSettings,
    rule: Rule,
    state: Change,
    verdict: Verdict,
    figures: dict[str, float | None],
    raised_at: datetime,
    now: datetime,
    reference_taken_at: datetime | None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A drift alert raised or cleared at ``now`` (UTC): its worst figure against its threshold,
    all its figures, and ``detail`` from its detector."""
    return {
        "schema": DRIFT_SCHEMA,
        "kind": "drift",
        "unique_id": str(uuid.uuid4()),
        "created": iso_utc(now),
        "camera_id": settings.camera_id,
        "camera_name": settings.camera_name,
        "location": settings.camera_location,
        "position": settings.camera_position,
        "alert": rule.alert,
        "detector": rule.detector,
        "state": state,
        "figure": verdict.figure,
        "value": verdict.value,
        "threshold": verdict.threshold,
        "clear_below": verdict.clear_below,
        "figures": {limit.figure: figures[limit.figure] for limit in rule.limits},
        "detail": detail or {},
        "raised_at": iso_utc(raised_at),
        "cleared_at": iso_utc(now) if state == "cleared" else None,
        "reference_taken_at": iso_utc(reference_taken_at) if reference_taken_at else None,
    }
