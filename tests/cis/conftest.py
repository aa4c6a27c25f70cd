"""A folder camera and a constant-output YOLOv8 model whose detections every CIS test knows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from tests.inference.graphs import constant_model, frame_to_input, write_model_dir, yolov8_output

LABELS = ["scratch", "hole", "spot"]
FRAME_W, FRAME_H = 1280, 720
INPUT = 320
# Boxes in original-frame pixels the model will report, with their classes and scores.
FRAME_BOXES = [[100.0, 80.0, 300.0, 200.0], [700.0, 400.0, 900.0, 650.0]]
CLASSES = [0, 1]
SCORES = [0.9, 0.7]
# The module ``cam``'s ``inference`` output goes upstream, where the tests read it.
UPSTREAM_ROUTES = [parse_route("up", "FROM /messages/modules/cam/outputs/inference INTO $upstream")]


def yolo_model_bytes() -> bytes:
    boxes = [frame_to_input(b, FRAME_W, FRAME_H, INPUT, INPUT) for b in FRAME_BOXES]
    out = yolov8_output(boxes, CLASSES, SCORES, len(LABELS), rows=2100)
    return constant_model({"output0": out}, input_shape=(1, 3, INPUT, INPUT)).SerializeToString()


def write_const_model(root: Path) -> Path:
    """The constant model as ``const/1`` under ``root``."""
    write_model_dir(root, yolo_model_bytes(), LABELS, name="const", version="1")
    return root


def write_frames(folder: Path) -> Path:
    """Four noise frames of the size the model's boxes are given in."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 255, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"f{i}.jpg"), img)
    return folder


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return write_const_model(tmp_path / "models")


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    return write_frames(tmp_path / "frames")


@dataclass
class RunningCis:
    """A started CIS module ``cam``, its broker and a reader of its database."""

    broker: InProcessBroker
    cis: CisService
    reader: Database


@pytest.fixture
def start_cis(
    tmp_path: Path, models_dir: Path, frames_dir: Path
) -> Iterator[Callable[[dict[str, Any]], RunningCis]]:
    """Start a CIS module ``cam`` on the folder camera with the constant model (20 fps), its
    ``inference`` output routed upstream; ``desired`` adds to or overrides those settings. The
    module is stopped and the reader closed after the test."""
    started: list[RunningCis] = []

    def start(desired: dict[str, Any]) -> RunningCis:
        paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
        broker = InProcessBroker(UPSTREAM_ROUTES)
        db_url = f"sqlite:///{tmp_path / 'data' / 'cis.db'}"
        settings = {
            "camera_type": "folder",
            "camera_uri": str(frames_dir),
            "camera_fps": 20,
            "model_name": "const",
            "model_version": "1",
            **desired,
        }
        cis = CisService(broker.hub("cam", settings), paths, Database(db_url), report_every_s=0.2)
        cis.start()
        running = RunningCis(broker, cis, Database(db_url))
        started.append(running)
        return running

    yield start
    for running in started:
        running.cis.stop()
        running.reader.close()
