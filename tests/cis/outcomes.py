"""Outcomes as the inference thread hands them to the writer, and a writer process that is killed.

``python -m tests.cis.outcomes <data_dir> <db_url> <count> [camera_id ...]`` queues ``count``
outcomes (of the cameras named, in turn; else of ``cam-w``), starts a writer owned by ``cam-w`` and
SIGKILLs itself when the writer hands its first message to the hub: after the rows were committed,
before the rest was announced.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mfgvision.capture.base import Frame
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.outcome import Outcome
from mfgvision.cis.rules import RuleBook
from mfgvision.cis.writer import OutcomeWriter
from mfgvision.inference.types import InferenceResult
from mfgvision.settings import CisSettings
from mfgvision.store.database import Database
from tests.factories import make_detection

OWNER = "cam-w"
W, H = 640, 480


def make_outcome(seq: int, camera_id: str = OWNER, **settings: Any) -> Outcome:
    """One inferred frame with one detection, as camera ``camera_id`` at ``Line 1``/``top``."""
    s = CisSettings(
        camera_id=camera_id, camera_location="Line 1", retrain_interval_s=3600, **settings
    )
    image = np.full((H, W, 3), seq % 255, dtype=np.uint8)
    frame = Frame(seq, datetime.now(timezone.utc), f"f{seq}.jpg", W, H, image=image)
    result = InferenceResult([make_detection(0, "scratch", 0.9)], W, H, {"model": 1.0})
    return Outcome(
        unique_id=str(uuid.uuid4()),
        frame=frame,
        image=image,
        image_result=result,
        result=result,
        settings=s,
        model_name="m",
        model_version="1",
        retrain=None,
        inferred_at=0.0,
        judgement=RuleBook(s).judge(result.detections),
    )


def nothing_found(outcome: Outcome) -> Outcome:
    """``outcome`` as if the model had found nothing in its frame, judged by its rules."""
    empty = InferenceResult([], W, H, {"model": 1.0})
    judgement = RuleBook(outcome.settings).judge([])
    return replace(outcome, image_result=empty, result=empty, judgement=judgement)


def main(data_dir: Path, db_url: str, count: int, cameras: list[str]) -> None:
    def die(_output: str, _body: dict[str, Any], _on_sent: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    writer = OutcomeWriter(data_dir / "images", Database(db_url), die, PipelineMetrics(), OWNER)
    for i in range(count):
        writer.submit(make_outcome(i, cameras[i % len(cameras)]))
    writer.start()
    writer.stop(timeout=60)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:] or [OWNER])
