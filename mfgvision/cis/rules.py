"""The camera's zones and rules, evaluated on every inference after NMS: the verdict, the alarms and
the rules that fired (docs/configuration.md, "Zones and rules").

The settings' zones and rules are compiled once (``RuleBook``), when they come in force; judging an
inference is then a few array operations over every zone at once (``mfgvision.geometry``) and a
short loop over the rules. Everything happens in frame-normalised coordinates (the detections'
``box_norm``), where a box centre and an overlap fraction are what they are in pixels.

With no rules the verdict is the one without rules (``store.records.verdict_of``: NG when anything
was detected). With rules, the part is NG when a rule yielding NG fires, else OK, whatever else was
detected; a rule yielding ``alarm`` leaves the verdict as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mfgvision.geometry import EPS, PolygonSet, boxes_in_boxes
from mfgvision.inference.types import Detection
from mfgvision.settings import CisSettings, Rule
from mfgvision.store.records import ALARM, NG, OK, FiredRule, verdict_of


@dataclass(frozen=True)
class Judgement:
    """An inference's verdict (OK or NG), the rules that fired (None: no rules in force) and which
    zones and rules judged it (:attr:`RuleBook.digest`)."""

    verdict: str
    fired: tuple[FiredRule, ...] | None
    rulebook: str

    @property
    def alarms(self) -> tuple[FiredRule, ...]:
        """The fired rules that yield an alarm."""
        return tuple(f for f in self.fired or () if f.yields == ALARM)


@dataclass(frozen=True)
class _Detections:
    """One inference's detections as arrays, and which of them lie in which zone."""

    items: Sequence[Detection]
    names: tuple[str, ...]  # the classes the rules name, in name order
    classes: np.ndarray  # (n,): each detection's index in ``names``, else -1
    boxes: np.ndarray  # (n, 4), normalised
    probabilities: np.ndarray  # (n,)
    centre_in: np.ndarray | None  # (zones, n): the box's centre lies in the zone
    overlap: np.ndarray | None  # (zones, n): the share of the box's area inside the zone

    def of(self, classes: np.ndarray, min_probability: float) -> np.ndarray:
        """Which detections are of the classes marked in ``classes`` (a lookup by class index
        whose last entry, for -1, is False) at or above ``min_probability``."""
        return classes[self.classes] & (self.probabilities >= min_probability)


@dataclass(frozen=True)
class _Rule:
    """A rule, compiled: its classes and companions as lookups by class index, its zones by index."""

    name: str
    rule: Rule
    classes: np.ndarray
    companions: np.ndarray
    zones: tuple[tuple[str | None, int], ...]  # (name, index); (None, -1): the whole frame

    def member(self, zone: int, found: _Detections) -> np.ndarray:
        """Which detections lie in the zone of index ``zone`` (-1: the whole frame)."""
        if zone < 0 or not len(found.items):
            return np.ones(len(found.items), dtype=bool)
        if self.rule.membership == "centre":
            assert found.centre_in is not None
            return found.centre_in[zone]
        assert found.overlap is not None
        return found.overlap[zone] >= self.rule.overlap_fraction - EPS


class RuleBook:
    """A camera's zones and rules, compiled for judging inferences."""

    def __init__(self, settings: CisSettings) -> None:
        #: The settings compiled.
        self.settings = settings
        rules = settings.rules
        used = list(dict.fromkeys(zone for rule in rules.values() for zone in rule.zones))
        index = {zone: i for i, zone in enumerate(used)}
        named = {c for rule in rules.values() for c in (*rule.classes, *rule.with_classes)}
        self._names = tuple(sorted(named))
        self._class_index = {label: i for i, label in enumerate(self._names)}
        self.rules = tuple(
            _Rule(
                name,
                rule,
                self._lookup(rule.classes),
                self._lookup(rule.with_classes),
                tuple((z, index[z]) for z in rule.zones) or ((None, -1),),
            )
            for name, rule in rules.items()
        )
        scale = np.array(settings.zones_frame or (1, 1), dtype=float)
        polygons = [np.asarray(settings.zones[zone], dtype=float) / scale for zone in used]
        self._zones = PolygonSet(polygons) if polygons else None
        zoned = [r.rule.membership for r in self.rules if r.rule.zones]
        self._needs_centre, self._needs_overlap = "centre" in zoned, "overlap" in zoned
        #: What the verdicts depend on besides the detections, in a few characters: a digest of the
        #: rules and the zones they look in; empty without rules (the verdict without rules).
        self.digest = _digest(rules, dict(zip(used, polygons, strict=True))) if rules else ""

    def _lookup(self, classes: Sequence[str]) -> np.ndarray:
        lookup = np.zeros(len(self._class_index) + 1, dtype=bool)
        lookup[[self._class_index[c] for c in classes]] = True
        return lookup

    def judge(self, detections: Sequence[Detection]) -> Judgement:
        """The verdict of an inference with these detections (after NMS), and the rules that fired."""
        if not self.rules:
            return Judgement(verdict_of(detections), None, self.digest)
        found = self._arrays(detections)
        fired = tuple(f for rule in self.rules for f in _fire(rule, found))
        return Judgement(NG if any(f.yields == NG for f in fired) else OK, fired, self.digest)

    def _arrays(self, detections: Sequence[Detection]) -> _Detections:
        n = len(detections)
        index = self._class_index
        classes = np.fromiter((index.get(d.label, -1) for d in detections), np.intp, n)
        boxes = np.array([d.box_norm.as_list() for d in detections], dtype=float).reshape(n, 4)
        probabilities = np.fromiter((d.probability for d in detections), float, n)
        centre_in = overlap = None
        if self._zones is not None and n:
            if self._needs_centre:
                centres = np.stack([boxes[:, [0, 2]].mean(1), boxes[:, [1, 3]].mean(1)], axis=1)
                centre_in = self._zones.contains(centres)
            if self._needs_overlap:
                overlap = self._zones.overlap(boxes)
        return _Detections(
            detections, self._names, classes, boxes, probabilities, centre_in, overlap
        )


