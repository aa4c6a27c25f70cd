"""The camera health panel's data: a camera's drift view and history of checks, as its CIS writes
them (``store/drift.py``), shaped for the page over a time window."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from mfgvision.dashboard.stats import Window, iso, window_json

#: The chart gets at most about this many points; every point where an alert changed is kept.
MAX_POINTS = 720

FrameUrl = Callable[[str], str | None]
"""Maps a frame's file name to its URL, None when the file is not there."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def in_window(points: list[dict[str, Any]], window: Window) -> list[dict[str, Any]]:
    """The recorded checks whose time falls in ``window``."""
    return [p for p in points if (at := _time(p.get("at"))) and window.start <= at < window.end]


def thin(points: list[dict[str, Any]], most: int = MAX_POINTS) -> list[dict[str, Any]]:
    """About ``most`` of ``points`` spread evenly, keeping every one where an alert changed and the
    newest."""
    step = -(-len(points) // most)
    if step <= 1:
        return points
    last = len(points) - 1
    return [p for i, p in enumerate(points) if i % step == 0 or i == last or p.get("changes")]


def drift_summary(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an overview card says of the camera's drift: whether it has a reference, the raised
    alerts; None when its CIS wrote no drift view."""
    if view is None:
        return None
    return {"reference": bool(view.get("reference")), "alerts": sorted(_dict(view.get("alerts")))}


def panel_json(
    camera_id: str,
    module_id: str | None,
    view: dict[str, Any] | None,
    points: list[dict[str, Any]],
    window: Window,
    frame_url: FrameUrl,
    now: datetime,
) -> dict[str, Any]:
    """Everything the panel shows: the reference and the latest checked frame, the latest figures
    with their limits, the raised alerts, the figures over the window and the alerts raised and
    cleared in it (newest first)."""
    view = view or {}
    reference = _dict(view.get("reference"))
    current = _dict(view.get("current"))
    shown = in_window(points, window)
    alerts = [
        {"alert": name, **_dict(raised)} for name, raised in _dict(view.get("alerts")).items()
    ]
    return {
        "camera_id": camera_id,
        "module_id": module_id,
        "generated_at": iso(now),
        "window": window_json(window),
        "enabled": view.get("enabled"),
        "every_s": view.get("every_s"),
        "checks": view.get("checks"),
        "checked_at": view.get("checked_at"),
        "updated": view.get("updated"),
        "reference": (
            {
                "taken_at": reference.get("taken_at"),
                "frame": reference.get("frame"),
                "image_url": frame_url(str(reference.get("image"))),
            }
            if reference
            else None
        ),
        "current": (
            {
                "checked_at": current.get("checked_at"),
                "image_url": frame_url(str(current.get("image"))),
            }
            if current
            else None
        ),
        "figures": _dict(view.get("figures")),
        "limits": [_dict(limit) for limit in _list(view.get("limits"))],
        "alerts": sorted(alerts, key=lambda a: str(a.get("raised_at"))),
        "notes": [str(note) for note in _list(view.get("notes"))],
        "baseline": view.get("baseline"),
        "history": [
            {
                "at": p["at"],
                "figures": _dict(p.get("figures")),
                "ng_rate": _dict(_dict(p.get("model")).get("ng_rate")) or None,
                "raised": _list(p.get("raised")),
            }
            for p in thin(shown)
        ],
        "changes": [
            {"at": p["at"], **_dict(change)}
            for p in reversed(shown)
            for change in _list(p.get("changes"))
        ],
    }
