"""The ``mfgvision infer`` command: run a model on images and print or save what it finds."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2

from mfgvision.inference.annotate import draw_detections
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.model import Model, load_model
from mfgvision.inference.types import InferenceResult

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``infer`` command's arguments to ``parser``."""
    parser.add_argument("model_dir", help="model version folder: <name>/<version>/")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--json", action="store_true", help="print one JSON line per detection")
    parser.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")
    parser.add_argument("--conf", type=_unit_interval, default=0.25, help="probability threshold")
    parser.add_argument("--iou", type=_unit_interval, default=0.45, help="NMS IoU threshold")


def infer_main(args: argparse.Namespace) -> int:
    """Run the model on every input image.

    Unreadable or missing images are reported on stderr and skipped. Returns 0 when the run
    completed, 1 when the model cannot load or the ``--save`` folder cannot be created.
    """
    try:
        model = load_model(Path(args.model_dir))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in model.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    save_dir = Path(args.save) if args.save else None
    if save_dir:
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"error: cannot create {save_dir}: {exc}", file=sys.stderr)
            return 1
    with model:
        for path in _image_paths(args.inputs):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"error: cannot read image {path}", file=sys.stderr)
                continue
            result = model.detect(image, prob_threshold=args.conf, iou_threshold=args.iou)
            _report(path, result, model, as_json=args.json)
            if save_dir:
                target = save_dir / path.name
                if not cv2.imwrite(str(target), draw_detections(image, result.detections)):
                    print(f"error: cannot write {target}", file=sys.stderr)
    return 0


def _image_paths(inputs: list[str]) -> Iterator[Path]:
    """Files as given; folders expanded to the image files they hold, sorted by name."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            yield path
        else:
            print(f"error: no such file or folder {path}", file=sys.stderr)


def _report(path: Path, result: InferenceResult, model: Model, as_json: bool) -> None:
    if as_json:
        for det in result.detections:
            record = {
                "image": str(path),
                "label": det.label,
                "probability": round(det.probability, 4),
                "box": [round(v, 1) for v in det.box.as_list()],
            }
            print(json.dumps(record))
        return
    ms = sum(result.timings_ms.values())
    found = ", ".join(
        f"{d.label} {d.probability:.0%} [{', '.join(f'{v:.0f}' for v in d.box.as_list())}]"
        for d in result.detections
    )
    print(
        f"{path}: {len(result.detections)} found by {model.name}/{model.version} "
        f"in {ms:.1f} ms{': ' + found if found else ''}"
    )
