"""Labelled image datasets as people export them, read into one shape for evaluation.

Three layouts are read:

* a YOLO folder with ``data.yaml`` (Ultralytics and Roboflow exports): ``names`` (a list or an
  ``{id: name}`` map), a split (``train``/``val``/``test``) naming image folders, lists of folders or
  ``.txt`` files of image paths, relative to ``path`` or to the file; each image's labels in the
  ``labels`` folder beside its ``images`` folder, one ``class cx cy w h`` line per box (normalised);
* this project's own layout: ``images/``, ``labels/`` and ``labels.json`` (the class names);
* COCO JSON (``images``, ``annotations`` with ``bbox`` ``[x, y, w, h]`` in pixels, ``categories``): a
  ``.json`` file, or a folder holding ``_annotations.coco.json`` (Roboflow) or exactly one such file.

Every box is kept normalised to [0, 1] so it can be scaled to the frame as it is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Image files OpenCV reads.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pbm", ".pgm"}
    | {".ppm", ".pxm", ".pnm", ".sr", ".ras", ".jp2", ".exr", ".hdr", ".pic"}
)
SPLITS = ("val", "test", "train")

NormBox = tuple[str, float, float, float, float]
"""``(class name, x1, y1, x2, y2)`` normalised to the image's width and height."""


class DatasetError(ValueError):
    """A dataset that cannot be read; the message says what is wrong, in one line."""


@dataclass(frozen=True)
class Sample:
    """One image and its ground-truth boxes."""

    image: Path
    boxes: tuple[NormBox, ...]


@dataclass(frozen=True)
class Dataset:
    """Class names (in the dataset's order), its samples and where it came from."""

    names: tuple[str, ...]
    samples: tuple[Sample, ...]
    source: str


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_dataset(path: Path, split: str = "val") -> Dataset:
    """The dataset at ``path`` (a folder or a COCO ``.json``), ``split`` of a ``data.yaml``."""
    if path.is_file() and path.suffix.lower() == ".json":
        return _coco(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder or COCO .json file")
    for name in ("data.yaml", "data.yml"):
        if (path / name).is_file():
            return _yolo_yaml(path / name, split)
    if (path / "labels.json").is_file():
        names = _read_json(path / "labels.json")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path / 'labels.json'}: expected a list of class names")
        return _yolo(tuple(names), _folder_images(path / "images"), str(path))
    coco = _coco_file(path)
    if coco is not None:
        return _coco(coco)
    raise DatasetError(
        f"{path}: not a dataset (expected data.yaml, labels.json with images/ and labels/, "
        "or a COCO .json)"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot be read as JSON: {exc}") from None


def _folder_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such image folder")
    return image_files(folder)


def _yolo_yaml(path: Path, split: str) -> Dataset:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot be read as YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise DatasetError(f"{path}: expected a mapping with names and splits")
    names = _yaml_names(spec.get("names"), path)
    root = path.parent / str(spec["path"]) if spec.get("path") else path.parent
    entries = spec.get(split)
    if not entries:
        have = [s for s in SPLITS if spec.get(s)]
        raise DatasetError(f"{path}: no '{split}' split (it has: {', '.join(have) or 'none'})")
    images: list[Path] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        images.extend(_split_images(root, str(entry), path))
    return _yolo(names, images, f"{path} ({split})")


def _yaml_names(names: Any, path: Path) -> tuple[str, ...]:
    if isinstance(names, dict):
        try:
            return tuple(str(names[k]) for k in sorted(names, key=int))
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: names must map class numbers to names") from None
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    raise DatasetError(f"{path}: no class names (a 'names' list or map)")


def _split_images(root: Path, entry: str, path: Path) -> list[Path]:
    """Images of one split entry: a folder, or a ``.txt`` list of image paths."""
    candidates = [root / entry]
    if entry.startswith("../"):  # Roboflow writes paths one level above the export's root
        candidates.append(root / entry[3:])
    for candidate in candidates:
        if candidate.is_dir():
            return image_files(candidate)
        if candidate.is_file() and candidate.suffix == ".txt":
            lines = candidate.read_text(encoding="utf-8").splitlines()
            return [(root / line.strip()).resolve() for line in lines if line.strip()]
    raise DatasetError(f"{path}: split folder {entry!r} not found under {root}")


def _label_file(image: Path) -> Path:
    """``.../images/x.jpg`` -> ``.../labels/x.txt`` (the last ``images`` folder of the path)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _yolo(names: tuple[str, ...], images: list[Path], source: str) -> Dataset:
    samples = tuple(Sample(image, read_yolo_labels(_label_file(image), names)) for image in images)
    return Dataset(names, samples, source)


def read_yolo_labels(path: Path, names: tuple[str, ...]) -> tuple[NormBox, ...]:
    """YOLO ``class cx cy w h`` lines (normalised) as normalised corner boxes; no file, no boxes."""
    if not path.exists():
        return ()
    boxes: list[NormBox] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            c, cx, cy, w, h = line.split()[:5]
            cls, x, y, bw, bh = int(c), float(cx), float(cy), float(w), float(h)
            name = names[cls]
        except (ValueError, IndexError):
            raise DatasetError(f"{path}:{number}: not a 'class cx cy w h' line") from None
        boxes.append((name, x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2))
    return tuple(boxes)


def _coco_file(folder: Path) -> Path | None:
    if (folder / "_annotations.coco.json").is_file():
        return folder / "_annotations.coco.json"
    found = sorted(folder.glob("*.json")) + sorted(folder.glob("annotations/*.json"))
    return found[0] if len(found) == 1 else None


def _coco(path: Path) -> Dataset:
    data = _read_json(path)
    try:
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        images = {int(i["id"]): i for i in data["images"]}
        boxes: dict[int, list[NormBox]] = {i: [] for i in images}
        for ann in data["annotations"]:
            image = images[int(ann["image_id"])]
            w, h = float(image["width"]), float(image["height"])
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            name = categories[int(ann["category_id"])]
            boxes[int(ann["image_id"])].append((name, x / w, y / h, (x + bw) / w, (y + bh) / h))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise DatasetError(
            f"{path}: not COCO detection JSON ({type(exc).__name__}: {exc})"
        ) from None
    used = {box[0] for found in boxes.values() for box in found}
    names = tuple(n for _, n in sorted(categories.items()) if n in used)
    samples = tuple(
        Sample(_coco_image(path.parent, str(images[i]["file_name"])), tuple(boxes[i]))
        for i in sorted(images)
    )
    return Dataset(names, samples, str(path))


def _coco_image(folder: Path, name: str) -> Path:
    """An image named in COCO JSON: beside the file, or in its ``images`` folder."""
    beside = folder / name
    return (
        beside
        if beside.exists() or not (folder / "images" / name).exists()
        else folder / "images" / name
    )
