"""Builders and waits that tests in several folders share."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Database, records_with_detections
from mfgvision.store.records import InferenceRecord
from mfgvision.store.schema import inference_data

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)


def make_detection(
    label_id: int, label: str, probability: float, box: Box | None = None
) -> Detection:
    """A detection with ``box`` (default a fixed one) in a 640x480 frame."""
    box = box or Box(10.0, 20.0, 110.0, 220.0)
    return Detection(label_id, label, probability, box, box.normalised(640, 480))


def make_record(**fields: Any) -> InferenceRecord:
    """An inference record with a fresh ``unique_id``; ``fields`` replace the defaults."""
    values: dict[str, Any] = {
        "unique_id": str(uuid.uuid4()),
        "created": T0,
        "camera_id": "cam-a",
        "camera_name": "line1-top",
        "model_name": "m",
        "model_version": "1",
        "inferencing_time_ms": 5.0,
        "frame_width": 640,
        "frame_height": 480,
    }
    values.update(fields)
    return InferenceRecord(**values)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def recent(db: Database, limit: int, camera_id: str | None = None) -> list[InferenceRecord]:
    """The newest ``limit`` stored inferences (optionally of one camera), newest first."""
    t = inference_data
    query = select(t).order_by(t.c.created.desc(), t.c.id.desc()).limit(max(limit, 0))
    if camera_id is not None:
        query = query.where(t.c.camera_id == camera_id)
    with db.engine.connect() as conn:
        return records_with_detections(conn, conn.execute(query).all())


def run_coroutine(coro: Any) -> Any:
    """``asyncio.run(coro)`` on a thread of its own: the main thread may already run an event loop
    (the browser tests' Playwright session keeps one for the whole test session)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
