"""The capture thread: reads a source continuously and keeps only the newest frame.

A slow consumer never builds a backlog and never sees stale frames: each new frame replaces the one
waiting (counted as dropped). A file source with no frame rate instead waits for the consumer, so
it is read at the pace of inference. With a trigger-paced camera every frame matters, so up to ``keep`` frames
wait instead. When the source fails, the thread reconnects forever with capped exponential backoff; its
state and counters are readable at any time for status reports.

A watchdog covers an open or read that blocks longer than ``stall_timeout`` (a stream that stops sending without
closing, a driver that hangs): it reports the stall, asks the source to abort the read, and when the read
still does not return within another ``stall_timeout``, leaves that thread behind and carries on with a
fresh source from ``reopen``. The thread left behind ends as soon as its read returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

from mfgvision.capture.base import Frame, FrameSource, NoFrameYet, SourceError
from mfgvision.capture.jpeg import decode, jpeg_size, reduction_for

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class CaptureStats:
    """What the capture thread has done so far."""

    state: str = "starting"
    source: str = ""
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    last_error: str | None = None
    decode_ms: float = 0.0


class FrameGrabber:
    """Runs a source on its own thread and hands out the newest frame."""

    def __init__(
        self,
        source: FrameSource,
        fps: float,
        keep: int = 1,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
        stall_timeout: float | None = None,
        reopen: Callable[[], FrameSource] | None = None,
    ) -> None:
        self.source = source
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.backoff = backoff
        self.stall_timeout = stall_timeout
        self.stats = CaptureStats(source=source.description)
        #: JPEG frames are decoded here, on the capture thread, no smaller than this long side;
        #: the inference thread then gets images ready. None leaves decoding to the consumer.
        self.decode_side: int | None = None
        self._clock = clock
        self._reopen = reopen
        self._frames: deque[Frame] = deque(maxlen=max(1, keep))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._seq = 0
        self._generation = 0
        self._busy_since: float | None = None
        self._left_behind: list[threading.Thread] = []
        self._thread = self._capture_thread(0, source)
        self._watchdog = (
            threading.Thread(target=self._watch, name="capture-watchdog", daemon=True)
            if stall_timeout
            else None
        )

    def _capture_thread(self, generation: int, source: FrameSource) -> threading.Thread:
        return threading.Thread(
            target=self._run, args=(generation, source), name="capture", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        if self._watchdog is not None:
            self._watchdog.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        try:
            self.source.interrupt()  # a grab waiting for a frame returns now
        except Exception as exc:
            log.warning("camera read not aborted", extra={"error": str(exc)})
        self._thread.join(timeout)
        if self._watchdog is not None and self._watchdog.is_alive():
            self._watchdog.join(timeout)

    @property
    def ended(self) -> bool:
        return self.stats.state in ("ended", "stopped")

    def configure(self, settings: CameraSettings) -> bool:
        """Apply changed camera settings to the running source; False = it must be reopened."""
        try:
            return self.source.configure(settings)
        except Exception as exc:
            log.warning("camera configure failed", extra={"error": str(exc)})
            return False

    def trigger(self) -> None:
        """Fire the source's software trigger; SourceError when it has none or is not open."""
        self.source.trigger()

    def next_frame(self, timeout: float) -> Frame | None:
        """The oldest waiting frame (the newest one when not trigger-paced), or None after timeout."""
        with self._cond:
            if not self._frames and not self._stop.is_set():
                self._cond.wait(timeout)
            frame = self._frames.popleft() if self._frames else None
            self._cond.notify_all()
            return frame

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _publish(self, generation: int, name: str, jpeg: bytes | None, image) -> None:
        if jpeg is not None:
            size = jpeg_size(jpeg)
            if size is None:
                log.warning("frame is not a readable JPEG, skipped", extra={"frame": name})
                return
            width, height = size
            if self.decode_side:
                t0 = time.perf_counter()
                image = decode(jpeg, reduction_for(width, height, self.decode_side))
                self.stats.decode_ms = (time.perf_counter() - t0) * 1000
                if image is None:
                    log.warning("frame is not a decodable JPEG, skipped", extra={"frame": name})
                    return
        else:
            height, width = image.shape[:2]
        with self._cond:
            if generation != self._generation:
                return
            self._seq += 1
            frame = Frame(self._seq, datetime.now(timezone.utc), name, width, height, jpeg, image)
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

    def _run(self, generation: int, source: FrameSource) -> None:
        delay = self.backoff[0]
        while self._current(generation):
            try:
                self.stats.state = "connecting" if self.stats.reconnects == 0 else "reconnecting"
                self._timed(generation, source.open)
                if not self._current(generation):
                    break
                self.stats.state, self.stats.last_error = "streaming", None
                log.info("camera opened", extra={"source": source.description})
                delay = self.backoff[0]
                if self._read_until_failure(generation, source):
                    break
            except SourceError as exc:
                self._failed(generation, source, str(exc))
            except Exception as exc:
                log.exception("capture failed unexpectedly")
                self._failed(generation, source, f"{type(exc).__name__}: {exc}")
            finally:
                source.close()
            if not self._current(generation):
                break
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])
        if generation != self._generation:
            log.info("blocked capture thread ended", extra={"source": source.description})
            return
        if self.stats.state != "ended":
            self.stats.state = "stopped"
        with self._cond:
            self._cond.notify_all()

    def _failed(self, generation: int, source: FrameSource, message: str) -> None:
        if generation != self._generation:
            return
        self.stats.reconnects += 1
        self.stats.state, self.stats.last_error = "reconnecting", message
        log.warning(
            "camera unavailable, will retry",
            extra={"source": source.description, "error": message},
        )

    def _timed(self, generation: int, call: Callable[[], T]) -> T:
        """Run an open or a read of the source, timed for the watchdog."""
        if generation == self._generation:
            self._busy_since = time.monotonic()
        try:
            return call()
        finally:
            if generation == self._generation:
                self._busy_since = None

    def _read_until_failure(self, generation: int, source: FrameSource) -> bool:
        """Read frames until the source ends (True) or the capture is stopped (True); raises on failure."""
        next_due = self._clock()
        while self._current(generation):
            if not source.live and self.period:
                wait = next_due - self._clock()
                if wait > 0 and self._stop.wait(wait):
                    return True
                next_due = max(next_due + self.period, self._clock() - self.period)
            elif not source.live:
                self._wait_for_room()
            try:
                item = self._timed(generation, source.read)
            except NoFrameYet:
                continue
            if not self._current(generation):
                return True
            if item is None:
                self.stats.state = "ended"
                log.info("camera source ended", extra={"source": source.description})
                return True
            if self.stats.state != "streaming":  # a slow read the watchdog flagged came back
                self.stats.state, self.stats.last_error = "streaming", None
            self._publish(generation, *item)
        return True

    def _watch(self) -> None:
        """Report an open or read blocked for longer than ``stall_timeout``, abort it, then replace it."""
        limit = float(self.stall_timeout or 0)
        flagged_at: float | None = None
        while not self._stop.wait(min(1.0, limit / 4)):
            since, now = self._busy_since, time.monotonic()
            if since is None or now - since < limit:
                flagged_at = None
                continue
            if flagged_at is None:
                flagged_at = now
                self.stats.state = "reconnecting"
                self.stats.last_error = f"camera blocked for more than {limit:g} s"
                log.warning(
                    "camera blocked, aborting the read",
                    extra={"source": self.source.description, "limit_s": limit},
                )
                try:
                    self.source.interrupt()
                except Exception as exc:
                    log.warning("camera read not aborted", extra={"error": str(exc)})
            elif now - flagged_at >= limit and self._reopen is not None:
                self._replace()
                flagged_at = None

    def _replace(self) -> None:
        """Leave the blocked capture thread behind and start over with a fresh source."""
        try:
            source = self._reopen() if self._reopen is not None else None
        except Exception as exc:
            self.stats.last_error = f"cannot rebuild the camera source: {exc}"
            log.warning("camera source not rebuilt", extra={"error": str(exc)})
            return
        if source is None:
            return
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._busy_since = None
            self._left_behind = [t for t in self._left_behind if t.is_alive()]
            self._left_behind.append(self._thread)
            self.source = source
            self.stats.reconnects += 1
            self.stats.state = "reconnecting"
        log.warning(
            "camera read still blocked, continuing with a fresh source",
            extra={"source": source.description, "left_behind": len(self._left_behind)},
        )
        self._thread = self._capture_thread(generation, source)
        self._thread.start()
