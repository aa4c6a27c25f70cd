"""Datasets as people export them: YOLO with data.yaml (Ultralytics, Roboflow), our own layout,
COCO JSON; and a clear one-line error for what is not a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.datasets import DatasetError, load_dataset

NAMES = ["scratch", "hole"]
SIZE = (1280, 720)
#: Per image: (class name, x1, y1, x2, y2) in pixels.
BOXES = {
    "a": [("hole", 300.0, 100.0, 700.0, 500.0)],
    "b": [("hole", 900.0, 100.0, 1200.0, 400.0), ("scratch", 100.0, 100.0, 200.0, 200.0)],
}


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((SIZE[1], SIZE[0], 3), 40, np.uint8))


def _yolo_lines(boxes: list[tuple[str, float, float, float, float]]) -> str:
    w, h = SIZE
    return "\n".join(
        f"{NAMES.index(n)} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
        for n, x1, y1, x2, y2 in boxes
    )


def write_own_layout(root: Path) -> Path:
    (root / "labels").mkdir(parents=True)
    (root / "labels.json").write_text(json.dumps(NAMES))
    for stem, boxes in BOXES.items():
        _image(root / "images" / f"{stem}.jpeg")
        (root / "labels" / f"{stem}.txt").write_text(_yolo_lines(boxes))
    return root


def write_roboflow_yolo(root: Path) -> Path:
    """As Roboflow exports YOLOv8: data.yaml with ``../valid/images`` and a names list."""
    for split in ("train", "valid"):
        for stem, boxes in BOXES.items():
            _image(root / split / "images" / f"{stem}.png")
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            (root / split / "labels" / f"{stem}.txt").write_text(_yolo_lines(boxes))
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['scratch', 'hole']\n"
    )
    return root


def write_ultralytics_yolo(root: Path) -> Path:
    """As Ultralytics lays it out: ``path`` plus ``images/val``, names as a map."""
    for stem, boxes in BOXES.items():
        _image(root / "data" / "images" / "val" / f"{stem}.jpg")
        (root / "data" / "labels" / "val").mkdir(parents=True, exist_ok=True)
        (root / "data" / "labels" / "val" / f"{stem}.txt").write_text(_yolo_lines(boxes))
    (root / "data.yaml").write_text(
        "path: data\nval: images/val\nnames:\n  0: scratch\n  1: hole\n"
    )
    return root


def write_coco(root: Path) -> Path:
    """As Roboflow exports COCO: ``_annotations.coco.json`` beside the images, a supercategory."""
    categories = [{"id": 0, "name": "defects"}] + [
        {"id": i + 1, "name": n, "supercategory": "defects"} for i, n in enumerate(NAMES)
    ]
    images, annotations = [], []
    for i, (stem, boxes) in enumerate(BOXES.items()):
        _image(root / f"{stem}.jpg")
        images.append({"id": i, "file_name": f"{stem}.jpg", "width": SIZE[0], "height": SIZE[1]})
        for n, x1, y1, x2, y2 in boxes:
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": i,
                    "category_id": NAMES.index(n) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
            )
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (root / "_annotations.coco.json").write_text(json.dumps(coco))
    return root


LAYOUTS = {
    "own": write_own_layout,
    "roboflow-yolo": write_roboflow_yolo,
    "ultralytics-yolo": write_ultralytics_yolo,
    "coco": write_coco,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_reads_the_same_boxes(tmp_path: Path, layout: str) -> None:
    dataset = load_dataset(LAYOUTS[layout](tmp_path / layout))
    assert sorted(dataset.names) == sorted(NAMES)
    assert [s.image.stem for s in dataset.samples] == ["a", "b"]
    w, h = SIZE
    for sample in dataset.samples:
        got = sorted((n, x1 * w, y1 * h, x2 * w, y2 * h) for n, x1, y1, x2, y2 in sample.boxes)
        expected = sorted(BOXES[sample.image.stem])
        assert [g[0] for g in got] == [e[0] for e in expected]
        assert np.allclose([g[1:] for g in got], [e[1:] for e in expected], atol=1e-3)


def test_a_missing_split_names_the_splits_there_are(tmp_path: Path) -> None:
    root = write_roboflow_yolo(tmp_path / "ds")
    with pytest.raises(DatasetError, match="no 'test' split \\(it has: val, train\\)"):
        load_dataset(root, "test")
    assert [s.image.stem for s in load_dataset(root, "train").samples] == ["a", "b"]


def test_what_is_not_a_dataset_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for path, message in (
        (tmp_path / "nowhere", "no such dataset folder"),
        (tmp_path / "empty", "not a dataset"),
    ):
        with pytest.raises(DatasetError, match=message) as caught:
            load_dataset(path)
        assert "\n" not in str(caught.value)
    root = write_own_layout(tmp_path / "bad")
    (root / "labels" / "a.txt").write_text("1 0.5 nonsense\n")
    with pytest.raises(DatasetError, match=r"a\.txt:1: not a 'class cx cy w h' line"):
        load_dataset(root)
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match="cannot be read as JSON"):
        load_dataset(tmp_path / "broken.json")
