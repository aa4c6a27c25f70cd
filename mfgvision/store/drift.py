"""Every drift file of a camera, under ``<data>/drift/`` (docs/drift.md): what the CIS's drift
thread keeps and what the dashboard reads.

* ``<camera_id>/reference-<time>.png`` and ``<camera_id>/reference.json``: the reference frame (the
  analysis image, colour) and what it was taken from (frame size, time UTC, statistics). The JSON
  names its PNG and is written last, so a crash between the two leaves the previous reference whole;
* ``<camera_id>/state.json``: which alerts are raised, the alert messages not yet taken by the hub,
  and the model's baseline: what a restart must not forget;
* ``<camera_id>.json``: the view: the reference, the latest figures with their limits, the raised
  alerts and the frame of the latest recorded check;
* ``<camera_id>/history.jsonl``: one JSON line per recorded check (time UTC, figures, the model's
  rates, the raised alerts and those raised or cleared at that check), appended by the camera's
  one writer and cut back to the newest ``HISTORY_KEEP`` lines once it holds a quarter more;
* ``<camera_id>/current-<time>.jpg``: the frame of the latest recorded check, at analysis size.

Every file but the history is replaced atomically (a reader sees the old or the new one, never
half); the reference and the state are flushed to disk first. Images come and go encoded (PNG,
JPEG): this module has no web or image dependencies, so the CIS and the dashboard both import it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from mfgvision.store.images import write_atomic
from mfgvision.store.status import MAX_STATUS_BYTES, status_path

log = logging.getLogger(__name__)

T = TypeVar("T")

DRIFT_FOLDER = "drift"
HISTORY_FILE = "history.jsonl"
REFERENCE_JSON = "reference.json"
STATE_JSON = "state.json"
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


def reference_name(taken_at: datetime) -> str:
    """The file name of a reference frame taken at ``taken_at`` (UTC)."""
    return f"reference-{taken_at.strftime('%Y%m%dT%H%M%S%f')}.png"


def _current_name(checked_at: datetime) -> str:
    return f"current-{checked_at.strftime('%Y%m%dT%H%M%S%f')}.jpg"


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


class DriftStore:
    """The drift files of one camera, as its drift thread keeps them."""

    def __init__(self, folder: Path, camera_id: str) -> None:
        """``folder`` is ``<data>/drift``; raises ValueError for a camera id unfit for a file name."""
        self.view_path = view_path(folder, camera_id)
        self.folder = camera_folder(folder, camera_id)
        self.history = HistoryFile(self.folder / HISTORY_FILE)

    def save_reference(self, png: bytes, about: dict[str, Any]) -> None:
        """Write the reference durably: its PNG, named by ``about["image"]`` (see
        :func:`reference_name`), then ``about`` as the JSON naming it; then drop older PNGs."""
        name = str(about["image"])
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / name, png)
        write_atomic(self.folder / REFERENCE_JSON, json_bytes(about))
        for old in self.folder.glob("reference-*.png"):
            if old.name != name:
                with contextlib.suppress(OSError):
                    old.unlink()

    def load_reference(self, decode: Callable[[dict[str, Any], bytes], T]) -> T | None:
        """The saved reference, as ``decode`` makes it of its JSON and its PNG's bytes; None when
        there is none or it cannot be read or decoded (OSError, ValueError, KeyError, TypeError:
        logged)."""
        path = self.folder / REFERENCE_JSON
        if not path.exists():
            return None
        try:
            about = json.loads(path.read_bytes())
            png = (self.folder / Path(about["image"]).name).read_bytes()
            return decode(about, png)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("drift reference not readable", extra={"path": str(path), "error": str(exc)})
            return None

    def save_state(self, state: dict[str, Any]) -> None:
        """Replace the state file; raises OSError when it cannot be written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / STATE_JSON, json_bytes(state))

    def load_state(self) -> dict[str, Any]:
        """The saved state; empty when there is none or it cannot be read (logged)."""
        path = self.folder / STATE_JSON
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("drift state not readable", extra={"path": str(path), "error": str(exc)})
            return {}
        return data if isinstance(data, dict) else {}

    def write_view(self, view: dict[str, Any]) -> None:
        """Replace the dashboard's view (atomically, not flushed to disk: the next check writes it
        again); raises OSError when it cannot be written."""
        self.view_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.view_path, json_bytes(view), durable=False)

    def save_current(self, jpeg: bytes, checked_at: datetime) -> str:
        """Write the frame of a recorded check (JPEG) like the view; its file name. OSError when
        it cannot be written."""
        name = _current_name(checked_at)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / name, jpeg, durable=False)
        return name

    def drop_current(self, keep: str) -> None:
        """Delete the checked frames other than ``keep``."""
        for old in self.folder.glob("current-*.jpg"):
            if old.name != keep:
                with contextlib.suppress(OSError):
                    old.unlink()
