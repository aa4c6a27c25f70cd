"""The ``mfgvision infer`` command: run a model on images and print or save what it finds."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2

from mfgvision.datasets import image_files
from mfgvision.inference.annotate import draw_detections
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.model import Model, load_model
from mfgvision.inference.types import InferenceResult


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``infer`` command's arguments to ``parser``."""
    parser.add_argument("model_dir", help="model version folder: <name>/<version>/")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line per image: its detections (an empty list when none) and the "
        "thresholds used",
    )
    parser.add_argument("--save", metavar="DIR", help="write annotated copies of the images here")
    parser.add_argument(
        "--conf",
        type=_unit_interval,
        default=None,
        help="probability threshold (default: the model card's prob_threshold, else 0.5, as the "
        "CIS's default)",
    )
    parser.add_argument(
        "--iou",
        type=_unit_interval,
        default=None,
        help="NMS IoU threshold (default: the model card's iou_threshold, else 0.45)",
    )


def infer_main(args: argparse.Namespace) -> int:
    """Run the model on every input image and say which thresholds it used (on stderr).

    A missing or unreadable image, or an annotated copy that cannot be written, is reported on
    stderr in one line and the run goes on. Returns 0 when every image was inferred, 1 otherwise
    (also when the model cannot load or the ``--save`` folder cannot be created).
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
    prob, iou, said = model.thresholds(args.conf, args.iou)
    print(f"{model.name}/{model.version}: {said}", file=sys.stderr)
    failed = 0
    with model:
        for path in _image_paths(args.inputs):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if image is None:
                print(f"error: cannot read image {path}", file=sys.stderr)
                failed += 1
                continue
            result = model.detect(image, prob_threshold=prob, iou_threshold=iou)
            _report(path, result, model, (prob, iou), as_json=args.json)
            if save_dir:
                target = save_dir / path.name
                if not cv2.imwrite(str(target), draw_detections(image, result.detections)):
                    print(f"error: cannot write {target}", file=sys.stderr)
                    failed += 1
    return 1 if failed else 0


def _image_paths(inputs: list[str]) -> Iterator[Path]:
    """Files as given (missing ones too, so they are reported); folders expanded to the image
    files they hold, sorted by name."""
    for item in inputs:
        path = Path(item)
        yield from image_files(path) if path.is_dir() else [path]


def _report(
    path: Path,
    result: InferenceResult,
    model: Model,
    thresholds: tuple[float, float],
    as_json: bool,
) -> None:
    if as_json:
        detections = [
            {
                "label": det.label,
                "probability": round(det.probability, 4),
                "box": [round(v, 1) for v in det.box.as_list()],
            }
            for det in result.detections
        ]
        record = {
            "image": str(path),
            "model": f"{model.name}/{model.version}",
            "prob_threshold": thresholds[0],
            "iou_threshold": thresholds[1],
            "detections": detections,
        }
        print(json.dumps(record))
        return
    ms = result.model_ms
    found = ", ".join(
        f"{d.label} {d.probability:.0%} [{', '.join(f'{v:.0f}' for v in d.box.as_list())}]"
        for d in result.detections
    )
    print(
        f"{path}: {len(result.detections)} found by {model.name}/{model.version} "
        f"in {ms:.1f} ms{': ' + found if found else ''}"
    )
