"""GenICam cameras through harvesters and a real GenTL producer: ``viky.cti``, the simulated camera
shipped in the genicam wheel (three devices: red, green and blue; RGBa8 or Mono8, 400 x 400)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfgvision.capture.base import SourceError
from mfgvision.capture.factory import build_source
from mfgvision.capture.gentl import PRODUCER_ENV, GenTLSource, find_producers
from mfgvision.capture.grabber import FrameGrabber
from mfgvision.settings import CameraSettings, SettingsError, parse_settings
from tests.capture.conftest import wait_for


@pytest.fixture(autouse=True)
def producer_folder(viky_cti, monkeypatch):
    """Producers load only from the folders of GENICAM_GENTL64_PATH."""
    monkeypatch.setenv(PRODUCER_ENV, str(viky_cti.parent))


def genicam(cti: Path | None, **settings) -> CameraSettings:
    return CameraSettings(
        camera_type="genicam",
        camera_gentl_producer=cti.name if cti else None,
        **{"camera_uri": "", **settings},
    )


def dominant_channel(image: np.ndarray) -> int:
    return int(np.argmax(image.reshape(-1, 3).astype(float).mean(axis=0)))


@pytest.mark.parametrize(("device", "channel"), [("VikyTL_DEV_red", 2), ("2", 0)])
def test_camera_by_id_or_serial_and_rgba_to_bgr(viky_cti, device, channel):
    src = build_source(genicam(viky_cti, camera_uri=device), Path("."))
    assert isinstance(src, GenTLSource)
    src.open()
    try:
        name, _, image = src.read()
    finally:
        src.close()
    assert name == "genicam-00000001" and image.shape == (400, 400, 3)
    assert dominant_channel(image) == channel  # red device -> BGR channel 2, blue (serial 2) -> 0


def test_settings_at_open_and_live(viky_cti):
    settings = genicam(
        viky_cti, camera_pixel_format="Mono8", camera_roi_width=320, camera_frame_rate=40
    )
    src = GenTLSource(settings)
    grabber = FrameGrabber(src, fps=0)
    grabber.start()
    try:
        assert wait_for(lambda: grabber.stats.frames >= 1)
        frame = grabber.next_frame(timeout=30)
        assert frame is not None and (frame.width, frame.height) == (320, 400)
        assert frame.image is not None and frame.image.shape == (400, 320, 3)
        assert src.feature("PixelFormat") == "Mono8"
        assert src.feature("AcquisitionFrameRate") == pytest.approx(40)
        assert grabber.configure(settings.model_copy(update={"camera_frame_rate": 25.0}))
        assert src.feature("AcquisitionFrameRate") == pytest.approx(25)
        assert not grabber.configure(settings.model_copy(update={"camera_pixel_format": "RGBa8"}))
        assert grabber.stats.reconnects == 0
    finally:
        grabber.stop()


def test_producer_from_the_environment(viky_cti, monkeypatch):
    monkeypatch.setenv(PRODUCER_ENV, f"/nonexistent:{viky_cti.parent}")
    assert viky_cti in find_producers(None, f"/nonexistent:{viky_cti.parent}")
    src = GenTLSource(genicam(None, camera_uri="VikyTL_DEV_green"))
    src.open()
    try:
        assert dominant_channel(src.read()[2]) == 1
    finally:
        src.close()


def test_missing_producer_camera_or_trigger_is_a_clear_error(viky_cti, tmp_path, monkeypatch):
    monkeypatch.delenv(PRODUCER_ENV, raising=False)
    with pytest.raises(SourceError, match="no GenTL producer"):
        GenTLSource(genicam(None)).open()
    with pytest.raises(SourceError, match=r"no GenTL producer vendor\.cti"):
        GenTLSource(genicam(tmp_path / "vendor.cti")).open()
    monkeypatch.setenv(PRODUCER_ENV, str(viky_cti.parent))
    with pytest.raises(SourceError, match=r"'cam-9'; found: .*VikyTL_DEV_red"):
        GenTLSource(genicam(viky_cti, camera_uri="cam-9")).open()
    with pytest.raises(SourceError, match="cannot be triggered"):
        GenTLSource(genicam(viky_cti, camera_trigger_mode="software")).open()


def test_a_producer_path_from_the_twin_is_never_loaded(viky_cti, tmp_path):
    """A .cti is a shared library: the twin may name a producer of the allowed folders, no path."""
    with pytest.raises(SettingsError, match="camera_gentl_producer"):
        parse_settings(CameraSettings, {"camera_gentl_producer": str(viky_cti)})
    with pytest.raises(SettingsError, match="camera_gentl_producer"):
        parse_settings(CameraSettings, {"camera_gentl_producer": "../viky.cti"})
    with pytest.raises(SourceError, match="file name"):
        find_producers(str(viky_cti), str(viky_cti.parent))
    copy = tmp_path / "viky.cti"
    copy.write_bytes(b"not loaded")
    assert find_producers("viky.cti", str(viky_cti.parent)) == [viky_cti]
