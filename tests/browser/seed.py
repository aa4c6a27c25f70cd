"""Realistic dashboard data: hours of inspections per camera, synthetic part images with their
defect boxes, and camera status files, as the CIS would leave them."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from mfgvision.inference.annotate import draw_detections
from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Database
from mfgvision.store.images import image_name
from mfgvision.store.records import InferenceRecord
from mfgvision.store.status import write_status
from mfgvision.synthetic import CLASS_NAMES, generate_sample, sample_rng

FRAME_W, FRAME_H = 800, 450
# The settings the seeded inspections were made with: every seeded probability is above it.
PROB_THRESHOLD = 0.5
SETTINGS_VERSION = 4


@dataclass(frozen=True)
class Frame:
    jpeg: bytes
    annotated: bytes
    detections: list[Detection]


def frame_pool(count: int, seed: int = 7, min_ok: int = 2) -> list[Frame]:
    """Synthetic conveyor frames with their ground-truth defects as detections; at least
    ``min_ok`` of them show no defect."""
    rng = random.Random(seed)
    frames: list[Frame] = []
    i = 0
    while len(frames) < count or sum(1 for f in frames if not f.detections) < min_ok:
        i += 1
        image, boxes = generate_sample(sample_rng(seed, i), (FRAME_W, FRAME_H))
        if len(frames) >= count and boxes:
            continue
        detections = [
            Detection(
                cls,
                CLASS_NAMES[cls],
                round(rng.uniform(0.62, 0.97), 4),
                Box(x1, y1, x2, y2),
                Box(x1, y1, x2, y2).normalised(FRAME_W, FRAME_H),
            )
            for cls, x1, y1, x2, y2 in boxes
        ]
        ok_raw, raw = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
        annotated = draw_detections(np.ascontiguousarray(image), detections)
        ok_ann, ann = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 88])
        assert ok_raw and ok_ann
        frames.append(Frame(raw.tobytes(), ann.tobytes(), detections))
    return frames


def seed_cameras(
    db: Database,
    images_dir: Path,
    status_dir: Path | None,
    cameras: list[tuple[str, str, str]],
    pool: list[Frame],
    hours: float = 10.0,
    per_minute: float = 4.0,
    with_images: int = 60,
    now: datetime | None = None,
    seed: int = 11,
) -> list[InferenceRecord]:
    """Rows for each ``(camera_id, location, position)`` over the last ``hours``.

    The newest ``with_images`` rows of each camera get raw and annotated image files taken from
    ``pool``; older rows reference no image. A status file per camera says it is running.
    """
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    images_dir.mkdir(parents=True, exist_ok=True)
    records: list[InferenceRecord] = []
    for index, (camera_id, location, position) in enumerate(cameras):
        count = int(hours * 60 * per_minute)
        step = timedelta(minutes=1 / per_minute)
        base_ms = 24.0 + 6 * index
        ng_rate = 0.06 + 0.03 * index
        for i in range(count):
            created = now - step * (count - i) + timedelta(seconds=rng.uniform(-2, 2))
            newest = count - i <= with_images
            if newest:
                wanted_ng = rng.random() < ng_rate * 1.5 or (i == count - 1 and index % 2 == 0)
                choices = [f for f in pool if bool(f.detections) == wanted_ng] or pool
                frame = choices[(i + index * 3) % len(choices)]
                detections = frame.detections
            else:
                frame = None
                detections = []
                if rng.random() < ng_rate:
                    cls = rng.choices(range(len(CLASS_NAMES)), weights=(5, 2, 3))[0]
                    box = Box(100.0, 80.0, 180.0, 150.0)
                    detections = [
                        Detection(
                            cls,
                            CLASS_NAMES[cls],
                            rng.uniform(0.55, 0.97),
                            box,
                            box.normalised(FRAME_W, FRAME_H),
                        )
                    ]
            record = InferenceRecord(
                unique_id=str(uuid.uuid4()),
                created=created,
                camera_id=camera_id,
                camera_name=f"{location}-{position}",
                model_name="demo-defects",
                model_version="1",
                inferencing_time_ms=max(5.0, rng.gauss(base_ms, 2.5))
                + (18.0 if rng.random() < 0.01 else 0.0),
                frame_width=FRAME_W,
                frame_height=FRAME_H,
                detections=list(detections),
                prob_threshold=PROB_THRESHOLD,
                settings_version=SETTINGS_VERSION,
            )
            if frame is not None:
                raw_name = image_name(location, position, created, "raw")
                ann_name = image_name(location, position, created, "annotated")
                (images_dir / raw_name).write_bytes(frame.jpeg)
                (images_dir / ann_name).write_bytes(frame.annotated)
                record.raw_image_name, record.annotated_image_name = raw_name, ann_name
            records.append(record)
        if status_dir is not None:
            write_running_status(status_dir, camera_id, f"CIS{index + 1}", 4.0)
    records.sort(key=lambda r: r.created)
    for start in range(0, len(records), 2000):
        db.write(records[start : start + 2000])
    return records


def write_running_status(
    status_dir: Path,
    camera_id: str,
    module_id: str,
    fps: float,
    state: str = "running",
    error: str | None = None,
) -> None:
    """A status file as a CIS module in ``state`` writes it."""
    write_status(
        status_dir,
        camera_id,
        module_id,
        {
            "status": {
                "state": state,
                "fps": fps,
                "model": {"name": "demo-defects", "version": "1", "serving": "demo-defects/1"},
                "last_error": error,
            },
            "config": {"applied_version": 2, "error": None},
        },
    )
