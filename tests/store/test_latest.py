"""The newest stored frame of a camera, by its image names."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mfgvision.store.images import image_name
from mfgvision.store.latest import camera_prefix, latest_frame, parse_frame_name

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)


def _write(folder: Path, location: str, position: str, when: datetime, kind: str) -> Path:
    path = folder / image_name(location, position, when, kind)  # type: ignore[arg-type]
    path.write_bytes(b"jpeg " + kind.encode())
    return path


def test_the_newest_frame_of_the_camera_wins(tmp_path: Path) -> None:
    _write(tmp_path, "line1", "top", T0, "annotated")
    newest = _write(tmp_path, "line1", "top", T0 + timedelta(seconds=2), "raw")
    _write(tmp_path, "line1", "top", T0 + timedelta(seconds=5), "retrain")  # not a frame kind
    _write(tmp_path, "line1", "side", T0 + timedelta(seconds=9), "raw")  # another camera
    frame = latest_frame(tmp_path, "line1", "top")
    assert frame is not None
    assert frame.path == newest and frame.kind == "raw"
    assert frame.captured_at == T0 + timedelta(seconds=2)


def test_annotated_is_preferred_to_the_raw_image_of_the_same_moment(tmp_path: Path) -> None:
    _write(tmp_path, "line1", "top", T0, "raw")
    annotated = _write(tmp_path, "line1", "top", T0, "annotated")
    frame = latest_frame(tmp_path, "line1", "top")
    assert frame is not None and frame.path == annotated and frame.kind == "annotated"


def test_names_are_matched_as_the_camera_writes_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "Line 1", "top", T0, "raw")
    assert path.name.startswith("Line_1-top-")
    frame = latest_frame(tmp_path, "Line 1", "top")
    assert frame is not None and frame.path == path


def test_links_folders_and_other_names_are_not_frames(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jpg"
    target.write_bytes(b"x")
    os.symlink(target, tmp_path / image_name("line1", "top", T0, "raw"))
    (tmp_path / image_name("line1", "top", T0 - timedelta(seconds=1), "annotated")).mkdir()
    (tmp_path / "line1-top-notastamp-raw.jpg").write_bytes(b"x")
    assert latest_frame(tmp_path, "line1", "top") is None
    assert latest_frame(tmp_path / "missing", "line1", "top") is None
    assert latest_frame(tmp_path, " ", "top") is None


def test_parse_frame_name_refuses_anything_but_this_cameras_frames() -> None:
    prefix = camera_prefix("line1", "top")
    name = image_name("line1", "top", T0, "annotated")
    assert parse_frame_name(name, prefix) == (T0, "annotated")
    for other in (
        image_name("line1", "side", T0, "raw"),
        image_name("line1", "top", T0, "retrain"),
        "../" + name,
        name + "/x",
        prefix + "20261399T000000000000-raw.jpg",
    ):
        assert parse_frame_name(other, prefix) is None
