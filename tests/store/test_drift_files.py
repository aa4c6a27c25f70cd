"""The drift files: a bounded history that survives a torn line, the view, only the camera's own
frames served, and the reference and checked frames the CIS keeps."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mfgvision.store.drift import (
    HISTORY_FILE,
    DriftStore,
    HistoryFile,
    frame_path,
    read_history,
    read_view,
    reference_name,
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


def test_a_reference_replaces_the_previous_one_and_is_served(tmp_path: Path) -> None:
    store = DriftStore(tmp_path, CAMERA)
    first, second = (
        reference_name(datetime(2026, 3, 1, 7, m, tzinfo=timezone.utc)) for m in (0, 1)
    )
    store.save_reference(b"PNG1", {"image": first})
    store.save_reference(b"PNG2", {"image": second, "stats": {}})
    assert store.load_reference(lambda about, png: (about, png)) == (
        {"image": second, "stats": {}},
        b"PNG2",
    )
    assert sorted(p.name for p in store.folder.glob("*.png")) == [second]
    assert frame_path(tmp_path, CAMERA, second) == store.folder / second


def test_a_reference_that_cannot_be_read_or_decoded_is_none(tmp_path: Path) -> None:
    store = DriftStore(tmp_path, CAMERA)
    assert store.load_reference(lambda about, png: png) is None  # none saved
    name = reference_name(datetime(2026, 3, 1, tzinfo=timezone.utc))
    store.save_reference(b"PNG", {"image": name})

    def undecodable(about: dict[str, Any], png: bytes) -> bytes:
        raise ValueError(f"{about['image']} is not an image")

    assert store.load_reference(undecodable) is None
    (store.folder / name).unlink()
    assert store.load_reference(lambda about, png: png) is None


def test_checked_frames_are_named_by_time_and_only_the_latest_kept(tmp_path: Path) -> None:
    store = DriftStore(tmp_path, CAMERA)
    names = [
        store.save_current(b"JPEG", datetime(2026, 3, 1, 8, 30, s, tzinfo=timezone.utc))
        for s in (0, 5)
    ]
    assert names[1] == "current-20260301T083005000000.jpg"
    store.drop_current(keep=names[1])
    assert [p.name for p in store.folder.glob("current-*.jpg")] == [names[1]]
    assert frame_path(tmp_path, CAMERA, names[1]) == store.folder / names[1]
