"""Seeding shipped assets into the model volume, and validating every ``<name>/<version>/``.

A version is valid when its ONNX loads, its labels match the graph's class count, its input size is
known and, when the folder holds ``golden.jpg`` + ``golden.json``, the model still gives the recorded
detections on the golden image (same labels, boxes overlapping by IoU >= 0.8, probabilities within a
tolerance).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from mfgvision.evaluation import iou
from mfgvision.inference import ModelLoadError, RuntimeOptions, load_model
from mfgvision.inference.labels import LABEL_FILES

log = logging.getLogger(__name__)

GOLDEN_IMAGE = "golden.jpg"
GOLDEN_RESULT = "golden.json"
GOLDEN_MIN_IOU = 0.8


@dataclass
class VersionReport:
    """What validation found for one model version."""

    name: str
    version: str
    valid: bool
    family: str | None = None
    labels: list[str] = field(default_factory=list)
    input_size: list[int] | None = None
    golden: str = "none"
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


def seed(shipped: Path, target: Path, depth: int = 2) -> list[str]:
    """Copy every folder ``depth`` levels down in ``shipped`` (``<name>/<version>`` for models,
    ``<set>`` for samples with ``depth=1``) that is missing from ``target``.

    Folders already in the target are never touched, so a newer or locally changed version stays.
    Each folder is copied to a temporary name first and renamed into place.
    """
    seeded: list[str] = []
    if not shipped.is_dir() or shipped.resolve() == target.resolve():
        return seeded
    for source in sorted(p for p in shipped.glob("/".join(["*"] * depth)) if p.is_dir()):
        rel = source.relative_to(shipped)
        dest = target / rel
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}.", dir=dest.parent))
        try:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            tmp.rename(dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for name in LABEL_FILES if depth == 2 else ():
            if (source.parent / name).is_file() and not (dest.parent / name).exists():
                shutil.copy2(source.parent / name, dest.parent / name)
        seeded.append(str(rel))
    return seeded


def versions(models: Path) -> list[Path]:
    """Every ``<name>/<version>/`` folder holding a ``model.onnx``."""
    if not models.is_dir():
        return []
    return sorted(
        p.parent for p in models.glob("*/*/model.onnx") if not p.parent.name.startswith(".")
    )


def validate(folder: Path, tolerance: float) -> VersionReport:
    """Load and check one version; never raises for a bad model."""
    report = VersionReport(folder.parent.name, folder.name, valid=False)
    try:
        model = load_model(folder, RuntimeOptions.cpu_only())
    except ModelLoadError as exc:
        report.error = str(exc)
        return report
    with model:
        report.family, report.labels = model.family, model.labels
        report.input_size = list(model.input_size)
        report.golden = _check_golden(model, folder, tolerance)
    report.valid = not report.golden.startswith("failed")
    if not report.valid:
        report.error = f"golden image check {report.golden}"
    return report


def _check_golden(model: Any, folder: Path, tolerance: float) -> str:
    image_path, result_path = folder / GOLDEN_IMAGE, folder / GOLDEN_RESULT
    if not (image_path.is_file() and result_path.is_file()):
        return "none"
    try:
        recorded = json.loads(result_path.read_text(encoding="utf-8"))
        expected = recorded["detections"]
        prob, nms_iou = float(recorded["prob_threshold"]), float(recorded["iou_threshold"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"failed: {GOLDEN_RESULT} unreadable ({exc})"
    image = cv2.imread(str(image_path))
    if image is None:
        return f"failed: {GOLDEN_IMAGE} unreadable"
    got = model.detect(image, prob, nms_iou).detections
    if len(got) != len(expected):
        return f"failed: {len(got)} detections, {len(expected)} recorded"
    unmatched = list(got)
    for want in expected:
        box = tuple(want["box"])
        match = next(
            (
                d
                for d in unmatched
                if d.label == want["label"]
                and iou(tuple(d.box.as_list()), box) >= GOLDEN_MIN_IOU
                and abs(d.probability - want["probability"]) <= tolerance
            ),
            None,
        )
        if match is None:
            return (
                f"failed: no match for {want['label']} {want['probability']:.2f} at {want['box']}"
            )
        unmatched.remove(match)
    return "passed"


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What validating ``folder`` depends on: name, size and change time of each of its files and of
    the labels beside it."""
    files = [p for p in folder.iterdir() if p.is_file()]
    files += [folder.parent / n for n in LABEL_FILES if (folder.parent / n).is_file()]
    stats = [(p, p.stat()) for p in files]
    return tuple(sorted((str(p), st.st_size, st.st_mtime_ns) for p, st in stats))


class Inventory:
    """Validation reports of every version under ``models``, keyed ``<name>/<version>``.

    A version is loaded and checked again only when its files (or the tolerance) changed since its
    last check, so a periodic pass over an unchanged volume costs a directory listing.
    """

    def __init__(self, models: Path) -> None:
        self.models = models
        self._checked: dict[Path, tuple[Any, dict[str, Any]]] = {}

    def refresh(self, tolerance: float) -> dict[str, dict[str, Any]]:
        """The current reports; versions new or changed since the last call are validated now."""
        reports: dict[str, dict[str, Any]] = {}
        seen: dict[Path, tuple[Any, dict[str, Any]]] = {}
        for folder in versions(self.models):
            try:
                key = (fingerprint(folder), tolerance)
            except OSError:
                key = None  # changing under our feet: validate now, check again next pass
            cached = self._checked.get(folder)
            if key is not None and cached is not None and cached[0] == key:
                entry = cached[1]
            else:
                entry = self._validate(folder, tolerance)
            seen[folder] = (key, entry)
            reports[f"{folder.parent.name}/{folder.name}"] = entry
        self._checked = seen
        return reports

    @staticmethod
    def _validate(folder: Path, tolerance: float) -> dict[str, Any]:
        report = validate(folder, tolerance)
        if report.valid:
            log.info("model version validated", extra={"model": report.key})
        else:
            log.error("model version invalid", extra={"model": report.key, "error": report.error})
        return {k: v for k, v in asdict(report).items() if k not in ("name", "version")}
