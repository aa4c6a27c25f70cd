"""Image files on the edge: sortable names, JPEG encoding and crash-safe writes."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, get_args

ImageKind = Literal["annotated", "raw", "retrain"]
IMAGE_KINDS: frozenset[str] = frozenset(get_args(ImageKind))
NAME_PART_MAX = 64
FILE_MODE = 0o644
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")
_DOT_HAZARD = re.compile(r"^\.|\.(?=\.)")


def sanitise_name_part(value: str) -> str:
    """Replace every character outside ``[A-Za-z0-9_.]`` with ``_`` and cap the length.

    A leading dot and ``..`` are replaced too, so that names are never hidden files and pass the
    dashboard's file-name checks.
    """
    cleaned = _DOT_HAZARD.sub("_", _UNSAFE.sub("_", value.strip()))[:NAME_PART_MAX]
    if not cleaned:
        raise ValueError("an image name part must not be empty")
    return cleaned


def name_parts(location: str, position: str) -> tuple[str, str]:
    """The camera's location and position as they appear in file and blob names (sanitised)."""
    return sanitise_name_part(location), sanitise_name_part(position)


def image_name(location: str, position: str, when_utc: datetime, kind: ImageKind) -> str:
    """``<location>-<position>-<yyyymmddTHHMMSSffffff>-<kind>.jpg`` with the time in UTC.

    For one location and position, sorting the names sorts the images by time.
    """
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image kind {kind!r}; expected one of {sorted(IMAGE_KINDS)}")
    stamp = _utc(when_utc).strftime("%Y%m%dT%H%M%S%f")
    place, spot = name_parts(location, position)
    return f"{place}-{spot}-{stamp}-{kind}.jpg"


def blob_name(location: str, position: str, when_utc: datetime, file_name: str) -> str:
    """``<location>/<position>/<yyyy>/<mm>/<dd>/<file>`` (UTC date), from the same sanitised parts
    as :func:`image_name`, so every name the CIS makes is one ImageUpload accepts."""
    place, spot = name_parts(location, position)
    return f"{place}/{spot}/{_utc(when_utc):%Y/%m/%d}/{file_name}"


def _utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive time is refused (its zone would be a guess)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("when_utc must be timezone-aware")
    return when.astimezone(timezone.utc)


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a partial one.

    With ``durable`` the data and the rename are flushed to disk before returning: a crash or power
    loss after the call cannot leave the file missing or empty. Without it (frames replaced every
    few seconds, views rebuilt at the next check) nothing is flushed.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_folder(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_folder(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
