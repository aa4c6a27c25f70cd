"""A folder of images as a camera: files in name order, looping when asked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mfgvision.capture.base import FrameSource, SourceError

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class ImageFolderSource(FrameSource):
    """Reads every image of a folder in sorted order; rescans the folder at each pass."""

    live = False

    def __init__(self, folder: Path, loop: bool = True) -> None:
        self.folder = folder
        self.loop = loop
        self._files: list[Path] = []
        self._index = 0
        self._passes = 0

    @property
    def description(self) -> str:
        return f"folder:{self.folder}"

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} does not exist")
        self._scan()
        self._passes = 0

    def _scan(self) -> None:
        self._files = sorted(
            p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        self._index = 0
        if not self._files:
            raise SourceError(f"image folder {self.folder} has no images")

    def read(self) -> tuple[str, bytes | None, np.ndarray | None] | None:
        while True:
            if self._index >= len(self._files):
                self._passes += 1
                if not self.loop:
                    return None
                self._scan()
            path = self._files[self._index]
            self._index += 1
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.warning(
                    "image file unreadable, skipped", extra={"file": path.name, "error": str(exc)}
                )
                continue
            if path.suffix.lower() in (".jpg", ".jpeg"):
                return path.name, data, None
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("image file not decodable, skipped", extra={"file": path.name})
                continue
            return path.name, None, image

    def close(self) -> None:
        self._files = []

    def configure(self, settings: CameraSettings) -> bool:
        """A folder has no camera settings: nothing to apply, nothing to reopen."""
        return True
