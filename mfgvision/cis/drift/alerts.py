"""Drift alerts: which figures each alert watches, against which threshold, and the hysteresis that
raises and clears it.

An alert is **past** its threshold when any of its figures is; it is **clear** when every figure is
below ``drift_clear_ratio`` times its threshold. It is raised once after ``drift_consecutive`` checks
in a row past the threshold, and cleared once after as many checks in a row clear. A figure that
hovers around the threshold raises the alert once and never clears it; one between the clear
threshold and the threshold changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from mfgvision.settings import CisSettings

#: ``above``: only a rise counts; ``below``: only a fall; ``both``: either way.
Direction = Literal["above", "below", "both"]
Change = Literal["raised", "cleared"]


@dataclass(frozen=True)
class Limit:
    """One figure of an alert, the setting holding its threshold, and which way counts."""

    figure: str
    setting: str
    direction: Direction

    def excess(self, value: float | None, threshold: float) -> float:
        """The figure as a multiple of its threshold, the way that counts (1 = at it); a figure
        that could not be measured is infinitely past."""
        if value is None:
            return math.inf
        signed = {"above": value, "below": -value, "both": abs(value)}[self.direction]
        return signed / threshold


@dataclass(frozen=True)
class Rule:
    """An alert, the detector that measures its figures, and their limits."""

    alert: str
    detector: str
    limits: tuple[Limit, ...]


RULES: tuple[Rule, ...] = (
    Rule(
        "camera_moved",
        "camera",
        (
            Limit("shift_px", "drift_shift_px", "above"),
            Limit("rotation_deg", "drift_rotation_deg", "both"),
            Limit("scale_change", "drift_scale", "both"),
        ),
    ),
    Rule("blur", "image", (Limit("sharpness_change", "drift_sharpness", "below"),)),
    Rule("brightness", "image", (Limit("brightness_change", "drift_brightness", "both"),)),
    Rule("contrast", "image", (Limit("contrast_change", "drift_contrast", "both"),)),
    Rule("saturation", "image", (Limit("saturation_change", "drift_saturation", "both"),)),
    Rule("confidence", "model", (Limit("confidence_psi", "drift_confidence_psi", "above"),)),
    Rule("class_rate", "model", (Limit("class_rate_change", "drift_class_rate", "both"),)),
    Rule("ng_rate", "model", (Limit("ng_rate_change", "drift_ng_rate", "both"),)),
)


def limits_json(settings: CisSettings) -> list[dict[str, Any]]:
    """Every figure with its alert, threshold in ``settings``, clear threshold and the way that
    counts, for the dashboard."""
    limits = []
    for rule in RULES:
        for limit in rule.limits:
            threshold = float(getattr(settings, limit.setting))
            limits.append(
                {
                    "alert": rule.alert,
                    "detector": rule.detector,
                    "figure": limit.figure,
                    "direction": limit.direction,
                    "threshold": threshold,
                    "clear_below": round(threshold * settings.drift_clear_ratio, 6),
                }
            )
    return limits


@dataclass(frozen=True)
class Verdict:
    """One check of an alert: past its threshold, clear of it, and its worst figure."""

    past: bool
    clear: bool
    figure: str
    value: float | None
    threshold: float
    clear_below: float


def judge(rule: Rule, figures: dict[str, float | None], settings: CisSettings) -> Verdict:
    """Compare the rule's figures with their thresholds in ``settings``."""
    worst: tuple[float, Limit, float | None, float] | None = None
    for limit in rule.limits:
        value, threshold = figures[limit.figure], float(getattr(settings, limit.setting))
        excess = limit.excess(value, threshold)
        if worst is None or excess > worst[0]:
            worst = (excess, limit, value, threshold)
    assert worst is not None
    excess, limit, value, threshold = worst
    ratio = settings.drift_clear_ratio
    return Verdict(
        past=excess > 1.0,
        clear=excess < ratio,
        figure=limit.figure,
        value=value,
        threshold=threshold,
        clear_below=round(threshold * ratio, 6),
    )


class Hysteresis:
    """Whether one alert is raised; changes only after ``consecutive`` checks in a row agree."""

    def __init__(self, active: bool = False) -> None:
        self.active = active
        self._run = 0

    def update(self, past: bool, clear: bool, consecutive: int) -> Change | None:
        """One check; ``raised`` or ``cleared`` when the alert changes, else None."""
        agrees = clear if self.active else past
        self._run = self._run + 1 if agrees else 0
        if self._run < consecutive:
            return None
        self._run = 0
        self.active = not self.active
        return "raised" if self.active else "cleared"
