"""Images and ``imageUpload`` messages as the CIS makes them, plus the Azurite fixture."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mfgvision.capture.jpeg import encode_jpeg
from mfgvision.cis.messages import upload_message
from mfgvision.store.images import image_name, write_atomic
from tests import factories
from tests.services import azurite  # noqa: F401  (fixture)

T0 = datetime(2026, 3, 1, 8, 30, 15, tzinfo=timezone.utc)


class ImageMaker:
    """Writes distinct JPEG files into ``images_dir`` and returns their upload messages."""

    def __init__(self, images_dir: Path, location: str) -> None:
        self.images_dir = images_dir
        self.location = location
        self.count = 0
        self.rng = np.random.default_rng(7)
        images_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, kind: str = "raw") -> dict[str, Any]:
        when = T0 + timedelta(seconds=self.count)
        self.count += 1
        name = image_name(self.location, "top", when, kind)  # type: ignore[arg-type]
        pixels = self.rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        path = self.images_dir / name
        write_atomic(path, encode_jpeg(pixels, 90))
        record = factories.make_record(
            created=when,
            camera_id="cam-1",
            camera_name=f"{self.location}-top",
            model_name="demo-defects",
            model_version="1",
            inferencing_time_ms=3.0,
            frame_width=64,
            frame_height=48,
        )
        return upload_message(kind, name, str(path), record, self.location, "top")


@pytest.fixture
def make_image(tmp_path: Path) -> ImageMaker:
    """Each test gets its own location, so its blob names never meet another test's."""
    return ImageMaker(tmp_path / "data" / "images", f"loc{uuid.uuid4().hex[:10]}")


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    """``tests.factories.wait_for`` with room for the storage emulator's slower answers."""
    return factories.wait_for(check, timeout)
