"""The metrics observed where they happen, on the CIS hot path: stage latencies, detections per class
and verdicts. Every other metric is read from the modules' status at scrape time.

The families are not registered anywhere: each :class:`~mfgvision.metrics.server.MetricsServer`
serves them from its own registry, so the hot path costs the same whether anything scrapes or not.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Histogram, disable_created_metrics

from mfgvision.store.records import NG

# Counters without their ``_created`` twin: one series per counter keeps scrapes small.
disable_created_metrics()

#: From 0.5 ms (annotate, postprocess) to 10 s (frame to row while the database is slow).
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

STAGE_SECONDS = Histogram(
    "mfgvision_cis_stage_duration_seconds",
    "Time one frame spent in a CIS pipeline stage",
    ("module", "camera_id", "stage"),
    buckets=STAGE_BUCKETS,
    registry=None,
)
DETECTIONS = Counter(
    "mfgvision_detections_total",
    "Objects the model detected (above prob_threshold), per class",
    ("module", "camera_id", "class"),
    registry=None,
)
VERDICTS = Counter(
    "mfgvision_verdicts_total",
    "Inferences per verdict (OK or NG, by the camera's rules when it has some)",
    ("module", "camera_id", "verdict"),
    registry=None,
)
FAMILIES = (STAGE_SECONDS, DETECTIONS, VERDICTS)


class CameraSeries:
    """The hot-path series of one camera of one module; each child is looked up once."""

    def __init__(self, module: str, camera_id: str) -> None:
        self.module = module
        self.camera_id = camera_id
        self._stages: dict[str, Histogram] = {}
        self._classes: dict[str, Counter] = {}
        self._ok = VERDICTS.labels(module, camera_id, "OK")
        self._ng = VERDICTS.labels(module, camera_id, "NG")

    def observe(self, stage: str, seconds: float) -> None:
        """One frame's time in ``stage``."""
        child = self._stages.get(stage)
        if child is None:
            child = self._stages[stage] = STAGE_SECONDS.labels(self.module, self.camera_id, stage)
        child.observe(seconds)

    def detected(self, labels: Sequence[str], verdict: str) -> None:
        """One inference's detections, by class label, and its verdict (``OK`` or ``NG``)."""
        for label in labels:
            child = self._classes.get(label)
            if child is None:
                child = self._classes[label] = DETECTIONS.labels(self.module, self.camera_id, label)
            child.inc()
        (self._ng if verdict == NG else self._ok).inc()
