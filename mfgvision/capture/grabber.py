"""The capture thread: reads a source continuously and keeps only the newest frame.

A slow consumer never builds a backlog and never sees stale frames: each new frame replaces the one
waiting (counted as dropped). A file source with no frame rate instead waits for the consumer, so
it is read at the pace of inference. With a trigger-paced camera every frame matters, so up to ``keep`` frames
wait instead. When the source fails, the thread reconnects forever with capped exponential backoff; its
state and counters are readable at any time for status reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from mfgvision.capture.base import Frame, FrameSource, SourceError
from mfgvision.capture.jpeg import jpeg_size

log = logging.getLogger(__name__)


@dataclass
class CaptureStats:
    """What the capture thread has done so far."""

    state: str = "starting"
    source: str = ""
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    last_error: str | None = None


class FrameGrabber:
    """Runs a source on its own thread and hands out the newest frame."""

    def __init__(
        self,
        source: FrameSource,
        fps: float,
        keep: int = 1,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.backoff = backoff
        self.stats = CaptureStats(source=source.description)
        self._clock = clock
        self._frames: deque[Frame] = deque(maxlen=max(1, keep))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def ended(self) -> bool:
        return self.stats.state in ("ended", "stopped")

    def next_frame(self, timeout: float) -> Frame | None:
        """The oldest waiting frame (the newest one when not trigger-paced), or None after timeout."""
        with self._cond:
            if not self._frames and not self._stop.is_set():
                self._cond.wait(timeout)
            frame = self._frames.popleft() if self._frames else None
            self._cond.notify_all()
            return frame

    def _publish(self, name: str, jpeg: bytes | None, image) -> None:
        if jpeg is not None:
            size = jpeg_size(jpeg)
            if size is None:
                log.warning("frame is not a readable JPEG, skipped", extra={"frame": name})
                return
            width, height = size
        else:
            height, width = image.shape[:2]
        self._seq += 1
        frame = Frame(self._seq, datetime.now(timezone.utc), name, width, height, jpeg, image)
        with self._cond:
            if len(self._frames) == self._frames.maxlen:
                self.stats.dropped += 1
            self._frames.append(frame)
            self.stats.frames += 1
            self._cond.notify()

    def _wait_for_room(self) -> None:
        """An unpaced file source reads ahead no further than the consumer takes frames."""
        with self._cond:
            while len(self._frames) == self._frames.maxlen and not self._stop.is_set():
                self._cond.wait(0.5)

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            try:
                self.stats.state = "connecting" if self.stats.reconnects == 0 else "reconnecting"
                self.source.open()
                self.stats.state, self.stats.last_error = "streaming", None
                log.info("camera opened", extra={"source": self.source.description})
                delay = self.backoff[0]
                if self._read_until_failure():
                    break
            except SourceError as exc:
                self._failed(str(exc))
            except Exception as exc:
                log.exception("capture failed unexpectedly")
                self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                self.source.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])
        if self.stats.state != "ended":
            self.stats.state = "stopped"
        with self._cond:
            self._cond.notify_all()

    def _failed(self, message: str) -> None:
        self.stats.reconnects += 1
        self.stats.state, self.stats.last_error = "reconnecting", message
        log.warning(
            "camera unavailable, will retry",
            extra={"source": self.source.description, "error": message},
        )

    def _read_until_failure(self) -> bool:
        """Read frames until the source ends (True) or the capture is stopped (True); raises on failure."""
        next_due = self._clock()
        while not self._stop.is_set():
            if not self.source.live and self.period:
                wait = next_due - self._clock()
                if wait > 0 and self._stop.wait(wait):
                    return True
                next_due = max(next_due + self.period, self._clock() - self.period)
            elif not self.source.live:
                self._wait_for_room()
            item = self.source.read()
            if item is None:
                self.stats.state = "ended"
                log.info("camera source ended", extra={"source": self.source.description})
                return True
            self._publish(*item)
        return True
