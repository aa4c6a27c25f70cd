"""Allied Vision cameras through vmbpy.

vmbpy's wheel has no transport layers (they come with Vimba X), so no camera, real or simulated, can
be opened here. The adapter is tested against ``create_autospec`` of vmbpy's real classes: every
call must match the SDK's actual signatures. The SDK's own start-up failure is tested for real.
"""

from __future__ import annotations

import threading
from typing import Any
from unittest.mock import create_autospec

import numpy as np
import pytest

from mfgvision.capture.allied import AlliedSource
from mfgvision.capture.base import NoFrameYet, SourceError
from mfgvision.settings import CameraSettings
from tests.capture.conftest import require_module
from tests.capture.test_pixels import mosaic


@pytest.fixture
def vmb():
    require_module("vmbpy", "allied")
    import vmbpy as sdk

    return sdk


class FakeVimba:
    """Autospecced VmbSystem, cameras, features and frames with a little state."""

    def __init__(self, sdk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sdk = sdk
        self.system = create_autospec(sdk.VmbSystem._VmbSystem__Impl, instance=True)
        self.system.__enter__.return_value = self.system
        self.cameras = [self._camera("DEV_000F31000001", "50-0501000001", "1800 U-240c")]
        self.cameras.append(self._camera("DEV_000F31000002", "50-0501000002", "1800 U-240c"))
        self.system.get_all_cameras.return_value = tuple(self.cameras)
        self.handlers: list[Any] = []
        self.system.register_camera_change_handler.side_effect = self.handlers.append
        monkeypatch.setattr(sdk.VmbSystem, "get_instance", staticmethod(lambda: self.system))

    def _camera(self, cam_id: str, serial: str, model: str) -> Any:
        camera = create_autospec(self.sdk.Camera, instance=True)
        camera.__enter__.return_value = camera
        camera.get_id.return_value = cam_id
        camera.get_serial.return_value = serial
        camera.get_name.return_value = model
        camera.features = self._features()
        camera.get_feature_by_name.side_effect = lambda name: self._lookup(camera, name)
        camera.stream_handler = None

        def start_streaming(handler, buffer_count=5, allocation_mode=None):
            camera.stream_handler = handler

        camera.start_streaming.side_effect = start_streaming
        return camera

    def _lookup(self, camera: Any, name: str) -> Any:
        if name not in camera.features:
            raise self.sdk.VmbFeatureError(f"Feature '{name}' not found.")
        return camera.features[name]

    def _features(self) -> dict[str, Any]:
        sdk = self.sdk
        feats: dict[str, Any] = {}

        def numeric(cls: Any, name: str, value: float, lo: float, hi: float) -> None:
            f = create_autospec(cls, instance=True)
            state = {"v": value}
            f.get.side_effect = lambda: state["v"]
            f.set.side_effect = lambda v: state.update(v=v)
            f.get_range.return_value = (lo, hi)
            f.get_increment.return_value = 1
            f.is_readable.return_value = f.is_writeable.return_value = True
            feats[name] = f

        def enum(name: str, value: str, entries: list[str]) -> None:
            f = create_autospec(sdk.EnumFeature, instance=True)
            state = {"v": value}

            def entry(n: str) -> Any:
                e = create_autospec(sdk.EnumEntry, instance=True)
                e.__str__.return_value = n
                return e

            f.get.side_effect = lambda: entry(state["v"])
            f.set.side_effect = lambda v: state.update(v=str(v))
            f.get_available_entries.side_effect = lambda: tuple(entry(n) for n in entries)
            f.is_readable.return_value = f.is_writeable.return_value = True
            feats[name] = f

        numeric(sdk.FloatFeature, "ExposureTime", 10000.0, 10.0, 1e7)
        numeric(sdk.FloatFeature, "Gain", 0.0, 0.0, 24.0)
        numeric(sdk.IntFeature, "Width", 1936, 8, 1936)
        numeric(sdk.IntFeature, "Height", 1216, 8, 1216)
        numeric(sdk.IntFeature, "OffsetX", 0, 0, 1928)
        numeric(sdk.IntFeature, "OffsetY", 0, 0, 1208)
        enum("ExposureAuto", "Continuous", ["Off", "Once", "Continuous"])
        enum("PixelFormat", "Mono8", ["Mono8", "BayerRG8", "BayerRG12", "Mono12p"])
        enum("TriggerSelector", "FrameStart", ["FrameStart", "AcquisitionStart"])
        enum("TriggerMode", "Off", ["Off", "On"])
        enum("TriggerSource", "Software", ["Software", "Line0", "Line1"])
        enum("TriggerActivation", "RisingEdge", ["RisingEdge", "FallingEdge"])
        command = create_autospec(sdk.CommandFeature, instance=True)
        command.is_readable.return_value = False
        command.is_writeable.return_value = True
        feats["TriggerSoftware"] = command
        return feats

    def frame(self, image: np.ndarray, pixel_format: Any, complete: bool = True) -> Any:
        frame = create_autospec(self.sdk.Frame, instance=True)
        status = self.sdk.FrameStatus
        frame.get_status.return_value = status.Complete if complete else status.Incomplete
        frame.get_pixel_format.return_value = pixel_format
        frame.as_numpy_ndarray.return_value = image
        return frame

    def deliver(self, camera: Any, frame: Any) -> None:
        """Call the frame handler from another thread, as vmbpy does."""
        t = threading.Thread(target=camera.stream_handler, args=(camera, None, frame))
        t.start()
        t.join()


def allied(**settings: Any) -> CameraSettings:
    return CameraSettings(camera_type="allied", **{"camera_uri": "50-0501000002", **settings})


def red_bayer() -> np.ndarray:
    scene = np.zeros((8, 8, 3), np.uint8)
    scene[:] = (0, 0, 255)
    return mosaic(scene, "RGGB")[:, :, None]  # vmbpy hands out (h, w, 1)


def test_open_applies_settings_streams_and_requeues_every_frame(vmb, monkeypatch):
    fake = FakeVimba(vmb, monkeypatch)
    src = AlliedSource(allied(camera_exposure_us=2000, camera_pixel_format="BayerRG8"))
    src.open()
    camera = fake.cameras[1]  # picked by serial number
    fake.system.__enter__.assert_called_once()
    camera.__enter__.assert_called_once()
    assert camera.features["ExposureTime"].get() == 2000
    assert str(camera.features["ExposureAuto"].get()) == "Off"
    assert str(camera.features["PixelFormat"].get()) == "BayerRG8"
    camera.start_streaming.assert_called_once()
    assert camera.start_streaming.call_args.kwargs["buffer_count"] == 5

    good = fake.frame(red_bayer(), vmb.PixelFormat.BayerRG8)
    broken = fake.frame(red_bayer(), vmb.PixelFormat.BayerRG8, complete=False)
    fake.deliver(camera, broken)
    fake.deliver(camera, good)
    camera.queue_frame.assert_any_call(broken)  # every buffer goes back to the camera
    camera.queue_frame.assert_any_call(good)
    name, _, image = src.read()
    assert name == "allied-00000001" and image.shape == (8, 8, 3)
    assert tuple(int(c) for c in image[4, 4]) == (0, 0, 255)  # BayerRG8 -> red stays red

    assert src.configure(allied(camera_exposure_us=500, camera_pixel_format="BayerRG8"))
    assert camera.features["ExposureTime"].get() == 500
    src.close()
    camera.stop_streaming.assert_called_once()
    camera.__exit__.assert_called_once()
    fake.system.__exit__.assert_called_once()
    fake.system.unregister_camera_change_handler.assert_called_once()


def test_formats_outside_ours_use_vmbpys_converter(vmb, monkeypatch):
    fake = FakeVimba(vmb, monkeypatch)
    src = AlliedSource(allied(camera_uri=""))
    src.open()
    camera = fake.cameras[0]  # the first one
    frame = fake.frame(np.zeros((4, 6), np.uint8), vmb.PixelFormat.Mono12p)
    converted = fake.frame(np.full((4, 6, 3), 9, np.uint8), vmb.PixelFormat.Bgr8)
    frame.convert_pixel_format.return_value = converted
    fake.deliver(camera, frame)
    frame.convert_pixel_format.assert_called_once_with(vmb.PixelFormat.Bgr8)
    assert src.read()[2].shape == (4, 6, 3)
    src.close()


def test_software_trigger_and_trigger_waits(vmb, monkeypatch):
    fake = FakeVimba(vmb, monkeypatch)
    src = AlliedSource(allied(camera_trigger_mode="software", camera_timeout_s=0.5))
    src.open()
    camera = fake.cameras[1]
    assert str(camera.features["TriggerMode"].get()) == "On"
    assert str(camera.features["TriggerSource"].get()) == "Software"
    with pytest.raises(NoFrameYet):
        src.read()
    src.trigger()
    camera.features["TriggerSoftware"].run.assert_called_once_with()
    src.close()


def test_a_camera_that_disappears_fails_the_read(vmb, monkeypatch):
    fake = FakeVimba(vmb, monkeypatch)
    src = AlliedSource(allied())
    src.open()
    camera = fake.cameras[1]
    (handler,) = fake.handlers
    handler(fake.cameras[0], vmb.CameraEvent.Missing)  # another camera: ignored
    fake.deliver(camera, fake.frame(red_bayer(), vmb.PixelFormat.BayerRG8))
    assert src.read() is not None
    handler(camera, vmb.CameraEvent.Missing)
    with pytest.raises(SourceError, match=r"acquisition stopped|disconnected"):
        src.read()
    src.close()


def test_unknown_camera_lists_what_was_found(vmb, monkeypatch):
    FakeVimba(vmb, monkeypatch)
    with pytest.raises(SourceError, match="found: DEV_000F31000001/50-0501000001"):
        AlliedSource(allied(camera_uri="DEV_NOPE")).open()


def test_real_vmbpy_without_transport_layers_is_a_source_error(vmb):
    # The real SDK: here it finds no transport layer (or, with Vimba X installed, no camera).
    with pytest.raises(SourceError, match="allied:"):
        AlliedSource(allied(camera_timeout_s=1)).open()
