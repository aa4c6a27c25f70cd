"""Live frames: the latest inferred frame of each camera, handed from the CIS to the dashboard
through the shared data folder.

``<data>/live/<camera_id>.jpg`` holds the camera's latest annotated frame (the frame itself when
there is nothing to draw). It is replaced atomically (temporary file + rename), so a reader sees a
whole frame, never half of one; it is not fsync'd, because a lost frame is replaced by the next.
The CIS writes it only while someone watches: the dashboard touches ``<camera_id>.watch`` beside
it while it streams the camera, and the CIS writes frames while that mark is younger than
``WATCH_TTL_S``. Without a viewer nothing is written, so the disk is not worn by frames nobody sees.
This module has no web dependencies so the CIS can import it.
"""

from __future__ import annotations

import time
from pathlib import Path

from mfgvision.store.images import write_atomic
from mfgvision.store.status import status_path

LIVE_FOLDER = "live"
WATCH_TTL_S = 10.0


def live_frame_path(folder: Path, camera_id: str) -> Path:
    """``<folder>/<camera_id>.jpg``; ValueError for an id that cannot name a file."""
    return status_path(folder, camera_id).with_suffix(".jpg")


def watch_path(folder: Path, camera_id: str) -> Path:
    """``<folder>/<camera_id>.watch``, the mark of a viewer; ValueError for an unsafe id."""
    return status_path(folder, camera_id).with_suffix(".watch")


def mark_watched(folder: Path, camera_id: str) -> None:
    """Tell the camera's CIS that someone watches (for the next ``WATCH_TTL_S``); OSError when
    the folder is not writable."""
    path = watch_path(folder, camera_id)
    folder.mkdir(parents=True, exist_ok=True)
    path.touch()


def is_watched(folder: Path, camera_id: str, now: float | None = None) -> bool:
    """True while the camera's watch mark is younger than ``WATCH_TTL_S`` (one ``stat``)."""
    try:
        marked = watch_path(folder, camera_id).stat().st_mtime
    except (OSError, ValueError):
        return False
    return (time.time() if now is None else now) - marked <= WATCH_TTL_S


def write_live_frame(folder: Path, camera_id: str, jpeg: bytes) -> None:
    """Replace the camera's live frame atomically; OSError or ValueError when it cannot be."""
    path = live_frame_path(folder, camera_id)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, jpeg, durable=False)
