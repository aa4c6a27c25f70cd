"""One camera's drift files, under ``<data>/drift/``:

* ``<camera_id>/reference-<time>.png`` and ``<camera_id>/reference.json``: the reference frame (the
  analysis image, colour) and what it was taken from (frame size, time UTC, statistics). The JSON
  names its PNG and is written last, so a crash between the two leaves the previous reference whole;
* ``<camera_id>/state.json``: which alerts are raised, the alert messages not yet taken by the hub,
  and the model's baseline: what a restart must not forget;
* ``<camera_id>.json``, ``<camera_id>/history.jsonl`` and ``<camera_id>/current-<time>.jpg``: what
  the dashboard shows (the view, the history of checks and the latest checked frame; their layout
  is in :mod:`mfgvision.store.drift`).

Every file but the history is replaced atomically (a reader sees the old or the new one, never
half); the reference and the state are flushed to disk first.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfgvision.cis.drift.image import ImageStats
from mfgvision.cis.messages import iso_utc
from mfgvision.store.drift import HISTORY_FILE, HistoryFile, camera_folder, json_bytes, view_path
from mfgvision.store.images import write_atomic

log = logging.getLogger(__name__)

REFERENCE_JSON = "reference.json"
STATE_JSON = "state.json"


@dataclass(frozen=True)
class Reference:
    """The frame a camera is compared with: its analysis image (BGR), its statistics, the size of
    the frame it came from and when it was taken (UTC)."""

    image: np.ndarray
    stats: ImageStats
    frame_width: int
    frame_height: int
    taken_at: datetime

    @property
    def image_name(self) -> str:
        return f"reference-{self.taken_at.strftime('%Y%m%dT%H%M%S%f')}.png"

    def to_json(self) -> dict[str, Any]:
        """What the reference JSON (and the dashboard's view) says of it."""
        h, w = self.image.shape[:2]
        return {
            "taken_at": iso_utc(self.taken_at),
            "frame": {"width": self.frame_width, "height": self.frame_height},
            "image": self.image_name,
            "image_size": {"width": w, "height": h},
            "stats": self.stats.to_json(),
        }


class DriftStore:
    """The drift files of one camera."""

    def __init__(self, folder: Path, camera_id: str) -> None:
        """``folder`` is ``<data>/drift``; raises ValueError for a camera id unfit for a file name."""
        self.view_path = view_path(folder, camera_id)
        self.folder = camera_folder(folder, camera_id)
        self.history = HistoryFile(self.folder / HISTORY_FILE)

    def save_reference(self, reference: Reference) -> None:
        """Write the reference durably (PNG, then the JSON naming it), then drop older PNGs."""
        ok, png = cv2.imencode(".png", reference.image)
        if not ok:
            raise ValueError("the reference frame could not be encoded as PNG")
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / reference.image_name, png.tobytes())
        write_atomic(self.folder / REFERENCE_JSON, json_bytes(reference.to_json()))
        for old in self.folder.glob("reference-*.png"):
            if old.name != reference.image_name:
                with contextlib.suppress(OSError):
                    old.unlink()

    def load_reference(self) -> Reference | None:
        """The saved reference; None when there is none or it cannot be read (logged)."""
        path = self.folder / REFERENCE_JSON
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_bytes())
            image = cv2.imread(str(self.folder / Path(data["image"]).name), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{data['image']} is missing or not an image")
            return Reference(
                image=image,
                stats=ImageStats.from_json(data["stats"]),
                frame_width=int(data["frame"]["width"]),
                frame_height=int(data["frame"]["height"]),
                taken_at=datetime.fromisoformat(data["taken_at"].replace("Z", "+00:00")).astimezone(
                    timezone.utc
                ),
            )
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

    def save_current(self, image: np.ndarray, when: datetime, quality: int = 85) -> str:
        """Write the frame of a recorded check (the analysis image, as JPEG) like the view; its
        file name. OSError or ValueError when it cannot be written."""
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("the checked frame could not be encoded as JPEG")
        name = f"current-{when.strftime('%Y%m%dT%H%M%S%f')}.jpg"
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / name, jpeg.tobytes(), durable=False)
        return name

    def drop_current(self, keep: str) -> None:
        """Delete the checked frames other than ``keep``."""
        for old in self.folder.glob("current-*.jpg"):
            if old.name != keep:
                with contextlib.suppress(OSError):
                    old.unlink()
