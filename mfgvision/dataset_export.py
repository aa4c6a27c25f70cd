"""``mfgvision export-dataset``: the retraining set as a labelled dataset (YOLO and COCO JSON).

The retraining set is every stored inspection whose frame was kept for retraining (reasons
``interval``, ``uncertain`` and ``drift`` from the CIS's sampler) or that an operator gave feedback
on (reason ``operator``). Each frame is labelled with the model's detections as pre-labels, or with the
operator's boxes where the operator drew them (a false NG: no boxes). Written under ``--out``:

* ``images/<name>.jpg`` and ``labels/<name>.txt`` (``class cx cy w h``, normalised) with
  ``data.yaml`` (``path``, ``train``, ``val``, ``names``), the layout Ultralytics, Azure ML and CVAT
  import;
* ``annotations.coco.json`` (``images``, ``annotations`` with ``bbox`` ``[x, y, w, h]`` in pixels,
  ``categories``), the layout Label Studio and CVAT import;
* ``inspections.jsonl``: per image, the inspection it came from, why it is in the set, and where its
  labels came from.

Class ids are the model's (``detection_data.tag_id``); a class only an operator named follows them.
With ``--upload`` every file goes to the ``images-retraining`` container under
``datasets/<dataset name>/`` (labels beside the images) through the same target as ImageUpload.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from mfgvision.runtime import Paths
from mfgvision.store import queries
from mfgvision.store.database import Database, database_url_from_env, records_with_detections
from mfgvision.store.feedback import Feedback, feedback_for
from mfgvision.store.records import InferenceRecord
from mfgvision.store.schema import inference_data, inspection_feedback

log = logging.getLogger(__name__)

REASONS = ("interval", "uncertain", "drift", "operator")
CONTAINER = "images-retraining"
FORMATS = ("yolo", "coco")


@dataclass(frozen=True)
class Label:
    """One box of an exported frame: class name, class id, normalised ``x1, y1, x2, y2``."""

    name: str
    class_id: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One frame of the dataset."""

    record: InferenceRecord
    image: Path
    reasons: tuple[str, ...]
    labels: tuple[Label, ...]
    source: str  # "model" or "operator"
    feedback: Feedback | None

    @property
    def file_name(self) -> str:
        return f"{self.record.unique_id}.jpg"


@dataclass(frozen=True)
class Selection:
    """Which inspections of the retraining set to export (empty: all)."""

    cameras: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    reasons: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()


@dataclass
class ExportResult:
    """What an export wrote, and what it left out and why."""

    images: int = 0
    boxes: int = 0
    missing_images: int = 0
    classes: list[str] | None = None
    uploaded: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "boxes": self.boxes,
            "missing_images": self.missing_images,
            "classes": self.classes or [],
            "uploaded": self.uploaded,
        }


def retraining_set(
    engine: Engine, selection: Selection
) -> list[tuple[InferenceRecord, Feedback | None]]:
    """The inspections of the retraining set that ``selection`` names, oldest first."""
    t, f = inference_data, inspection_feedback
    query = (
        select(t)
        .outerjoin(f, f.c.unique_id == t.c.unique_id)
        .where(or_(t.c.retrain_reason.is_not(None), f.c.id.is_not(None)))
        .order_by(t.c.created, t.c.id)
    )
    if selection.cameras:
        query = query.where(t.c.camera_id.in_(selection.cameras))
    if selection.since is not None:
        query = query.where(t.c.created >= selection.since)
    if selection.until is not None:
        query = query.where(t.c.created < selection.until)
    with engine.connect() as conn:
        records = records_with_detections(conn, conn.execute(query).all())
    feedback = feedback_for(engine, [r.unique_id for r in records])
    return [(r, feedback.get(r.unique_id)) for r in records]


def class_names(engine: Engine) -> dict[int, str]:
    """The model's class ids and names as stored with its detections."""
    return {class_id: name for name, class_id in queries.label_ids(engine).items()}


