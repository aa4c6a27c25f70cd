"""Live frames from the writer: written only while the dashboard watches, from the JPEG bytes already
made for storage (the annotated image, or the camera's own bytes when nothing is drawn)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mfgvision.capture.jpeg import encode_jpeg
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.outcome import Outcome
from mfgvision.cis.rules import RuleBook
from mfgvision.cis.writer import OutcomeWriter
from mfgvision.inference.types import InferenceResult
from mfgvision.store.database import Database
from mfgvision.store.live import (
    WATCH_TTL_S,
    is_watched,
    live_frame_path,
    mark_watched,
    watch_path,
)
from tests.cis.outcomes import OWNER, make_outcome


def run_writer(tmp_path: Path, outcomes: list[Outcome]) -> tuple[Path, Path, PipelineMetrics]:
    """Write ``outcomes`` with live frames on; returns the image and live folders and the metrics."""
    images, live = tmp_path / "data" / "images", tmp_path / "data" / "live"
    db = Database(f"sqlite:///{tmp_path / 'edge.db'}")
    db.create_schema()
    metrics = PipelineMetrics()

    def send(_output: str, _body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        on_sent()

    writer = OutcomeWriter(images, db, send, metrics, OWNER, live_dir=live)
    writer.start()
    for outcome in outcomes:
        assert writer.submit(outcome)
    writer.stop()
    db.close()
    return images, live, metrics


def without_detections(outcome: Outcome, jpeg: bytes) -> Outcome:
    """``outcome`` with nothing detected, from a camera that sent ``jpeg``."""
    empty = InferenceResult([], outcome.frame.width, outcome.frame.height, {"model": 1.0})
    frame = replace(outcome.frame, jpeg=jpeg)
    judgement = RuleBook(outcome.settings).judge([])
    return replace(outcome, frame=frame, image_result=empty, result=empty, judgement=judgement)


def test_the_annotated_image_stored_is_the_live_frame(tmp_path: Path) -> None:
    mark_watched(tmp_path / "data" / "live", OWNER)
    images, live, metrics = run_writer(tmp_path, [make_outcome(1), make_outcome(2)])
    annotated = sorted(images.glob("*-annotated.jpg"))
    assert len(annotated) == 2
    assert live_frame_path(live, OWNER).read_bytes() == annotated[-1].read_bytes()
    assert metrics.summary()["live_frame"]["n"] == 2


def test_a_frame_not_stored_is_shown_with_the_cameras_own_bytes(tmp_path: Path) -> None:
    mark_watched(tmp_path / "data" / "live", OWNER)
    seen = make_outcome(3, store_all_inferences=False)
    camera_jpeg = encode_jpeg(seen.image, 75)
    images, live, metrics = run_writer(tmp_path, [without_detections(seen, camera_jpeg)])
    assert list(images.glob("*.jpg")) == []
    assert metrics.counters["not_stored"] == 1
    assert live_frame_path(live, OWNER).read_bytes() == camera_jpeg


def test_nothing_is_written_while_nobody_watches(tmp_path: Path) -> None:
    live = tmp_path / "data" / "live"
    mark_watched(live, OWNER)
    old = time.time() - WATCH_TTL_S - 5
    os.utime(watch_path(live, OWNER), (old, old))
    assert not is_watched(live, OWNER)
    images, live, metrics = run_writer(tmp_path, [make_outcome(4)])
    assert len(list(images.glob("*-annotated.jpg"))) == 1
    assert not live_frame_path(live, OWNER).exists()
    assert "live_frame" not in metrics.summary()
