"""Image naming, JPEG encoding and atomic writes."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.capture.jpeg import encode_jpeg
from mfgvision.store import images
from mfgvision.store.images import image_name, write_atomic

WHEN = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)


def test_image_name_format() -> None:
    name = image_name("plant1", "line2", WHEN, "annotated")
    assert name == "plant1-line2-20260301T083015123456-annotated.jpg"


def test_image_name_uses_utc() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=-6)))
    assert image_name("a", "b", local, "raw") == image_name("a", "b", WHEN, "raw")


def test_image_name_sanitises_parts() -> None:
    name = image_name("Plant 1/../ü", ".cam:2\x00", WHEN, "retrain")
    assert name == "Plant_1__.__-_cam_2_-20260301T083015123456-retrain.jpg"
    assert ".." not in image_name("a...b", "v1.2", WHEN, "raw")
    assert len(image_name("x" * 500, "y" * 500, WHEN, "raw")) < 255


def test_blob_names_use_the_same_sanitised_parts_as_file_names() -> None:
    name = image_name("Line 1", "top/left", WHEN, "raw")
    blob = images.blob_name("Line 1", "top/left", WHEN, name)
    assert blob == f"Line_1/top_left/2026/03/01/{name}"
    assert name.startswith("Line_1-top_left-")
    later = WHEN.astimezone(timezone(timedelta(hours=-10)))  # 2026-02-28 locally
    assert images.blob_name("a", "b", later, "x.jpg") == "a/b/2026/03/01/x.jpg"
    with pytest.raises(ValueError, match="timezone-aware"):
        images.blob_name("a", "b", WHEN.replace(tzinfo=None), "x.jpg")


def test_image_names_sort_by_time() -> None:
    times = [WHEN + timedelta(microseconds=step) for step in (0, 1, 999_999, 10**6, 86_400 * 10**6)]
    times += [WHEN - timedelta(days=400), WHEN + timedelta(days=3000)]
    names = [image_name("loc", "pos", t, "raw") for t in times]
    assert sorted(names) == [image_name("loc", "pos", t, "raw") for t in sorted(times)]


@pytest.mark.parametrize(
    ("location", "when", "kind", "message"),
    [
        ("loc", WHEN, "thumbnail", "unknown image kind"),
        ("loc", WHEN.replace(tzinfo=None), "raw", "timezone-aware"),
        ("  ", WHEN, "raw", "empty"),
    ],
)
def test_image_name_rejects_bad_input(location: str, when: datetime, kind, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_name(location, "pos", when, kind)


def test_encode_jpeg_round_trip() -> None:
    image = np.full((48, 64, 3), (10, 120, 240), dtype=np.uint8)
    data = encode_jpeg(image, quality=95)
    assert data[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).max() <= 3


def test_encode_jpeg_rejects_bad_quality() -> None:
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(np.zeros((4, 4), np.uint8), quality=101)


def test_write_atomic_writes_whole_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.jpg"
    payload = os.urandom(300_000)
    write_atomic(target, payload)
    write_atomic(target, payload[::-1])
    assert target.read_bytes() == payload[::-1]
    assert os.listdir(tmp_path) == ["a.jpg"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_atomic_keeps_old_file_when_write_fails_midway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.jpg"
    target.write_bytes(b"old complete image")
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd: int, data) -> int:
        """Write half of the first chunk, then fail as a full disk would."""
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.os, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"n" * 100_000)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert target.read_bytes() == b"old complete image"
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_write_atomic_failure_leaves_no_file_when_none_existed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(images.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_atomic(tmp_path / "new.jpg", b"data")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
