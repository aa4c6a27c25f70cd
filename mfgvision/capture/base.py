"""What every frame source is and what it hands out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings


class SourceError(RuntimeError):
    """A source that cannot open or read right now (missing camera, stream down, folder gone)."""


class NoFrameYet(Exception):
    """``read`` had no frame within its poll interval, but the source is fine.

    A trigger-paced camera raises it while it waits for the next trigger, so the capture thread can
    check whether it should stop and then read again, without counting a failure.
    """


@dataclass
class Frame:
    """One captured frame: the encoded bytes when the source had them, and the decoded image.

    ``width``/``height`` are the original frame size; ``captured_at`` is timezone-aware UTC. A JPEG
    frame's ``image`` may be decoded at reduced size (see ``FrameGrabber.decode_side``).
    """

    seq: int
    captured_at: datetime
    name: str
    width: int
    height: int
    jpeg: bytes | None = None
    image: np.ndarray | None = None


class FrameSource(ABC):
    """A blocking reader of frames. The capture thread owns it; nothing else calls it."""

    #: True when the source delivers in real time by itself (a live stream); False for files,
    #: which the capture thread paces at the configured camera fps.
    live: bool = True

    @property
    @abstractmethod
    def description(self) -> str:
        """A name safe for logs (no credentials)."""

    @abstractmethod
    def open(self) -> None:
        """Open the source; raise SourceError when it cannot be had."""

    @abstractmethod
    def read(self) -> tuple[str, bytes | None, np.ndarray | None] | None:
        """The next frame as (name, jpeg bytes or None, image or None); None at the end of a file.

        Raises SourceError when the source fails (the capture thread then reconnects).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device or stream; safe to call twice."""

    def configure(self, settings: CameraSettings) -> bool:
        """Apply changed camera settings to the open source, from another thread.

        True when everything was applied live; False when the source must be reopened with the new
        settings (the default: a source that cannot change anything while open).
        """
        return False

    def trigger(self) -> None:
        """Fire a software trigger (any thread); SourceError when the source cannot."""
        raise SourceError(f"{self.description} has no software trigger")

    def interrupt(self) -> None:
        """Make a ``read`` blocked in another thread return (with SourceError) where possible.

        Called by the capture thread's watchdog. The default does nothing: the watchdog then gives
        up on the blocked thread and continues with a fresh source.
        """
        return None
