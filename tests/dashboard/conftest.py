"""Fixtures for dashboard tests: a SQLite database seeded with records, and an image folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mfgvision.dashboard.app import create_app
from mfgvision.inference.types import Detection
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord
from mfgvision.web.auth import AuthConfig
from tests.factories import make_detection, make_record

JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"fake jpeg body" * 20 + b"\xff\xd9"


def detection(label_id: int, label: str, p: float) -> Detection:
    """A detection with a fixed box in a 640x480 frame."""
    return make_detection(label_id, label, p)


def record(
    camera: str,
    created: datetime,
    *detections: Detection,
    annotated: str | None = None,
    raw: str | None = None,
) -> InferenceRecord:
    """An inference record of ``camera`` with the given detections and image names."""
    return make_record(
        created=created,
        camera_id=camera,
        camera_name=f"Line {camera[-1]}",
        model_name="defects",
        model_version="7",
        inferencing_time_ms=12.345,
        detections=list(detections),
        annotated_image_name=annotated,
        raw_image_name=raw,
    )


@pytest.fixture
def jpeg_bytes() -> bytes:
    """The content of every image file in ``images_dir``."""
    return JPEG_BYTES


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """An image folder holding the files the seeded records name."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("cam1-new-annotated.jpg", "cam2-new-raw.jpg"):
        (folder / name).write_bytes(JPEG_BYTES)
    return folder


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """An empty SQLite database with its schema."""
    database = Database(f"sqlite:///{tmp_path / 'edge.db'}")
    database.create_schema()
    yield database
    database.close()


@pytest.fixture
def seeded(db: Database) -> list[InferenceRecord]:
    """Three cameras: cam1 NG with an annotated image, cam2 OK with only a raw image on disk,
    cam3 OK with no image file; some rows older than an hour."""
    now = datetime.now(timezone.utc)
    records = [
        record("cam1", now - timedelta(hours=3), detection(0, "scratch", 0.8)),
        record("cam1", now - timedelta(minutes=30)),
        record(
            "cam1",
            now - timedelta(seconds=5),
            detection(1, "hole", 0.5),
            detection(0, "scratch", 0.9312),
            annotated="cam1-new-annotated.jpg",
            raw="cam1-new-raw.jpg",
        ),
        record("cam2", now - timedelta(hours=2), detection(2, "spot", 0.7)),
        record("cam2", now - timedelta(seconds=3), annotated="gone.jpg", raw="cam2-new-raw.jpg"),
        record("cam3", now - timedelta(seconds=1), annotated="missing.jpg"),
    ]
    db.write(records)
    return records


@pytest.fixture
def app(db: Database, images_dir: Path) -> Flask:
    """The dashboard app on the test database and image folder."""
    flask_app = create_app(db, images_dir, title="Plant 7", auth=AuthConfig())
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the dashboard app."""
    return app.test_client()
