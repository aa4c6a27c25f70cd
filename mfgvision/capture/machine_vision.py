"""What the Basler, Allied Vision and GenTL sources share: settings, triggers, reads, conversion.

A subclass only talks to its SDK: find and open the device, wrap its node map as
:class:`~mfgvision.capture.features.Features`, start and stop acquisition, and grab one image with
a timeout. The SDK is imported inside those methods, so the product runs without it; a missing
SDK is reported when the source is built, naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mfgvision.capture.base import FrameSource, NoFrameYet, SourceError
from mfgvision.capture.features import CameraConfig, Features, apply_config, software_trigger
from mfgvision.capture.pixels import PixelFormatError, to_bgr

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

log = logging.getLogger(__name__)

#: How long a trigger-paced read waits before it lets the capture thread look around.
TRIGGER_POLL_S = 1.0

T = TypeVar("T")


def require_module(module: str, extra: str, camera: str) -> None:
    """SourceError naming the extra to install when ``module`` cannot be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SourceError(
            f"{camera} cameras need the Python package '{module}', which is not installed: "
            f"pip install 'mfgvision[{extra}]' (see docs/cameras.md)"
        )


def pick_device(devices: Sequence[T], ids: Iterable[Sequence[str]], selector: str, what: str) -> T:
    """The device whose identifiers (serial, user id, ...) include ``selector``; the first when empty.

    ``ids`` holds one sequence of identifiers per device, in the same order as ``devices``.
    """
    if not devices:
        raise SourceError(f"no {what} camera found")
    if not selector:
        return devices[0]
    names = [list(n) for n in ids]
    for device, device_ids in zip(devices, names, strict=True):
        if selector in device_ids:
            return device
    found = ", ".join("/".join(n for n in device_ids if n) for device_ids in names)
    raise SourceError(f"no {what} camera with serial number or id {selector!r}; found: {found}")


class MachineVisionSource(FrameSource):
    """A GenICam camera through a vendor SDK; frames come out as 8-bit BGR."""

    #: camera_type, also the prefix of frame names
    kind = ""
    #: what the documentation calls the camera family
    label = ""

    def __init__(self, settings: CameraSettings) -> None:
        self.selector = settings.camera_uri.strip()
        self.config = CameraConfig.from_settings(settings)
        self._lock = threading.RLock()
        self._features: Features | None = None
        self._opened = False
        self._count = 0

    @property
    def description(self) -> str:
        return f"{self.kind}:{self.selector or 'first camera'}"

    # --- what a subclass implements -------------------------------------------------------

    @abstractmethod
    def _open_device(self) -> Features:
        """Find and open the camera (acquisition stopped); return its features."""

    @abstractmethod
    def _start(self) -> None:
        """Start acquisition."""

    @abstractmethod
    def _grab(self, timeout_s: float) -> tuple[np.ndarray, str] | None:
        """One image and its pixel format name, or None when none came within ``timeout_s``."""

    @abstractmethod
    def _close_device(self) -> None:
        """Stop acquisition and release everything; must not raise, safe when half open."""

    def _device_lost(self) -> bool:
        """True when the SDK knows the camera is gone (a grab timeout then is a failure)."""
        return False

    def _abort(self) -> None:
        """Make a blocked ``_grab`` return; called from another thread."""

    # --- FrameSource ------------------------------------------------------------------------

    def open(self) -> None:
        self.close()
        with self._lock:
            try:
                self._features = self._open_device()
                apply_config(self._features, self.config)
                self._start()
            except SourceError:
                self._close_device()
                raise
            except Exception as exc:
                self._close_device()
                raise SourceError(f"{self.description}: {type(exc).__name__}: {exc}") from exc
            self._opened = True

    def read(self) -> tuple[str, bytes | None, np.ndarray | None]:
        config = self.config
        triggered = config.trigger_mode != "off"
        timeout = min(config.timeout_s, TRIGGER_POLL_S) if triggered else config.timeout_s
        if not self._opened:
            raise SourceError(f"{self.description} is not open")
        try:
            got = self._grab(timeout)
        except (SourceError, NoFrameYet):
            raise
        except Exception as exc:
            raise SourceError(f"{self.description}: grab failed: {exc}") from exc
        if got is None:
            if self._device_lost():
                raise SourceError(f"{self.description}: camera disconnected")
            if triggered:
                raise NoFrameYet
            raise SourceError(f"{self.description}: no frame within {config.timeout_s:g} s")
        image, pixel_format = got
        try:
            bgr = to_bgr(image, pixel_format)
        except PixelFormatError as exc:
            raise SourceError(f"{self.description}: {exc}") from None
        self._count += 1
        return f"{self.kind}-{self._count:08d}", None, bgr

    def close(self) -> None:
        with self._lock:
            self._opened = False
            self._features = None
            self._close_device()

    def configure(self, settings: CameraSettings) -> bool:
        new = CameraConfig.from_settings(settings)
        with self._lock:
            if not self._opened or self._features is None:
                self.config = new  # written when the capture thread opens the camera
                return True
            try:
                applied = apply_config(self._features, new, old=self.config, acquiring=True)
            except Exception as exc:
                log.warning(
                    "camera setting not applied live",
                    extra={"source": self.description, "error": str(exc)},
                )
                applied = False
            if applied:
                self.config = new
                log.info("camera settings applied live", extra={"source": self.description})
            return applied

    def trigger(self) -> None:
        with self._lock:
            if not self._opened or self._features is None:
                raise SourceError(f"{self.description} is not open")
            try:
                software_trigger(self._features, self.config)
            except SourceError:
                raise
            except Exception as exc:
                raise SourceError(f"{self.description}: software trigger failed: {exc}") from exc

    def feature(self, name: str) -> Any:
        """The current value of a camera feature (diagnostics); SourceError when not open."""
        with self._lock:
            if not self._opened or self._features is None:
                raise SourceError(f"{self.description} is not open")
            return self._features.get(name)

    def interrupt(self) -> None:
        try:
            self._abort()
        except Exception as exc:
            log.warning(
                "camera abort failed", extra={"source": self.description, "error": str(exc)}
            )
