"""The shared GenICam feature logic, against a node map held in a dict."""

from __future__ import annotations

from typing import Any

import pytest

from mfgvision.capture.base import SourceError
from mfgvision.capture.features import (
    CameraConfig,
    FeatureError,
    apply_config,
    software_trigger,
)
from mfgvision.capture.machine_vision import pick_device
from mfgvision.settings import CameraSettings


class DictFeatures:
    """A fake camera: values, ranges, enum entries, and what is locked while acquiring."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {
            "PixelFormat": "Mono8",
            "Width": 1024,
            "Height": 768,
            "OffsetX": 0,
            "OffsetY": 0,
            "ExposureTime": 10000.0,
            "ExposureAuto": "Continuous",
            "Gain": 0.0,
            "GainAuto": "Off",
            "AcquisitionFrameRate": 30.0,
            "AcquisitionFrameRateEnable": False,
            "TriggerSelector": "FrameStart",
            "TriggerMode": "Off",
            "TriggerSource": "Software",
            "TriggerActivation": "RisingEdge",
            "TriggerSoftware": None,
            "BalanceWhiteAuto": "Off",
        }
        self.ranges = {
            "Width": (16, 1024, 16),
            "Height": (16, 768, 2),
            "OffsetX": (0, 1008, 16),
            "OffsetY": (0, 752, 2),
            "ExposureTime": (20.0, 1e6, None),
            "Gain": (0.0, 24.0, None),
            "AcquisitionFrameRate": (1.0, 120.0, None),
        }
        self.enums = {
            "PixelFormat": ["Mono8", "BayerRG8", "BayerRG12"],
            "TriggerSelector": ["FrameStart", "AcquisitionStart"],
            "TriggerMode": ["Off", "On"],
            "TriggerSource": ["Software", "Line1", "Line2"],
            "TriggerActivation": ["RisingEdge", "FallingEdge"],
            "ExposureAuto": ["Off", "Continuous"],
            "GainAuto": ["Off"],
            "BalanceWhiteAuto": ["Off", "Continuous"],
        }
        self.locked_while_acquiring = {"PixelFormat", "Width", "Height", "OffsetX", "OffsetY"}
        self.acquiring = False
        self.writes: list[tuple[str, Any]] = []
        self.executed: list[str] = []

    def available(self, name: str) -> bool:
        return name in self.values

    def writable(self, name: str) -> bool:
        return name in self.values and not (self.acquiring and name in self.locked_while_acquiring)

    def get(self, name: str) -> Any:
        return self.values[name]

    def set(self, name: str, value: Any) -> None:
        if name in self.enums and value not in self.enums[name]:
            raise ValueError(f"{value} not an entry of {name}")
        lo, hi, _ = self.ranges.get(name, (None, None, None))
        if lo is not None and not lo <= value <= hi:
            raise ValueError("out of range")
        self.values[name] = value
        self.writes.append((name, value))

    def execute(self, name: str) -> None:
        self.executed.append(name)

    def entries(self, name: str) -> list[str]:
        return self.enums[name]

    def limits(self, name: str) -> tuple[float, float, float | None]:
        return self.ranges[name]


def config(**settings: Any) -> CameraConfig:
    return CameraConfig.from_settings(CameraSettings(camera_type="basler", **settings))


def test_nothing_is_written_for_empty_settings_except_free_run():
    f = DictFeatures()
    assert apply_config(f, config())
    assert f.writes == []  # TriggerMode is already Off
    f.values["TriggerMode"] = "On"
    assert apply_config(f, config())
    assert f.writes == [("TriggerMode", "Off")]


def test_open_writes_everything_in_a_safe_order():
    f = DictFeatures()
    f.values["OffsetX"] = 512
    c = config(
        camera_pixel_format="BayerRG8",
        camera_roi_width=640,
        camera_roi_height=480,
        camera_roi_x=100,
        camera_exposure_us=5000,
        camera_gain_db=6,
        camera_frame_rate=10,
        camera_features={"BalanceWhiteAuto": "Continuous"},
        camera_trigger_mode="hardware",
        camera_trigger_source="Line2",
        camera_trigger_activation="FallingEdge",
    )
    assert apply_config(f, c)
    names = [n for n, _ in f.writes]
    # the offset goes to 0 before the width grows, the auto mode goes off before the exposure
    assert names.index("OffsetX") < names.index("Width")
    assert names.index("ExposureAuto") < names.index("ExposureTime")
    assert names.index("AcquisitionFrameRateEnable") < names.index("AcquisitionFrameRate")
    assert names.index("BalanceWhiteAuto") < names.index("TriggerMode")
    assert names[-1] == "TriggerMode"
    v = f.values
    assert (v["PixelFormat"], v["Width"], v["Height"], v["OffsetX"], v["OffsetY"]) == (
        "BayerRG8",
        640,
        480,
        96,  # rounded down to the offset increment
        0,
    )
    assert (v["ExposureTime"], v["ExposureAuto"], v["Gain"], v["AcquisitionFrameRate"]) == (
        5000,
        "Off",
        6,
        10,
    )
    assert (v["TriggerMode"], v["TriggerSource"], v["TriggerActivation"]) == (
        "On",
        "Line2",
        "FallingEdge",
    )


def test_numbers_are_clamped_to_the_camera_range(caplog):
    f = DictFeatures()
    assert apply_config(f, config(camera_exposure_us=5, camera_roi_width=5000))
    assert f.values["ExposureTime"] == 20.0 and f.values["Width"] == 1024
    assert "adjusted to the camera's range" in caplog.text


def test_live_changes_only_what_changed_and_reopens_for_size_changes():
    f = DictFeatures()
    old = config(camera_exposure_us=5000)
    apply_config(f, old)
    f.acquiring, f.writes = True, []
    assert apply_config(f, config(camera_exposure_us=2500, camera_gain_db=3), old, acquiring=True)
    assert f.writes == [("ExposureTime", 2500), ("Gain", 3)]
    f.writes = []
    assert not apply_config(f, config(camera_pixel_format="BayerRG8"), old, acquiring=True)
    assert not apply_config(f, config(camera_roi_width=320), old, acquiring=True)
    assert f.writes == []  # nothing half-applied before the reopen


def test_a_live_change_the_camera_refuses_means_reopen():
    f = DictFeatures()
    old = config()
    f.acquiring = True
    f.locked_while_acquiring.add("ExposureTime")
    assert not apply_config(f, config(camera_exposure_us=100), old, acquiring=True)
    f.locked_while_acquiring.discard("ExposureTime")
    f.values.pop("Gain")
    f.values.pop("GainAuto")
    assert apply_config(f, config(camera_gain_db=3), old, acquiring=True)  # no Gain: ignored


def test_settings_the_camera_can_never_take_raise():
    f = DictFeatures()
    with pytest.raises(FeatureError, match="not offered by the camera"):
        apply_config(f, config(camera_pixel_format="RGB8"))
    with pytest.raises(FeatureError, match="Line7"):
        apply_config(f, config(camera_trigger_mode="hardware", camera_trigger_source="Line7"))
    with pytest.raises(FeatureError, match="NoSuchFeature"):
        apply_config(f, config(camera_features={"NoSuchFeature": 1}))
    for name in ("TriggerMode", "TriggerSelector", "TriggerSource", "TriggerActivation"):
        f.values.pop(name)
    assert apply_config(f, config())  # free run on a camera without triggers is fine
    with pytest.raises(FeatureError, match="cannot be triggered"):
        apply_config(f, config(camera_trigger_mode="software"))


def test_software_trigger_needs_software_mode():
    f = DictFeatures()
    software_trigger(f, config(camera_trigger_mode="software"))
    assert f.executed == ["TriggerSoftware"]
    with pytest.raises(SourceError, match="needs 'software'"):
        software_trigger(f, config(camera_trigger_mode="hardware"))


def test_pick_device_by_serial_or_user_id_or_first():
    devices = ["cam-a", "cam-b"]
    ids = [["1001", "left"], ["1002", "right"]]
    assert pick_device(devices, ids, "", "Test") == "cam-a"
    assert pick_device(devices, ids, "1002", "Test") == "cam-b"
    assert pick_device(devices, ids, "left", "Test") == "cam-a"
    with pytest.raises(SourceError, match=r"found: 1001/left, 1002/right"):
        pick_device(devices, ids, "9999", "Test")
    with pytest.raises(SourceError, match="no Test camera found"):
        pick_device([], [], "", "Test")
