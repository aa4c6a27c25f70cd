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
    """Picks frames to keep for retraining: one per interval, plus uncertain ones.

    An uncertain frame is one whose best detection is below ``below_probability``; those are kept at most
    one per ``min_gap`` seconds so a confusing scene cannot flood storage.
    """

    def __init__(self, interval_s: float, below_probability: float, min_gap: float = 10.0) -> None:
        self.interval_s = interval_s
        self.below_probability = below_probability
        self.min_gap = min_gap
        self._last_interval: float | None = None
        self._last_uncertain: float | None = None

    def pick(self, now: float, best_probability: float | None) -> str | None:
        """``"interval"``, ``"uncertain"`` or None for a frame inferred at ``now``."""
        if self.interval_s > 0 and (
            self._last_interval is None or now - self._last_interval >= self.interval_s
        ):
            self._last_interval = now
            return "interval"
        if (
            best_probability is not None
            and best_probability < self.below_probability
            and (self._last_uncertain is None or now - self._last_uncertain >= self.min_gap)
        ):
            self._last_uncertain = now
            return "uncertain"
        return None
