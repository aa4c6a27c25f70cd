"""What the CIS hands to storage: one record per inference, with its detections."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mfgvision.inference.types import Detection


@dataclass
class InferenceRecord:
    """One stored inference. ``created`` is timezone-aware UTC."""

    unique_id: str
    created: datetime
    camera_id: str
    camera_name: str
    model_name: str
    model_version: str
    inferencing_time_ms: float
    frame_width: int
    frame_height: int
    detections: list[Detection] = field(default_factory=list)
    raw_image_name: str | None = None
    raw_image_path: str | None = None
    annotated_image_name: str | None = None
    annotated_image_path: str | None = None
    #: Why some or all of its images were not stored (e.g. a full disk); None when all were.
    image_error: str | None = None

    @property
    def object_detected(self) -> bool:
        return bool(self.detections)
