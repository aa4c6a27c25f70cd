"""What the CIS hands to storage: one record per inference, with its detections; the verdict rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mfgvision.inference.types import Detection

OK = "OK"
NG = "NG"


def verdict_rule(prob_threshold: float | None) -> str:
    """The OK/NG rule in one sentence, naming the probability threshold when it is known."""
    threshold = (
        f"{prob_threshold} (prob_threshold)"
        if prob_threshold is not None
        else "the camera's prob_threshold (not recorded for this inspection)"
    )
    return (
        "NG when the model reports at least one detection of any class with a probability above "
        f"{threshold}; otherwise OK."
    )


@dataclass
class InferenceRecord:
    """One stored inference. ``created`` is timezone-aware UTC.

    ``prob_threshold`` and ``settings_version`` (the desired-twin ``$version`` the module applied)
    are the settings the inspection was made with; None for rows stored before they were recorded,
    and ``settings_version`` also when no twin version was known (a run without a twin).
    """

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
    prob_threshold: float | None = None
    settings_version: int | None = None
    #: Why the frame was kept for retraining (``interval``, ``uncertain``, ``drift``), and its copy; None
    #: when it was not kept.
    retrain_reason: str | None = None
    retrain_image_name: str | None = None
    retrain_image_path: str | None = None

    @property
    def object_detected(self) -> bool:
        return bool(self.detections)

    @property
    def verdict(self) -> str:
        """``NG`` when anything was detected (detections are only those above the threshold)."""
        return NG if self.object_detected else OK
