"""The drift files a CIS writes for the dashboard, under ``<data>/drift/`` (docs/drift.md):

* ``<camera_id>.json``: the view: the reference, the latest figures with their limits, the raised
  alerts and the frame of the latest recorded check; replaced atomically;
* ``<camera_id>/history.jsonl``: one JSON line per recorded check (time UTC, figures, the model's
  rates, the raised alerts and those raised or cleared at that check), appended by the camera's
  one writer and cut back to the newest ``HISTORY_KEEP`` lines once it holds a quarter more;
* ``<camera_id>/reference-<time>.png`` and ``<camera_id>/current-<time>.jpg``: the reference frame
  and the frame of the latest recorded check, both at analysis size.

This module has no web or image dependencies, so the CIS and the dashboard both import it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mfgvision.store.images import write_atomic
from mfgvision.store.status import MAX_STATUS_BYTES, status_path

DRIFT_FOLDER = "drift"
HISTORY_FILE = "history.jsonl"
#: Lines kept in a camera's history: a day of checks recorded every 30 s.
HISTORY_KEEP = 2880
#: A reader reads at most this much of the end of a history file.
HISTORY_MAX_BYTES = 4 * 1024 * 1024
#: The frames a camera's drift folder serves: its reference and the latest checked frame.
_FRAME_NAME = re.compile(r"reference-\d{8}T\d{12}\.png|current-\d{8}T\d{12}\.jpg")


def view_path(folder: Path, camera_id: str) -> Path:
    """``<folder>/<camera_id>.json``; ValueError for an id that cannot name a file."""
    return status_path(folder, camera_id)


def camera_folder(folder: Path, camera_id: str) -> Path:
    """``<folder>/<camera_id>``; ValueError for an id that cannot name a file."""
    return view_path(folder, camera_id).with_suffix("")


def is_frame_name(name: str) -> bool:
    """A name the CIS gives a reference or checked frame."""
    return _FRAME_NAME.fullmatch(name) is not None


def json_bytes(data: dict[str, Any]) -> bytes:
    """Compact JSON; ValueError for a value JSON cannot hold (NaN, infinity)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


class HistoryFile:
    """A camera's history of checks, appended by its one writer (the drift thread).

    Each line is written whole with one ``write`` on a file opened for appending; a line cut
    short by a crash is ended by the next append and skipped by readers.
    """

    def __init__(self, path: Path, keep: int = HISTORY_KEEP) -> None:
        self.path = path
        self.keep = keep
        self._lines: int | None = None  # lines in the file, counted at the first append

    def append(self, point: dict[str, Any]) -> None:
        """Add one line (not flushed to disk: losing the last few to a power cut is harmless);
        cut the file back to the newest ``keep`` lines once it holds a quarter more. OSError
        when it cannot be written, ValueError for a point JSON cannot hold."""
        line = json_bytes(point) + b"\n"
        try:
            if self._lines is None:
                self._lines, torn = _count_lines(self.path)
                line = b"\n" + line if torn else line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(line)
        except OSError:
            self._lines = None
            raise
        self._lines += 1
        if self._lines > self.keep + max(self.keep // 4, 1):
            newest = self.path.read_bytes().splitlines(keepends=True)[-self.keep :]
            write_atomic(self.path, b"".join(newest))
            self._lines = len(newest)


def _count_lines(path: Path) -> tuple[int, bool]:
    """How many whole lines ``path`` holds, and whether it ends in a line cut short."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, False
    return data.count(b"\n"), bool(data) and not data.endswith(b"\n")


def read_history(folder: Path, camera_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The camera's recorded checks, oldest first (only the newest ``limit``); lines that are not
    whole JSON objects are skipped; empty when there is none or it cannot be read."""
    try:
        path = camera_folder(folder, camera_id) / HISTORY_FILE
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > HISTORY_MAX_BYTES:
                fh.seek(size - HISTORY_MAX_BYTES)
                fh.readline()  # a line cut by the seek
            data = fh.read()
    except (OSError, ValueError):
        return []
    points = []
    for line in data.splitlines():
        try:
            point = json.loads(line)
        except ValueError:
            continue
        if isinstance(point, dict):
            points.append(point)
    return points[-limit:] if limit else points


def read_view(folder: Path, camera_id: str) -> dict[str, Any] | None:
    """The camera's view: a regular file of at most ``MAX_STATUS_BYTES`` holding a JSON object;
    None otherwise."""
    try:
        path = view_path(folder, camera_id)
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_STATUS_BYTES:
            return None
        view = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return view if isinstance(view, dict) else None


def frame_path(folder: Path, camera_id: str, name: str) -> Path | None:
    """The file of the camera's reference or checked frame ``name``: a regular file directly in
    its drift folder (``folder`` resolved); None otherwise."""
    if not is_frame_name(name):
        return None
    try:
        own = camera_folder(folder, camera_id)
        real = (own / name).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if real.parent != own or not real.is_file():
        return None
    return real