def _digest(rules: Mapping[str, Rule], zones: Mapping[str, np.ndarray]) -> str:
    """A short digest of the rules and of the zones they use, normalised (as they judge: the same
    zones given in pixels or normalised have the same digest)."""
    judged = {
        "rules": {name: rule.model_dump(mode="json") for name, rule in rules.items()},
        "zones": {zone: points.tolist() for zone, points in zones.items()},
    }
    text = json.dumps(judged, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fire(compiled: _Rule, found: _Detections) -> Iterator[FiredRule]:
    """What a rule fires on ``found``, zone by zone."""
    rule = compiled.rule
    wanted = found.of(compiled.classes, rule.min_probability)
    for zone, index in compiled.zones:
        selected = wanted & compiled.member(index, found)
        for label, count, detail in _findings(compiled, found, selected, zone or "the frame"):
            yield FiredRule(compiled.name, rule.kind, rule.yields, zone, label, count, detail)


def _findings(
    compiled: _Rule, found: _Detections, selected: np.ndarray, where: str
) -> Iterator[tuple[str, int, str]]:
    """Class, count and reason of each finding of a rule among the detections ``selected`` (of
    its classes, in one of its zones)."""
    rule = compiled.rule
    if rule.kind in ("defect", "absent"):
        for label, count in _by_label(found, selected):
            yield label, count, f"{count} {label} in {where}"
    elif rule.kind == "count":
        count, low, high = int(selected.sum()), rule.min, rule.max
        if (low is not None and count < low) or (high is not None and count > high):
            label = ",".join(rule.classes)
            yield label, count, f"{count} {label} in {where}, {_expected(low, high)}"
    else:  # required_with
        lacking = selected & ~_covered(compiled, found, selected)
        with_any = " or ".join(rule.with_classes)
        for label, count in _by_label(found, lacking):
            yield label, count, f"{count} {label} in {where} without {with_any}"


def _by_label(found: _Detections, selected: np.ndarray) -> list[tuple[str, int]]:
    """The selected detections (all of classes the rules name) counted by class, in name order."""
    if not selected.any():
        return []
    counts = np.bincount(found.classes[selected], minlength=len(found.names))
    return [(found.names[i], int(counts[i])) for i in np.flatnonzero(counts)]


def _covered(compiled: _Rule, found: _Detections, selected: np.ndarray) -> np.ndarray:
    """Which detections have one of the rule's ``with_classes`` belonging to their box: its centre
    in the box (membership ``centre``) or at least ``overlap_fraction`` of its area (``overlap``)."""
    rule = compiled.rule
    covered = np.zeros(len(found.items), dtype=bool)
    companions = found.of(compiled.companions, rule.min_probability)
    if selected.any() and companions.any():
        fraction = rule.overlap_fraction if rule.membership == "overlap" else None
        inside = boxes_in_boxes(found.boxes[companions], found.boxes[selected], fraction)
        covered[selected] = inside.any(axis=0)
    return covered


def _expected(low: int | None, high: int | None) -> str:
    if low is None:
        return f"expected at most {high}"
    if high is None:
        return f"expected at least {low}"
    return f"expected {low}" if low == high else f"expected {low} to {high}"
