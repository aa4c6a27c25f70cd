"""The ``infer`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.inference.commands import add_infer_arguments, infer_main

from .graphs import constant_model, frame_to_input, write_model_dir, yolov8_output

LABELS = ["scratch", "hole"]
FRAME_BOX = [300, 100, 700, 500]  # in a 1280x720 frame


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    box = frame_to_input(FRAME_BOX, 1280, 720, 640, 640)
    output = yolov8_output([box], [1], [0.8], num_classes=len(LABELS))
    return write_model_dir(tmp_path / "models", constant_model({"output0": output}), LABELS)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "a.png"), np.full((720, 1280, 3), 40, np.uint8))
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, not looked at", encoding="utf-8")
    return folder


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_infer_arguments(parser)
    return parser.parse_args(argv)


def test_json_line_per_image_and_a_non_zero_exit_for_what_cannot_be_read(
    model_dir: Path, images: Path, capsys
) -> None:
    missing = images / "missing.jpg"
    assert infer_main(parse(str(model_dir), str(images), str(missing), "--json")) == 1

    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 1
    assert records[0]["image"] == str(images / "a.png")
    assert records[0]["model"] == "demo/1"
    assert (records[0]["prob_threshold"], records[0]["iou_threshold"]) == (0.5, 0.45)
    [found] = records[0]["detections"]
    assert found["label"] == "hole"
    assert found["probability"] == pytest.approx(0.8)
    assert np.allclose(found["box"], FRAME_BOX, atol=1.0)
    assert f"error: cannot read image {images / 'broken.jpg'}" in err
    assert f"error: cannot read image {missing}" in err
    assert "notes.txt" not in err
    assert "demo/1: prob_threshold 0.5 (default), iou_threshold 0.45 (default)" in err


def test_all_images_read_exit_0(model_dir: Path, images: Path) -> None:
    assert infer_main(parse(str(model_dir), str(images / "a.png"))) == 0


def test_readable_output_and_saved_annotations(
    model_dir: Path, images: Path, tmp_path: Path, capsys
) -> None:
    save = tmp_path / "annotated"
    args = parse(str(model_dir), str(images / "a.png"), "--save", str(save), "--conf", "0.5")

    assert infer_main(args) == 0

    out, _ = capsys.readouterr()
    assert out.startswith(f"{images / 'a.png'}: 1 found")
    assert "hole 80%" in out
    annotated = cv2.imread(str(save / "a.png"))
    assert annotated is not None
    assert (annotated != 40).any()


def test_threshold_removes_detection_and_the_image_still_gets_its_line(
    model_dir: Path, images: Path, capsys
) -> None:
    assert infer_main(parse(str(model_dir), str(images / "a.png"), "--json", "--conf", "0.9")) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["detections"] == []
    assert "prob_threshold 0.9 (given)" in err


def test_model_that_cannot_load_exits_1(tmp_path: Path, images: Path, capsys) -> None:
    assert infer_main(parse(str(tmp_path / "missing" / "1"), str(images))) == 1
    assert "not a model folder" in capsys.readouterr().err


def test_thresholds_are_validated() -> None:
    with pytest.raises(SystemExit):
        parse("m", "x", "--iou", "2")
