"""A sink that records what the bridge hands it, and ``inference`` message bodies."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Any

from mfgvision.line_bridge.results import CameraState, Inspection
from tests.cis.conftest import frames_dir, models_dir  # noqa: F401  (fixtures)


class RecordingSink:
    """Keeps every ``publish`` call, in order."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[CameraState, Inspection | None]] = []
        self.started = self.stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        with self._lock:
            self.calls.append((state, inspection))

    def status(self) -> dict[str, Any]:
        return {"published": len(self.calls)}

    def inspections(self) -> list[Inspection]:
        with self._lock:
            return [i for _, i in self.calls if i is not None]

    def states(self) -> list[CameraState]:
        with self._lock:
            return [s for s, i in self.calls if i is None]


def inference_body(
    camera_id: str = "cam-1", labels: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """An ``inference`` message body as the CIS sends it (the fields the bridge reads)."""
    return {
        "unique_id": str(uuid.uuid4()),
        "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "camera_id": camera_id,
        "location": "line1",
        "position": "top",
        "object_detected": bool(labels),
        "detected_objects": [{"label": label, "probability": 0.9} for label in labels],
        **extra,
    }
