"""Live view: each camera's live frames (``store/live.py``) as an MJPEG stream
(``multipart/x-mixed-replace``), bounded in frame rate, width and number of viewers.

Off unless ``MFGVISION_LIVE_VIEW`` is on, because a stream costs bandwidth on metered links. Each
viewer holds one server thread for as long as it watches, so viewers are capped; one more gets a 503.
A stream sends each new frame at most ``max_fps`` times a second (the newest one when the CIS is
faster), scaled down to ``max_width`` and encoded at ``quality``; frames are scaled once and shared
by every viewer of a camera. A stream repeats its last frame every ``REPEAT_S`` while the camera
sends nothing, so a viewer that left is noticed, and it ends when the viewer leaves or the
dashboard stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mfgvision.capture.jpeg import jpeg_size
from mfgvision.dashboard.thumbnails import decode_to_width, encode
from mfgvision.store.live import live_frame_path, mark_watched
from mfgvision.store.status import STALE_AFTER_S

log = logging.getLogger(__name__)

ENV_VARS = {
    "enabled": "MFGVISION_LIVE_VIEW",
    "max_fps": "MFGVISION_LIVE_MAX_FPS",
    "max_width": "MFGVISION_LIVE_MAX_WIDTH",
    "quality": "MFGVISION_LIVE_QUALITY",
    "max_clients": "MFGVISION_LIVE_MAX_CLIENTS",
}
BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
#: How often a stream tells the CIS that it watches (well inside ``store.live.WATCH_TTL_S``).
MARK_EVERY_S = 2.0
#: How often a stream repeats its last frame while no new one comes.
REPEAT_S = 2.0
#: The longest a stream waits between two looks at the live frame.
POLL_S = 0.05
MAX_FRAME_BYTES = 32 * 1024 * 1024

Wait = Callable[[float], bool]
"""Waits up to the given seconds; True when the stream must end."""


class LiveConfigError(ValueError):
    """A live-view environment variable is malformed."""


class LiveConfig(BaseModel):
    """The live-view settings of a dashboard (environment variables ``MFGVISION_LIVE_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(False, description="serve live streams and show the Live toggle")
    max_fps: float = Field(5.0, gt=0, le=30, description="frames per second per stream, at most")
    max_width: int = Field(960, ge=160, le=3840, description="wider frames are scaled down")
    quality: int = Field(70, ge=30, le=95, description="JPEG quality of the streamed frames")
    max_clients: int = Field(4, ge=1, le=32, description="streams at a time, all cameras")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveConfig:
        """Read the variables (unset or empty: the default); LiveConfigError says what to fix."""
        env = os.environ if env is None else env
        values = {
            key: env[var].strip() for key, var in ENV_VARS.items() if env.get(var, "").strip()
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [f"{ENV_VARS[str(err['loc'][0])]}: {err['msg']}" for err in exc.errors()]
            raise LiveConfigError("; ".join(problems)) from None


def live_jpeg(jpeg: bytes, max_width: int, quality: int) -> bytes | None:
    """``jpeg`` as a stream sends it: at most ``max_width`` wide and encoded at ``quality``, or as
    it came when it is no wider and that is smaller; None when it does not decode."""
    size = jpeg_size(jpeg)
    image = decode_to_width(jpeg, max_width)
    scaled = None if image is None else encode(image, quality)
    if size is None or scaled is None:
        return None
    return jpeg if size[0] <= max_width and len(jpeg) <= len(scaled) else scaled


def multipart_part(jpeg: bytes) -> bytes:
    """One part of the stream: a boundary, the headers and the JPEG."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"


FrameKey = tuple[int, int, int]


class LiveView:
    """The live streams of one dashboard: viewer slots, the scaled frames and the stop signal."""

    def __init__(
        self,
        config: LiveConfig,
        folder: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.folder = folder
        self._clock = clock
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._clients = 0
        self._scaled: dict[str, tuple[FrameKey, bytes | None]] = {}
        self._mark_failed = False

    @property
    def clients(self) -> int:
        """Streams open now."""
        with self._lock:
            return self._clients

    def acquire(self) -> bool:
        """Take a viewer slot; False when all ``max_clients`` are taken or the view has stopped."""
        with self._lock:
            if self._stopped.is_set() or self._clients >= self.config.max_clients:
                return False
            self._clients += 1
            return True

    def release(self) -> None:
        """Give a viewer slot back (the stream ended)."""
        with self._lock:
            self._clients -= 1

    def close(self) -> None:
        """End every stream at its next look at the frame (the dashboard stops)."""
        self._stopped.set()

    def stream(self, camera_id: str, wait: Wait | None = None) -> Iterator[bytes]:
        """The parts of one viewer's stream of ``camera_id``, until ``wait`` says to end."""
        wait = wait or self._stopped.wait
        interval = 1.0 / self.config.max_fps
        poll = min(POLL_S, interval / 2)
        key: FrameKey | None = None
        part: bytes | None = None
        next_frame = next_mark = next_repeat = self._clock()
        while not self._stopped.is_set():
            now = self._clock()
            if now >= next_mark:
                self._mark(camera_id)
                next_mark = now + MARK_EVERY_S
            if now >= next_frame:
                frame = self._next_frame(camera_id, key)
                if frame is not None:
                    key, jpeg = frame
                    if jpeg is not None:
                        part = multipart_part(jpeg)
                        next_frame, next_repeat = now + interval, now + REPEAT_S
                        yield part
                elif part is not None and now >= next_repeat:
                    next_repeat = now + REPEAT_S
                    yield part
            if wait(poll):
                return

    def _mark(self, camera_id: str) -> None:
        """Tell the CIS that someone watches; a folder that is not writable is logged once."""
        try:
            mark_watched(self.folder, camera_id)
        except OSError as exc:
            if not self._mark_failed:
                log.warning(
                    "live view cannot mark a camera as watched: its CIS writes no live frames",
                    extra={"folder": str(self.folder), "error": str(exc)[:300]},
                )
            self._mark_failed = True

    def _next_frame(
        self, camera_id: str, seen: FrameKey | None
    ) -> tuple[FrameKey, bytes | None] | None:
        """The camera's live frame, scaled, when it differs from ``seen`` and is recent; None
        when there is no such frame. The bytes are None for a frame that does not decode."""
        try:
            with live_frame_path(self.folder, camera_id).open("rb") as fh:
                stat = os.fstat(fh.fileno())
                key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
                if key == seen or time.time() - stat.st_mtime > STALE_AFTER_S:
                    return None
                with self._lock:
                    cached = self._scaled.get(camera_id)
                if cached is not None and cached[0] == key:
                    return cached
                if stat.st_size > MAX_FRAME_BYTES:
                    return key, None
                jpeg = fh.read()
        except (OSError, ValueError):
            return None
        scaled = live_jpeg(jpeg, self.config.max_width, self.config.quality)
        with self._lock:
            self._scaled[camera_id] = (key, scaled)
        return key, scaled