def build_samples(
    rows: Iterable[tuple[InferenceRecord, Feedback | None]],
    images_dir: Path,
    known: dict[int, str],
    selection: Selection,
) -> tuple[list[Sample], int, list[str]]:
    """The samples to export, how many were left out for want of their frame, and the class names
    by id (the model's, then those only operators named)."""
    names = _names_by_id(known)
    samples: list[Sample] = []
    missing = 0
    for record, feedback in rows:
        reasons = tuple(
            r for r in (record.retrain_reason, "operator" if feedback else None) if r is not None
        )
        if selection.reasons and not set(reasons) & set(selection.reasons):
            continue
        image = _frame_of(record, images_dir)
        if image is None:
            missing += 1
            continue
        if feedback is not None and feedback.boxes is not None:
            boxes = [(b.label, b.box_norm) for b in feedback.boxes]
            source = "operator"
        else:
            boxes = [(d.label, tuple(d.box_norm.as_list())) for d in record.detections]
            source = "model"
        labels = tuple(Label(name, _class_id(names, name), box) for name, box in boxes)
        if selection.classes and not {lb.name for lb in labels} & set(selection.classes):
            continue
        samples.append(Sample(record, image, reasons, labels, source, feedback))
    return samples, missing, names


def write_dataset(
    samples: Sequence[Sample], names: list[str], out: Path, formats: Sequence[str]
) -> None:
    """Write ``samples`` under ``out`` in each of ``formats`` (``yolo``, ``coco``)."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    for sample in samples:
        shutil.copyfile(sample.image, out / "images" / sample.file_name)
    if "yolo" in formats:
        _write_yolo(samples, names, out)
    if "coco" in formats:
        _write_coco(samples, names, out)
    with (out / "inspections.jsonl").open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps(_about(s), separators=(",", ":")) + "\n")


def upload_dataset(out: Path, dataset_name: str, target: Any) -> int:
    """Every file under ``out`` to the ``images-retraining`` container, under
    ``datasets/<dataset_name>/``; returns how many were stored (identical ones are skipped)."""
    from mfgvision.image_upload.targets import Blob

    stored = 0
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out).as_posix()
        content_type = "image/jpeg" if path.suffix == ".jpg" else "text/plain"
        if path.suffix == ".json" or path.suffix == ".jsonl":
            content_type = "application/json"
        blob = Blob(
            CONTAINER, f"datasets/{dataset_name}/{relative}", path.read_bytes(), content_type
        )
        stored += bool(target.put(blob))
    return stored


def _names_by_id(known: dict[int, str]) -> list[str]:
    """Class names indexed by id; an id the model has but no detection showed is ``class_<id>``."""
    size = max(known, default=-1) + 1
    return [known.get(i, f"class_{i}") for i in range(size)]


def _class_id(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name)


def _frame_of(record: InferenceRecord, images_dir: Path) -> Path | None:
    """The stored frame of ``record`` (the retraining copy, else the raw frame), if still on disk."""
    for name in (record.retrain_image_name, record.raw_image_name):
        if name and (images_dir / name).is_file():
            return images_dir / name
    return None


def _write_yolo(samples: Sequence[Sample], names: list[str], out: Path) -> None:
    labels_dir = out / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    for s in samples:
        lines = []
        for label in s.labels:
            x1, y1, x2, y2 = label.box
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            lines.append(f"{label.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        text = "\n".join(lines) + ("\n" if lines else "")
        (labels_dir / f"{s.record.unique_id}.txt").write_text(text, encoding="utf-8")
    data = {
        "path": ".",
        "train": "images",
        "val": "images",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _write_coco(samples: Sequence[Sample], names: list[str], out: Path) -> None:
    images, annotations = [], []
    for image_id, s in enumerate(samples, start=1):
        width, height = s.record.frame_width, s.record.frame_height
        images.append(
            {
                "id": image_id,
                "file_name": f"images/{s.file_name}",
                "width": width,
                "height": height,
                "date_captured": s.record.created.astimezone(timezone.utc).isoformat(),
            }
        )
        for label in s.labels:
            x1, y1, x2, y2 = label.box
            w, h = (x2 - x1) * width, (y2 - y1) * height
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label.class_id + 1,
                    "bbox": [round(x1 * width, 2), round(y1 * height, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    document = {
        "info": {"description": "mfgvision retraining set"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": "defect"} for i, n in enumerate(names)
        ],
    }
    (out / "annotations.coco.json").write_text(json.dumps(document, indent=1), encoding="utf-8")


def _about(s: Sample) -> dict[str, Any]:
    r = s.record
    return {
        "image": f"images/{s.file_name}",
        "unique_id": r.unique_id,
        "camera_id": r.camera_id,
        "created": r.created.astimezone(timezone.utc).isoformat(),
        "model": f"{r.model_name}/{r.model_version}",
        "verdict": r.verdict,
        "reasons": list(s.reasons),
        "labels_from": s.source,
        "judgement": s.feedback.judgement if s.feedback else None,
        "note": s.feedback.note if s.feedback else None,
    }


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write the dataset into")
    parser.add_argument(
        "--format", choices=(*FORMATS, "both"), default="both", help="label format (default both)"
    )
    parser.add_argument(
        "--camera", action="append", default=[], help="only this camera_id (repeatable)"
    )
    parser.add_argument(
        "--since",
        type=_utc,
        help="only inspections at or after this time (ISO 8601; UTC unless it names a zone)",
    )
    parser.add_argument(
        "--until",
        type=_utc,
        help="only inspections before this time (ISO 8601; UTC unless it names a zone)",
    )
    parser.add_argument(
        "--reason",
        action="append",
        choices=REASONS,
        default=[],
        help="only frames kept for this reason (repeatable)",
    )
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        help="only frames with this class (repeatable)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="the modules' data folder (default MFGVISION_DATA or ./data)"
    )
    parser.add_argument(
        "--upload",
        action="store_true",
        help=f"also upload the dataset to the {CONTAINER} container (MFGVISION_STORAGE_CONNECTION_STRING, else the local blobs folder)",
    )
    parser.add_argument(
        "--name",
        type=_dataset_name,
        help="dataset name under datasets/ when uploading (default: the UTC time now)",
    )


def export_main(args: argparse.Namespace) -> int:
    """Export the retraining set; prints one JSON line with what was written."""
    from mfgvision.image_upload.targets import TargetConfigError, UploadError, create_target

    paths = Paths.from_env()
    data = args.data_dir or paths.data
    paths = Paths(paths.assets, paths.models, data)
    db = Database(database_url_from_env(paths.default_db_path))
    selection = Selection(
        tuple(args.camera), args.since, args.until, tuple(args.reason), tuple(args.classes)
    )
    try:
        rows = retraining_set(db.engine, selection)
        samples, missing, names = build_samples(
            rows, paths.images, class_names(db.engine), selection
        )
    finally:
        db.close()
    formats = FORMATS if args.format == "both" else (args.format,)
    write_dataset(samples, names, args.out, formats)
    result = ExportResult(
        images=len(samples),
        boxes=sum(len(s.labels) for s in samples),
        missing_images=missing,
        classes=names,
    )
    if args.upload:
        name = args.name or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            result.uploaded = upload_dataset(args.out, name, create_target("auto", paths.blobs))
        except (UploadError, TargetConfigError) as exc:
            log.error("dataset not uploaded", extra={"name": name, "error": str(exc)})
            print(f"dataset written to {args.out} but not uploaded: {exc}", flush=True)
            return 1
    log.info("dataset exported", extra={**result.to_json(), "out": str(args.out)})
    print(json.dumps(result.to_json()), flush=True)
    return 0


def _utc(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _dataset_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", text):
        raise argparse.ArgumentTypeError("letters, digits, '_', '.', '-' (up to 100)")
    return text
