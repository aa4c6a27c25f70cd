"""A camera module's current frame, shown beside its form so that a change can be checked against
the image: the newest annotated or raw image the camera stored on a local device. Over IoT Hub the
images stay on the device, so there is none to show."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

from mfgvision.store.latest import camera_prefix, latest_frame, parse_frame_name
from mfgvision.twin_config.cameras import entries_of, resolved

NO_FRAME_IN_CLOUD = (
    "No frame available in cloud mode: the images stay on the device (see its dashboard)."
)
NO_FRAME_YET = "No frame from this camera yet."
NO_CAMERA = "The camera's location and position are not known."


@dataclass(frozen=True)
class FrameInfo:
    """The frame to show (its image name and capture time, ISO 8601 UTC), or why there is none."""

    name: str | None = None
    captured_at: str | None = None
    kind: str | None = None
    note: str | None = None


def _reported_settings(reported: dict[str, Any]) -> dict[str, Any]:
    config = reported.get("config") if isinstance(reported.get("config"), dict) else {}
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    return settings


def _place(settings: dict[str, Any]) -> tuple[str, str] | None:
    location, position = settings.get("camera_location"), settings.get("camera_position")
    if isinstance(location, str) and isinstance(position, str):
        return location, position
    return None


def camera_place(
    reported: dict[str, Any], current: dict[str, Any] | None, camera_id: str | None = None
) -> tuple[str, str] | None:
    """Location and position the camera names its images with: as the module reports them applied,
    else as the desired settings give them. ``camera_id`` names one entry of a ``cameras`` list:
    its keys over the module's."""
    for source in (_reported_settings(reported), current or {}):
        if camera_id is None:
            place = _place(source)
        else:
            entry = next((e for e in entries_of(source) if e.get("camera_id") == camera_id), None)
            place = _place(resolved(source, entry)) if entry is not None else None
        if place is not None:
            return place
    return None


def current_frame(
    images_dir: Path | None,
    reported: dict[str, Any],
    current: dict[str, Any] | None,
    camera_id: str | None = None,
) -> FrameInfo:
    """The camera's newest stored frame (of entry ``camera_id`` of a ``cameras`` list, else of the
    module's own camera), or a note saying why there is none."""
    if images_dir is None:
        return FrameInfo(note=NO_FRAME_IN_CLOUD)
    place = camera_place(reported, current, camera_id)
    if place is None:
        return FrameInfo(note=NO_CAMERA)
    frame = latest_frame(images_dir, *place)
    if frame is None:
        return FrameInfo(note=NO_FRAME_YET)
    when = frame.captured_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return FrameInfo(frame.name, when.replace("+00:00", "Z"), frame.kind)


def _places(reported: dict[str, Any], current: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The places of the module's own camera and of every entry of its ``cameras`` list."""
    ids = {
        str(e.get("camera_id"))
        for s in (_reported_settings(reported), current or {})
        for e in entries_of(s)
    }
    found = [camera_place(reported, current, camera_id) for camera_id in (None, *sorted(ids))]
    return [place for place in found if place is not None]


def frame_path(
    images_dir: Path | None,
    reported: dict[str, Any],
    current: dict[str, Any] | None,
    name: str,
) -> Path | None:
    """The file of image ``name`` when it is a frame of one of the module's cameras: an annotated or
    raw image with its name prefix, a regular file directly in ``images_dir``; None otherwise."""
    if images_dir is None:
        return None
    prefixes = []
    for place in _places(reported, current):
        try:
            prefixes.append(camera_prefix(*place))
        except ValueError:
            continue
    if not any(parse_frame_name(name, prefix) is not None for prefix in prefixes):
        return None
    path = images_dir / name
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    return path
