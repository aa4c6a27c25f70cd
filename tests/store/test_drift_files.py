"""The drift files the dashboard reads: a bounded history that survives a torn line, the view, and
only the camera's own frames served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfgvision.store.drift import (
    HISTORY_FILE,
    HistoryFile,
    frame_path,
    read_history,
    read_view,
    view_path,
)

CAMERA = "line1-top"


def history(folder: Path, keep: int = 8) -> HistoryFile:
    return HistoryFile(folder / CAMERA / HISTORY_FILE, keep=keep)


def test_the_history_keeps_the_newest_lines_and_stays_bounded(tmp_path: Path) -> None:
    h = history(tmp_path, keep=8)
    sizes = []
    for i in range(50):
        h.append({"at": f"t{i}", "figures": {"shift_px": float(i)}})
        sizes.append(len((tmp_path / CAMERA / HISTORY_FILE).read_bytes().splitlines()))
    assert max(sizes) <= 8 + 2 and sizes[-1] >= 8
    points = read_history(tmp_path, CAMERA)
    assert points[-1] == {"at": "t49", "figures": {"shift_px": 49.0}}
    assert [p["at"] for p in points] == [f"t{i}" for i in range(50 - len(points), 50)]
    assert [p["at"] for p in read_history(tmp_path, CAMERA, limit=3)] == ["t47", "t48", "t49"]


def test_a_line_cut_short_is_skipped_and_ended_by_the_next_writer(tmp_path: Path) -> None:
    history(tmp_path).append({"at": "t0"})
    path = tmp_path / CAMERA / HISTORY_FILE
    with path.open("ab") as fh:  # a crash in the middle of a line
        fh.write(b'{"at": "t1", "figu')
    assert [p["at"] for p in read_history(tmp_path, CAMERA)] == ["t0"]
    history(tmp_path).append({"at": "t2"})  # the next start of the CIS
    assert [p["at"] for p in read_history(tmp_path, CAMERA)] == ["t0", "t2"]


def test_a_point_json_cannot_hold_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        history(tmp_path).append({"figures": {"shift_px": float("nan")}})
    assert read_history(tmp_path, CAMERA) == []


def test_nothing_to_read_is_empty_not_an_error(tmp_path: Path) -> None:
    assert read_history(tmp_path, CAMERA) == []
    assert read_history(tmp_path, "../etc") == []
    assert read_view(tmp_path, CAMERA) is None


def test_the_view_is_read_only_from_a_regular_json_object(tmp_path: Path) -> None:
    view_path(tmp_path, CAMERA).write_text(json.dumps({"checks": 3}))
    assert read_view(tmp_path, CAMERA) == {"checks": 3}
    view_path(tmp_path, "cam2").write_text("[1, 2]")
    assert read_view(tmp_path, "cam2") is None
    view_path(tmp_path, "cam3").symlink_to(view_path(tmp_path, CAMERA))
    assert read_view(tmp_path, "cam3") is None


@pytest.mark.parametrize(
    "name",
    [
        "reference.json",
        "state.json",
        "history.jsonl",
        "../line1-top.json",
        "reference-20260301T070211000000.jpg",
        "current-2026.jpg",
        "escape-20260301T070211000000.png",
        "current-20260301T070211000001.jpg",  # a link to a file outside
        "reference-20260301T070211000001.png",  # a folder
    ],
)
def test_only_the_cameras_own_frames_are_served(tmp_path: Path, name: str) -> None:
    folder = tmp_path / CAMERA
    folder.mkdir()
    for own in ("reference.json", "state.json", "history.jsonl"):
        (folder / own).write_text("{}")
    (tmp_path / "secret.jpg").write_bytes(b"SECRET")
    (folder / "current-20260301T070211000001.jpg").symlink_to(tmp_path / "secret.jpg")
    (folder / "reference-20260301T070211000001.png").mkdir()
    assert frame_path(tmp_path, CAMERA, name) is None


def test_the_cameras_frames_are_found(tmp_path: Path) -> None:
    folder = tmp_path / CAMERA
    folder.mkdir()
    for name in ("reference-20260301T070211000000.png", "current-20260301T083005123456.jpg"):
        (folder / name).write_bytes(b"frame")
        assert frame_path(tmp_path, CAMERA, name) == folder / name
    assert frame_path(tmp_path, "other", "reference-20260301T070211000000.png") is None
