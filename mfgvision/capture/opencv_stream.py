"""Video files, RTSP/HTTP streams and USB cameras through OpenCV's capture API.

Streams open with an open timeout and a read timeout (``CAP_PROP_OPEN_TIMEOUT_MSEC``,
``CAP_PROP_READ_TIMEOUT_MSEC``), so a server that goes away, restarts or keeps the connection open
without sending makes ``read`` fail within the timeout; the capture thread then reconnects.

The RTSP transport (TCP or UDP) can only be given to OpenCV's FFmpeg backend through the
process-wide environment variable ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, read while a capture opens.
It is therefore set only around the open, under a lock that every open in this module takes, and
restored afterwards; options already in the variable are kept. Code elsewhere in the process that
opens an FFmpeg capture at the same moment, without this lock, could see the transport too.

Credentials do not need to be in the twin: ``${NAME}`` in the URI is replaced, when the stream opens,
by the module's environment variable ``NAME`` (URL-encoded), e.g.
``rtsp://${RTSP_USER}:${RTSP_PASSWORD}@10.0.0.5/stream``. Descriptions, logs and errors show the URI
with its user part masked.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote

import cv2
import numpy as np

from mfgvision.capture.base import FrameSource, SourceError
from mfgvision.secrets import mask_text

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_OPEN_LOCK = threading.Lock()
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(uri: str) -> str:
    """``uri`` with each ``${NAME}`` replaced by the URL-encoded environment variable NAME."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SourceError(f"environment variable {name} (used in camera_uri) is not set")
        return quote(os.environ[name], safe="")

    return _ENV_REFERENCE.sub(value, uri)


def ffmpeg_options(current: str | None, transport: str) -> str:
    """``current`` options (``key;value|key;value``) with ``rtsp_transport`` set to ``transport``."""
    kept = [p for p in (current or "").split("|") if p and not p.startswith("rtsp_transport;")]
    return "|".join([*kept, f"rtsp_transport;{transport}"])


@contextmanager
def _capture_options(transport: str | None) -> Iterator[None]:
    """Hold the open lock; with a transport, set the FFmpeg options for the duration."""
    with _OPEN_LOCK:
        if transport is None:
            yield
            return
        before = os.environ.get(FFMPEG_OPTIONS_ENV)
        os.environ[FFMPEG_OPTIONS_ENV] = ffmpeg_options(before, transport)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(FFMPEG_OPTIONS_ENV, None)
            else:
                os.environ[FFMPEG_OPTIONS_ENV] = before


class OpenCVSource(FrameSource):
    """An OpenCV ``VideoCapture``: a file (paced by the capture thread), a stream or a USB index."""

    def __init__(
        self,
        uri: str,
        kind: str,
        loop: bool = True,
        timeout_ms: int = 10_000,
        transport: str = "tcp",
    ) -> None:
        self.uri = uri
        self.kind = kind
        self.loop = loop
        self.timeout_ms = timeout_ms
        self.transport = transport
        self.live = kind != "video"
        self._cap: cv2.VideoCapture | None = None
        self._count = 0

    @property
    def description(self) -> str:
        return f"{self.kind}:{mask_text(self.uri)}"

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
                index = int(self.uri)
            except ValueError:
                raise SourceError(f"USB camera index must be a number, got {self.uri!r}") from None
            cap = cv2.VideoCapture(index, cv2.CAP_ANY)
        else:
            uri = expand_env(self.uri) if self.kind != "video" else self.uri
            rtsp = self.kind == "rtsp" or uri.lower().startswith("rtsp")
            with _capture_options(self.transport if rtsp else None):
                cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
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

    def configure(self, settings: CameraSettings) -> bool:
        """Nothing of a camera's own settings applies to a stream; a new timeout needs a reopen."""
        return round(settings.camera_timeout_s * 1000) == self.timeout_ms
