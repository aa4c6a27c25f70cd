"""Does the model still answer as it did? Its recent answers against a baseline.

Each inference is summed up by its top confidence (None when it reported nothing), the classes it
reported and whether its verdict was NG (by the camera's rules when it has some: a frame with
detections may be OK, one without NG). The **baseline** is the first ``baseline`` inferences after a reset (the
camera set up, the module started, another model, camera or threshold); the **window** the last
``window`` inferences. Figures, once both are full:

* ``confidence_psi``: population stability index of the top confidences on fixed bins (one for
  "nothing reported", ten of 0.1 over 0..1); 0.1 is a small shift, above 0.25 a large one;
* ``class_rate_change``: the change of the share of inferences reporting a class, for the class that
  changed most (``0.12``: reported in 12 % more of the inferences);
* ``ng_rate_change``: the change of the share of NG verdicts.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Top-confidence bins: "nothing reported", then ten of 0.1 over 0..1.
CONFIDENCE_BINS = 11
#: Added to every bin's count before the PSI (an empty bin would make it infinite).
SMOOTHING = 0.5


def confidence_bin(top: float | None) -> int:
    """The bin of a top confidence: 0 for none, else 1..10."""
    if top is None:
        return 0
    return 1 + min(max(int(top * 10), 0), 9)


@dataclass
class Counts:
    """What a run of inferences looked like: how many, per confidence bin, per class, NG verdicts."""

    n: int = 0
    bins: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    classes: Counter[str] = field(default_factory=Counter)
    ng: int = 0

    def add(self, top: float | None, labels: frozenset[str], ng: bool) -> None:
        self.n += 1
        self.bins[confidence_bin(top)] += 1
        self.classes.update(labels)
        self.ng += ng

    def remove(self, top: float | None, labels: frozenset[str], ng: bool) -> None:
        """Take back an inference :meth:`add` counted."""
        self.n -= 1
        self.bins[confidence_bin(top)] -= 1
        for label in labels:
            self.classes[label] -= 1
            if not self.classes[label]:
                del self.classes[label]
        self.ng -= ng

    def to_json(self) -> dict[str, Any]:
        """As saved with the drift state; NG verdicts under ``ng_verdicts``."""
        classes = dict(self.classes)
        return {"n": self.n, "bins": self.bins, "classes": classes, "ng_verdicts": self.ng}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        """The inverse of :meth:`to_json`; counts saved before NG meant the verdict (``ng``: any
        detection) are refused with a KeyError."""
        bins = [int(b) for b in data["bins"]]
        if len(bins) != CONFIDENCE_BINS:
            raise ValueError(f"expected {CONFIDENCE_BINS} confidence bins, got {len(bins)}")
        classes = Counter({str(k): int(v) for k, v in data["classes"].items()})
        return cls(int(data["n"]), bins, classes, int(data["ng_verdicts"]))


def psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """Population stability index of two histograms on the same bins (counts, smoothed)."""
    e_total = sum(expected) + SMOOTHING * len(expected)
    a_total = sum(actual) + SMOOTHING * len(actual)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe, pa = (e + SMOOTHING) / e_total, (a + SMOOTHING) / a_total
        total += (pa - pe) * math.log(pa / pe)
    return total


def behaviour_figures(
    base: Counts, recent: Counts
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """The figures of ``recent`` against ``base`` and, for ``class_rate_change``, which class."""
    rates = {
        label: (base.classes[label] / base.n, recent.classes[label] / recent.n)
        for label in sorted(set(base.classes) | set(recent.classes))
    }
    label, (was, now) = max(
        rates.items(), key=lambda kv: abs(kv[1][1] - kv[1][0]), default=("", (0.0, 0.0))
    )
    figures: dict[str, float | None] = {
        "confidence_psi": round(psi(base.bins, recent.bins), 4),
        "class_rate_change": round(now - was, 4),
        "ng_rate_change": round(recent.ng / recent.n - base.ng / base.n, 4),
    }
    detail = {
        "class": label or None,
        "class_rate": {"baseline": round(was, 4), "recent": round(now, 4)},
        "ng_rate": {
            "baseline": round(base.ng / base.n, 4),
            "recent": round(recent.ng / recent.n, 4),
        },
    }
    return figures, detail


class BehaviourWindow:
    """The baseline and the recent window of one camera's inferences; safe to share between the
    inference thread (:meth:`observe`) and the drift thread (everything else). Both are kept as
    counts, so a reading costs the same whatever the window's size."""

    def __init__(self, baseline: int, window: int) -> None:
        self._size = baseline
        self._window = window
        self._recent: deque[tuple[float | None, frozenset[str], bool]] = deque()
        self._recent_counts = Counts()
        self._base = Counts()
        self._key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()

    def observe(
        self, key: tuple[Any, ...], top: float | None, labels: frozenset[str], ng: bool
    ) -> None:
        """One inference, NG or not; ``key`` names what the answers and verdicts depend on (camera,
        model, threshold, rules): when it changes, the baseline starts again."""
        with self._lock:
            if key != self._key:
                self._key = key
                self._start_over()
            if self._base.n < self._size:
                self._base.add(top, labels, ng)
            self._recent.append((top, labels, ng))
            self._recent_counts.add(top, labels, ng)
            self._trim()

    def reset(self) -> None:
        """Start the baseline again (the camera was set up)."""
        with self._lock:
            self._start_over()

    def resize(self, baseline: int, window: int) -> None:
        """New sizes; another baseline size starts the baseline again."""
        with self._lock:
            self._window = window
            self._trim()
            if baseline != self._size:
                self._size = baseline
                self._start_over()

    def restore(self, key: tuple[Any, ...], base: Counts) -> None:
        """Take a baseline saved earlier, for inferences named ``key``."""
        with self._lock:
            self._start_over()
            self._key, self._base = key, base

    def _trim(self) -> None:
        while len(self._recent) > self._window:
            self._recent_counts.remove(*self._recent.popleft())

    def _start_over(self) -> None:
        self._base = Counts()
        self._recent.clear()
        self._recent_counts = Counts()

    @property
    def key(self) -> tuple[Any, ...] | None:
        return self._key

    def progress(self) -> tuple[int, int]:
        """Inferences in the baseline so far, and how many it takes."""
        with self._lock:
            return self._base.n, self._size

    def baseline(self) -> Counts | None:
        """The baseline once complete, else None."""
        with self._lock:
            return self._base if self._base.n >= self._size else None

    def reading(self) -> tuple[dict[str, float | None], dict[str, Any]] | None:
        """The figures, once the baseline is complete and the window full; else None."""
        with self._lock:
            if self._base.n < self._size or len(self._recent) < self._window:
                return None
            return behaviour_figures(self._base, self._recent_counts)
