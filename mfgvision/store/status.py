"""Camera status files: each CIS module writes ``<data>/status/<camera_id>.json``; the dashboard
reads the folder.

The file holds the module's reported status (state, fps, camera and model details) plus
``camera_id``, ``module_id`` and ``updated`` (ISO 8601 UTC). It is replaced atomically, so a reader
sees the previous or the next version, never half of one. A file that stops being updated means the
module is not running: the dashboard shows it as offline once ``updated`` is older than
``STALE_AFTER_S``. Secrets are masked before anything is written. This module has no web
dependencies so the CIS can import it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mfgvision.secrets import mask_secrets

log = logging.getLogger(__name__)

STATUS_FOLDER = "status"
STALE_AFTER_S = 30.0
MAX_STATUS_BYTES = 256 * 1024
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

STATE_LABELS = {
    "running": "Running",
    "degraded": "Degraded",
    "reconnecting": "Reconnecting",
    "connecting": "Connecting",
    "loading_model": "Loading model",
    "model_error": "Model error",
    "camera_error": "Camera error",
    "config_error": "Config error",
    "idle": "Idle (source ended)",
    "offline": "Offline",
}
STATE_LEVELS = {
    "running": "ok",
    "degraded": "warn",
    "reconnecting": "warn",
    "connecting": "warn",
    "loading_model": "warn",
    "idle": "warn",
    "model_error": "error",
    "camera_error": "error",
    "config_error": "error",
    "offline": "error",
}


def is_safe_id(camera_id: str) -> bool:
    """A camera id usable as a file name: no folder part, no hidden file, no ``..``."""
    return _SAFE_ID.fullmatch(camera_id) is not None and ".." not in camera_id


def status_path(folder: Path, camera_id: str) -> Path:
    """``<folder>/<camera_id>.json``; raises ValueError for an id that is not a safe file name."""
    if not is_safe_id(camera_id):
        raise ValueError(f"camera id {camera_id!r} cannot name a status file")
    return folder / f"{camera_id}.json"


def write_status(folder: Path, camera_id: str, module_id: str, status: dict[str, Any]) -> bool:
    """Replace the camera's status file atomically, secrets masked; False (logged) when it cannot
    be written."""
    try:
        path = status_path(folder, camera_id)
        folder.mkdir(parents=True, exist_ok=True)
        body = {
            **mask_secrets(status),
            "camera_id": camera_id,
            "module_id": module_id,
            "updated": datetime.now(timezone.utc).isoformat(),
        }
        data = json.dumps(body, default=str, separators=(",", ":")).encode()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except (OSError, ValueError, TypeError) as exc:
        log.warning("status file not written", extra={"camera_id": camera_id, "error": str(exc)})
        return False
    return True


def remove_status(folder: Path, camera_id: str) -> None:
    """Delete a camera's status file (the module now reports under another camera id)."""
    with contextlib.suppress(OSError, ValueError):
        status_path(folder, camera_id).unlink()


@dataclass(frozen=True)
class Zone:
    """A zone of a camera's settings in force: its name and its points normalised 0..1 of the
    frame (pixel points divided by ``zones_frame``, as the CIS judges them)."""

    name: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CameraStatus:
    """What the dashboard shows of one camera's status file."""

    camera_id: str
    module_id: str | None
    state: str
    fps: float | None
    updated: datetime | None
    error: str | None
    model: str | None
    #: The camera's ``camera_location`` and ``camera_position`` in force ("" when not known).
    location: str = ""
    position: str = ""
    #: The camera's zones and the names of its rules in its settings in force, and the desired
    #: twin ``$version`` those settings came with (None: not known).
    zones: tuple[Zone, ...] = ()
    rules: tuple[str, ...] = ()
    settings_version: int | None = None

    @property
    def label(self) -> str:
        return STATE_LABELS.get(self.state, self.state.replace("_", " ").capitalize())

    @property
    def level(self) -> str:
        return STATE_LEVELS.get(self.state, "warn")

    def to_json(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "module_id": self.module_id,
            "state": self.state,
            "label": self.label,
            "level": self.level,
            "fps": self.fps,
            "updated": _iso(self.updated),
            "error": self.error,
            "model": self.model,
        }


