"""What the CIS hands to storage: one record per inference, with its detections, its verdict and
the rules that fired; the verdict without rules."""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mfgvision.inference.types import Detection

OK = "OK"
NG = "NG"
#: What a rule that fires may yield besides NG: an alarm, which leaves the verdict as it is.
ALARM = "alarm"


def verdict_of(detections: Sized) -> str:
    """The verdict when no rules are in force: NG when the model reported at least one detection
    (each above ``prob_threshold``), else OK. Inferences stored before verdicts were recorded get
    theirs the same way."""
    return NG if len(detections) else OK


@dataclass(frozen=True)
class FiredRule:
    """One rule that fired on an inference: which rule, what it yields (``NG`` or ``alarm``), in
    which zone (None: the whole frame), for which class (a count rule: its classes joined with
    ``,``), how many detections (a count rule: how many it counted), and why in a few words."""

    rule: str
    kind: str
    yields: str
    zone: str | None
    label: str
    count: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """As messages and the database carry it (the class under ``class``)."""
        return {
            "rule": self.rule,
            "kind": self.kind,
            "yields": self.yields,
            "zone": self.zone,
            "class": self.label,
            "count": self.count,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FiredRule:
        """The inverse of :meth:`to_dict`."""
        return cls(
            rule=str(data["rule"]),
            kind=str(data["kind"]),
            yields=str(data["yields"]),
            zone=None if data.get("zone") is None else str(data["zone"]),
            label=str(data["class"]),
            count=int(data["count"]),
            detail=str(data.get("detail") or ""),
        )


def verdict_rule(prob_threshold: float | None, fired_rules: tuple[FiredRule, ...] | None) -> str:
    """How the verdict was reached, in a sentence or two: the rule without rules, naming the
    probability threshold when it is known, or which of the camera's rules fired."""
    threshold = (
        f"{prob_threshold} (prob_threshold)"
        if prob_threshold is not None
        else "the camera's prob_threshold (not recorded for this inspection)"
    )
    if fired_rules is None:
        return (
            "NG when the model reports at least one detection of any class with a probability "
            f"above {threshold}; otherwise OK."
        )
    rules = "NG when one of the camera's rules that yields NG fires, on detections above "
    rules += f"{threshold}; otherwise OK."
    if not fired_rules:
        return f"{rules} No rule fired."
    return (
        f"{rules} Fired: "
        + "; ".join(f"{f.rule} ({f.kind}, {f.yields}): {f.detail}" for f in fired_rules)
        + "."
    )


def fired_json(fired: tuple[FiredRule, ...] | None) -> list[dict[str, Any]] | None:
    """The rules that fired as messages, rows and the dashboard carry them: a list (empty: none
    fired), or None when no rules were in force."""
    return None if fired is None else [f.to_dict() for f in fired]


def fired_from_json(items: list[dict[str, Any]] | None) -> tuple[FiredRule, ...] | None:
    """The inverse of :func:`fired_json`."""
    return None if items is None else tuple(FiredRule.from_dict(item) for item in items)


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
    #: The verdict given when the inference was made (OK or NG, by the camera's rules when it had
    #: some); None for rows stored before verdicts were recorded (migration 0006).
    given_verdict: str | None = None
    #: The rules that fired (empty: none did); None when the camera had no rules.
    fired_rules: tuple[FiredRule, ...] | None = None

    @property
    def object_detected(self) -> bool:
        return bool(self.detections)

    @property
    def verdict(self) -> str:
        """The verdict given (:attr:`given_verdict`); for a row stored before verdicts were
        recorded, the verdict without rules."""
        return self.given_verdict if self.given_verdict is not None else verdict_of(self.detections)
