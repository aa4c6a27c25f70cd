"""Camera settings as GenICam features, written the same way whatever the SDK.

Basler (pypylon), Allied Vision (vmbpy) and any GenTL camera (harvesters) all expose the GenICam
standard feature names (SFNC). Each adapter wraps its SDK's node map in a small :class:`Features`
object; :func:`apply_config` then decides what to write, in which order, and what can change while
the camera is acquiring.

- Exposure, gain, frame rate and the trigger can change live on most cameras. Each is written only
  when it is writable at that moment; otherwise the caller reopens the camera.
- Pixel format and ROI change the image size, so they are never changed while acquiring.
- A setting left empty (None) is not written: the camera keeps its own (or its user set's) value.
- ``camera_features`` adds any other feature by name (vendor features, user sets), written in the
  given order after the standard ones and before the trigger.
- Numbers outside the camera's range are clamped to it, with a warning in the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mfgvision.capture.base import SourceError

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

log = logging.getLogger(__name__)

#: Settings that :meth:`FrameSource.configure` may apply to an open camera.
CAMERA_FEATURE_KEYS = (
    "camera_trigger_mode",
    "camera_trigger_source",
    "camera_trigger_activation",
    "camera_exposure_us",
    "camera_gain_db",
    "camera_pixel_format",
    "camera_roi_x",
    "camera_roi_y",
    "camera_roi_width",
    "camera_roi_height",
    "camera_frame_rate",
    "camera_features",
    "camera_timeout_s",
)

# Standard names first, then the older SFNC names some GigE cameras still use.
EXPOSURE = ("ExposureTime", "ExposureTimeAbs")
GAIN = ("Gain", "GainAbs")
FRAME_RATE = ("AcquisitionFrameRate", "AcquisitionFrameRateAbs")


class FeatureError(SourceError):
    """A camera feature that cannot be set to what the settings ask."""


class Features(Protocol):
    """The few node-map operations the settings need, implemented once per SDK."""

    def available(self, name: str) -> bool:
        """The camera has the feature and it is usable now."""

    def writable(self, name: str) -> bool:
        """The feature can be written now."""

    def get(self, name: str) -> Any:
        """The feature's value (an enum's symbolic name for enumerations)."""

    def set(self, name: str, value: Any) -> None:
        """Write the feature."""

    def execute(self, name: str) -> None:
        """Run a command feature."""

    def entries(self, name: str) -> list[str]:
        """The symbolic names an enumeration accepts now."""

    def limits(self, name: str) -> tuple[float, float, float | None]:
        """(min, max, increment or None) of a numeric feature."""


@dataclass(frozen=True)
class CameraConfig:
    """The camera-side settings of one CIS module."""

    trigger_mode: str = "off"
    trigger_source: str = "Line1"
    trigger_activation: str = "RisingEdge"
    exposure_us: float | None = None
    gain_db: float | None = None
    pixel_format: str | None = None
    roi: tuple[int | None, int | None, int | None, int | None] = (None, None, None, None)
    frame_rate: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, s: CameraSettings) -> CameraConfig:
        return cls(
            trigger_mode=s.camera_trigger_mode,
            trigger_source=s.camera_trigger_source,
            trigger_activation=s.camera_trigger_activation,
            exposure_us=s.camera_exposure_us,
            gain_db=s.camera_gain_db,
            pixel_format=s.camera_pixel_format,
            roi=(s.camera_roi_x, s.camera_roi_y, s.camera_roi_width, s.camera_roi_height),
            frame_rate=s.camera_frame_rate,
            extra=tuple(s.camera_features.items()),
            timeout_s=s.camera_timeout_s,
        )

    @property
    def trigger(self) -> tuple[str, str, str]:
        return (self.trigger_mode, self.trigger_source, self.trigger_activation)


class _Reopen(Exception):
    """A live change the camera does not accept while acquiring."""


def _first(f: Features, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if f.available(n)), None)


def _set(f: Features, name: str, value: Any, live: bool) -> None:
    if not f.writable(name):
        if live:
            raise _Reopen(name)
        raise FeatureError(f"camera feature {name} is not writable")
    try:
        f.set(name, value)
    except Exception as exc:
        if live:
            raise _Reopen(name) from exc
        raise FeatureError(f"cannot set camera feature {name} to {value!r}: {exc}") from exc


def _set_number(f: Features, name: str, value: float, live: bool, integer: bool = False) -> None:
    lo, hi, inc = f.limits(name)
    clamped = min(max(value, lo), hi)
    if integer:
        step = int(inc or 1)
        clamped = int(lo + (int(clamped - lo) // step) * step)
    if clamped != value:
        log.warning(
            "camera setting adjusted to the camera's range",
            extra={"feature": name, "wanted": value, "set": clamped, "min": lo, "max": hi},
        )
    _set(f, name, clamped, live)


def _set_optional(f: Features, name: str, value: Any, live: bool) -> None:
    """Write a helper feature (ExposureAuto, ...) when the camera has it and it needs changing."""
    if f.available(name) and f.get(name) != value:
        _set(f, name, value, live)


def _numeric(
    f: Features,
    names: tuple[str, ...],
    value: float,
    live: bool,
    auto: str | None = None,
    enable: str | None = None,
) -> None:
    """Set a float feature, first switching off its automatic mode or switching on its enable."""
    name = _first(f, names)
    if name is None:
        log.warning("camera has no such feature, setting ignored", extra={"feature": names[0]})
        return
    if auto is not None:
        _set_optional(f, auto, "Off", live)
    if enable is not None:
        _set_optional(f, enable, True, live)
    _set_number(f, name, value, live)


def _pixel_format(f: Features, value: str) -> None:
    if not f.available("PixelFormat"):
        raise FeatureError("camera has no PixelFormat feature")
    entries = f.entries("PixelFormat")
    if value not in entries:
        raise FeatureError(f"pixel format {value!r} not offered by the camera; it has {entries}")
    if f.get("PixelFormat") != value:
        _set(f, "PixelFormat", value, live=False)


def _roi_axis(f: Features, size_name: str, offset_name: str, size: int | None, offset: int | None):
    has_offset = f.available(offset_name)
    if size is not None:
        if not f.available(size_name):
            log.warning("camera has no such feature, ROI ignored", extra={"feature": size_name})
            return
        if has_offset:
            _set(f, offset_name, 0, live=False)  # frees the whole sensor for the new size
        _set_number(f, size_name, size, live=False, integer=True)
        offset = offset or 0
    if offset is not None and has_offset:
        _set_number(f, offset_name, offset, live=False, integer=True)


def _extra(f: Features, name: str, value: Any, live: bool) -> None:
    if not f.available(name):
        raise FeatureError(f"camera has no feature {name!r} (camera_features)")
    _set(f, name, value, live)


def _trigger(f: Features, c: CameraConfig, live: bool) -> None:
    if not f.available("TriggerMode"):
        if c.trigger_mode == "off":
            return
        raise FeatureError("camera has no TriggerMode feature; it cannot be triggered")
    if f.available("TriggerSelector") and "FrameStart" in f.entries("TriggerSelector"):
        _set_optional(f, "TriggerSelector", "FrameStart", live)
    if c.trigger_mode == "off":
        _set_optional(f, "TriggerMode", "Off", live)
        return
    source = "Software" if c.trigger_mode == "software" else c.trigger_source
    if f.available("TriggerSource"):
        if source not in (entries := f.entries("TriggerSource")):
            raise FeatureError(f"trigger source {source!r} not offered; the camera has {entries}")
        _set_optional(f, "TriggerSource", source, live)
    if c.trigger_mode == "hardware" and f.available("TriggerActivation"):
        _set_optional(f, "TriggerActivation", c.trigger_activation, live)
    _set_optional(f, "TriggerMode", "On", live)


def apply_config(
    f: Features, new: CameraConfig, old: CameraConfig | None = None, acquiring: bool = False
) -> bool:
    """Write ``new`` to the camera; with ``old``, only what differs from it.

    While ``acquiring``, returns False as soon as a change cannot be made live (the caller then
    reopens the camera, which writes everything with acquisition stopped). Raises FeatureError for
    settings the camera can never take (unknown pixel format, no trigger).
    """

    def changed(attr: str) -> bool:
        value = getattr(new, attr)
        return value != getattr(old, attr) if old is not None else value not in (None, "off", ())

    if acquiring and (changed("pixel_format") or changed("roi")):
        return False
    try:
        if changed("pixel_format") and new.pixel_format:
            _pixel_format(f, new.pixel_format)
        if changed("roi"):
            x, y, width, height = new.roi
            _roi_axis(f, "Width", "OffsetX", width, x)
            _roi_axis(f, "Height", "OffsetY", height, y)
        if changed("exposure_us") and new.exposure_us is not None:
            _numeric(f, EXPOSURE, new.exposure_us, acquiring, auto="ExposureAuto")
        if changed("gain_db") and new.gain_db is not None:
            _numeric(f, GAIN, new.gain_db, acquiring, auto="GainAuto")
        if changed("frame_rate") and new.frame_rate is not None:
            _numeric(f, FRAME_RATE, new.frame_rate, acquiring, enable="AcquisitionFrameRateEnable")
        if changed("extra"):
            before = dict(old.extra) if old is not None else {}
            for name, value in new.extra:
                if name not in before or before[name] != value:
                    _extra(f, name, value, acquiring)
        if old is None or old.trigger != new.trigger:
            _trigger(f, new, acquiring)
    except _Reopen as exc:
        log.info("camera setting needs a reopen", extra={"feature": str(exc)})
        return False
    return True


def software_trigger(f: Features, config: CameraConfig) -> None:
    """Fire TriggerSoftware; SourceError when the camera is not waiting for a software trigger."""
    if config.trigger_mode != "software":
        raise SourceError(
            f"camera_trigger_mode is {config.trigger_mode!r}; a software trigger needs 'software'"
        )
    if not f.available("TriggerSoftware"):
        raise SourceError("camera has no TriggerSoftware command")
    f.execute("TriggerSoftware")