def read_statuses(folder: Path, now: datetime | None = None) -> dict[str, CameraStatus]:
    """Every readable status file of ``folder`` by camera id; stale ones read as ``offline``.

    Files that are not regular, too large, not JSON or named unsafely are skipped.
    """
    now = now or datetime.now(timezone.utc)
    out: dict[str, CameraStatus] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for path in entries:
        if path.suffix == ".json" and is_safe_id(path.stem):
            status = _read(path, now)
            if status is not None:
                out[path.stem] = status
    return out


def read_status(folder: Path, camera_id: str, now: datetime | None = None) -> CameraStatus | None:
    """One camera's status file as :func:`read_statuses` reads it; None when there is none that
    can be read (or the id cannot name one)."""
    if not is_safe_id(camera_id):
        return None
    return _read(status_path(folder, camera_id), now or datetime.now(timezone.utc))


def _read(path: Path, now: datetime) -> CameraStatus | None:
    try:
        if not path.is_file() or path.is_symlink():
            return None
        if path.stat().st_size > MAX_STATUS_BYTES:
            return None
        body = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return _parse(path.stem, body, now) if isinstance(body, dict) else None


def _parse(camera_id: str, body: dict[str, Any], now: datetime) -> CameraStatus:
    inner = body.get("status") if isinstance(body.get("status"), dict) else {}
    config = body.get("config") if isinstance(body.get("config"), dict) else {}
    updated = _parse_time(body.get("updated"))
    state = str(inner.get("state") or "unknown")
    if updated is None or (now - updated).total_seconds() > STALE_AFTER_S:
        state = "offline"
    fps = inner.get("fps")
    model = inner.get("model") if isinstance(inner.get("model"), dict) else {}
    reasons = inner.get("reasons")
    error = (
        inner.get("last_error")
        or ("; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else None)
        or (config.get("error") or {}).get("message")
    )
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    serving = model.get("serving") or (
        f"{model['name']}/{model['version']}" if model.get("name") else None
    )
    rules, version = settings.get("rules"), config.get("applied_version")
    return CameraStatus(
        camera_id=camera_id,
        module_id=str(body["module_id"]) if body.get("module_id") else None,
        state=state,
        fps=round(float(fps), 2) if isinstance(fps, (int, float)) else None,
        updated=updated,
        error=str(error)[:500] if error else None,
        model=str(serving) if serving else None,
        location=_text(settings.get("camera_location")),
        position=_text(settings.get("camera_position")),
        zones=_zones(settings),
        rules=tuple(str(name) for name in rules) if isinstance(rules, dict) else (),
        settings_version=version if isinstance(version, int) else None,
    )


def _zones(settings: dict[str, Any]) -> tuple[Zone, ...]:
    """The settings' zones normalised 0..1 (divided by ``zones_frame`` when that is set); a zone
    that is not a list of at least three finite ``[x, y]`` is left out."""
    zones = settings.get("zones")
    if not isinstance(zones, dict):
        return ()
    frame = settings.get("zones_frame")
    width, height = frame if _is_size(frame) else (1, 1)
    out = []
    for name, points in zones.items():
        try:
            scaled = tuple((float(x) / width, float(y) / height) for x, y in points)
        except (TypeError, ValueError, OverflowError):
            continue
        if len(scaled) >= 3 and all(math.isfinite(v) for point in scaled for v in point):
            out.append(Zone(str(name), tuple((round(x, 6), round(y, 6)) for x, y in scaled)))
    return tuple(out)


def _is_size(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf
            for v in value
        )
    )


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
