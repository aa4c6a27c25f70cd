"""Video files, RTSP/HTTP streams and USB cameras through OpenCV's capture API."""

from __future__ import annotations

import cv2
import numpy as np

from mfgvision.capture.base import FrameSource, SourceError, mask_credentials


class OpenCVSource(FrameSource):
    """An OpenCV ``VideoCapture``: a file (paced by the capture thread), a stream or a USB index."""

    def __init__(self, uri: str, kind: str, loop: bool = True, timeout_ms: int = 10_000) -> None:
        self.uri = uri
        self.kind = kind
        self.loop = loop
        self.timeout_ms = timeout_ms
        self.live = kind != "video"
        self._cap: cv2.VideoCapture | None = None
        self._count = 0

    @property
    def description(self) -> str:
        return f"{self.kind}:{mask_credentials(self.uri)}"

    def open(self) -> None:
        self.close()
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self.timeout_ms,
        ]
        if self.kind == "usb":
            try:
                cap = cv2.VideoCapture(int(self.uri), cv2.CAP_ANY)
            except ValueError:
                raise SourceError(f"USB camera index must be a number, got {self.uri!r}") from None
        else:
            cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}")
        self._cap = cap

    def read(self) -> tuple[str, bytes | None, np.ndarray | None] | None:
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.kind != "video":
                raise SourceError(f"{self.description}: read failed (stream lost or timed out)")
            if not self.loop or self._count == 0:
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if not ok:
                return None
        self._count += 1
        return f"{self.kind}-{self._count:08d}", None, image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
