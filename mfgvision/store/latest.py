"""The newest stored frame of a camera, found by its image names in the image folder.

Image names are ``<location>-<position>-<yyyymmddTHHMMSSffffff>-<kind>.jpg`` (UTC, see
:mod:`mfgvision.store.images`), so the newest frame of a camera is the greatest name with its
prefix. An annotated image is preferred to the raw one of the same moment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mfgvision.store.images import name_parts

FRAME_KINDS = ("annotated", "raw")
_STAMP = re.compile(r"(\d{8}T\d{12})-(annotated|raw)\.jpg")


@dataclass(frozen=True)
class StoredFrame:
    """One stored image of a camera: its file, when it was captured (UTC) and its kind."""

    path: Path
    captured_at: datetime
    kind: str

    @property
    def name(self) -> str:
        return self.path.name


def camera_prefix(location: str, position: str) -> str:
    """The start of every image name of the camera at ``location`` / ``position``."""
    place, spot = name_parts(location, position)
    return f"{place}-{spot}-"


def parse_frame_name(name: str, prefix: str) -> tuple[datetime, str] | None:
    """Capture time and kind of an annotated or raw image name of the camera with ``prefix``."""
    if not name.startswith(prefix):
        return None
    match = _STAMP.fullmatch(name[len(prefix) :])
    if match is None:
        return None
    try:
        when = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%f")
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc), match.group(2)


def latest_frame(images_dir: Path, location: str, position: str) -> StoredFrame | None:
    """The newest annotated or raw image of the camera in ``images_dir`` (regular files only), or
    None when there is none or the folder cannot be read."""
    try:
        prefix = camera_prefix(location, position)
    except ValueError:
        return None
    best: tuple[datetime, bool, str] | None = None
    try:
        with os.scandir(images_dir) as entries:
            for entry in entries:
                parsed = parse_frame_name(entry.name, prefix)
                if parsed is None or not entry.is_file(follow_symlinks=False):
                    continue
                key = (parsed[0], parsed[1] == "annotated", entry.name)
                if best is None or key > best:
                    best = key
    except OSError:
        return None
    if best is None:
        return None
    when, annotated, name = best
    return StoredFrame(images_dir / name, when, "annotated" if annotated else "raw")
