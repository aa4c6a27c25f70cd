"""Per-stage timings and counters of the CIS pipeline, cheap enough to keep on the hot path.

Stage timings and detections also go to the Prometheus series of the module's camera
(:mod:`mfgvision.metrics.source`); the counters are read from the status at scrape time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

from mfgvision.metrics.source import CameraSeries


class PipelineMetrics:
    """Rolling per-stage milliseconds (last ``window`` samples each) and monotonic counters."""

    def __init__(self, window: int = 4096, module: str = "cis", camera_id: str | None = "") -> None:
        """``module`` and ``camera_id`` label the Prometheus series; a module's own figures (no
        camera: ``camera_id`` None) have none."""
        self._window = window
        self.series = CameraSeries(module, camera_id) if camera_id is not None else None
        self._stages: dict[str, deque[float]] = {}
        self.counters: Counter[str] = Counter()
        self._events: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def time(self, stage: str, ms: float) -> None:
        with self._lock:
            self._stages.setdefault(stage, deque(maxlen=self._window)).append(ms)
        if self.series is not None:
            self.series.observe(stage, ms / 1000)

    def detected(self, labels: list[str], verdict: str) -> None:
        """One inference's detections by class label, and its verdict."""
        if self.series is not None:
            self.series.detected(labels, verdict)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n
            if name == "inferences":
                self._events.append(time.monotonic())

    def fps(self, horizon: float = 10.0) -> float:
        """Inferences per second over the last ``horizon`` seconds."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._events if now - t <= horizon]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def samples(self, stage: str) -> list[float]:
        """The milliseconds kept for ``stage`` (the last ``window``), oldest first."""
        with self._lock:
            return list(self._stages.get(stage, ()))

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean, p50 and p99 milliseconds per stage."""
        with self._lock:
            stages = {k: np.array(v) for k, v in self._stages.items() if v}
        return {
            k: {
                "mean": round(float(v.mean()), 3),
                "p50": round(float(np.percentile(v, 50)), 3),
                "p99": round(float(np.percentile(v, 99)), 3),
                "n": len(v),
            }
            for k, v in stages.items()
        }
