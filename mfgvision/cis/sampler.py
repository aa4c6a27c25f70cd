"""Which frames to infer: by wall-clock time, not by frame count."""

from __future__ import annotations


class Sampler:
    """Lets one frame through every ``1 / inference_fps`` seconds; 0 means every frame.

    A late frame does not cause a burst afterwards: the schedule restarts from the frame that passed
    when it fell more than one period behind.
    """

    def __init__(self, inference_fps: float) -> None:
        self.period = 1.0 / inference_fps if inference_fps > 0 else 0.0
        self._next: float | None = None

    def admit(self, now: float) -> bool:
        """True when the frame seen at monotonic time ``now`` should be inferred."""
        if self.period == 0.0:
            return True
        if self._next is None or now >= self._next:
            base = self._next if self._next is not None and now - self._next < self.period else now
            self._next = base + self.period
            return True
        return False


class RetrainSampler:
    """Picks frames to keep for retraining: one per interval, frames of a drifting camera, and
    uncertain ones.

    While a drift alert is raised, a frame is kept at most one per ``drift_gap_s`` seconds, the first
    one inferred after each alert is raised at once. An uncertain frame is one whose best detection
    is below ``below_probability``; those are kept at most one per ``min_gap`` seconds. Either way a
    drifting line or a confusing scene cannot flood storage.
    """

    def __init__(
        self,
        interval_s: float,
        below_probability: float,
        drift_gap_s: float = 0.0,
        min_gap: float = 10.0,
    ) -> None:
        self.interval_s = interval_s
        self.below_probability = below_probability
        self.drift_gap_s = drift_gap_s
        self.min_gap = min_gap
        self._last_interval: float | None = None
        self._last_drift: float | None = None
        self._last_uncertain: float | None = None

    def pick(
        self, now: float, best_probability: float | None, raised_since: float | None = None
    ) -> str | None:
        """``"interval"``, ``"drift"``, ``"uncertain"`` or None for a frame inferred at ``now``;
        ``raised_since`` is when the latest drift alert was raised while one is (None while none
        is), on the same clock."""
        if self.interval_s > 0 and (
            self._last_interval is None or now - self._last_interval >= self.interval_s
        ):
            self._last_interval = now
            return "interval"
        if (
            raised_since is not None
            and self.drift_gap_s > 0
            and (
                self._last_drift is None
                or self._last_drift < raised_since
                or now - self._last_drift >= self.drift_gap_s
            )
        ):
            self._last_drift = now
            return "drift"
        if (
            best_probability is not None
            and best_probability < self.below_probability
            and (self._last_uncertain is None or now - self._last_uncertain >= self.min_gap)
        ):
            self._last_uncertain = now
            return "uncertain"
        return None
