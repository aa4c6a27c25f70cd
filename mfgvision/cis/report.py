"""What a CIS module running several cameras reports: the module's status over all of them, a short
entry per camera in reported properties (many cameras must fit in the twin), and each camera's own
status file for the dashboard.

A module running one camera from its own keys reports as it always did: the camera's status is the
module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mfgvision.store.status import STATE_LEVELS

_RANK = {"ok": 0, "warn": 1, "error": 2}
#: States that say nothing more than the reasons do.
_WORKING = ("running", "degraded")
ERROR_CHARS = 200


def _rank(state: str) -> int:
    return _RANK[STATE_LEVELS.get(state, "warn")]


def module_status(
    cameras: Mapping[str, dict[str, Any]], shared: list[str], figures: dict[str, Any]
) -> dict[str, Any]:
    """The module's ``status`` over its cameras' (``cameras``: camera id -> its status): the worst
    state (an error over a warning over running, the first camera's among equals), the module's own
    problems (``shared``: storage trouble, which every camera also lists) once, then what is wrong
    with each camera under its id; its inferences per second; and ``figures`` (the module's own
    counters, rows and announcements waiting)."""
    state = "running"
    reasons = list(shared)
    for camera_id, camera in cameras.items():
        if _rank(camera["state"]) > _rank(state):
            state = camera["state"]
        own = [r for r in camera["reasons"] if r not in shared]
        if camera["state"] not in _WORKING:
            error = _error(camera)
            own.insert(0, f"{camera['state']}: {error}" if error else camera["state"])
        reasons += [f"{camera_id}: {reason}" for reason in own]
    fps = round(sum(camera["fps"] for camera in cameras.values()), 3)
    return {"state": state, "reasons": reasons, "fps": fps, **figures}


def reported(document: dict[str, Any]) -> dict[str, Any]:
    """The reported properties for a status document: the cameras' short entries in place of their
    whole status."""
    cameras = document.get("cameras")
    if cameras is None:
        return document
    return {**document, "cameras": {cid: camera_entry(s) for cid, s in cameras.items()}}


def camera_entry(status: dict[str, Any]) -> dict[str, Any]:
    """A camera's entry in reported properties: its state, rate, model serving and error."""
    error = _error(status)
    return {
        "state": status["state"],
        "fps": status["fps"],
        "model": status["model"]["serving"],
        "error": error[:ERROR_CHARS] if error else None,
    }


def camera_file(
    document: dict[str, Any], camera_id: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """One camera's status file, shaped as a one-camera module's document: its status, and the
    module's config with the camera's own settings in force (``settings``)."""
    return {
        "software_version": document["software_version"],
        "status": document["cameras"][camera_id],
        "config": {**document["config"], "settings": settings},
        "updated": document["updated"],
    }


def _error(status: dict[str, Any]) -> str | None:
    """What is wrong with a camera's source or model, if anything."""
    return status["camera"]["error"] or status["model"]["error"]
