"""Basler cameras through pypylon's camera emulation (the real pylon code paths, no hardware).

pylon emulates cameras when ``PYLON_CAMEMU`` is set before pypylon is imported (tests/capture/
conftest.py). The emulated camera can replay image files: ``camera_features`` switches that on, so
our own PNGs come out of the camera in the pixel format asked for, e.g. mosaicked to BayerRG8.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.capture.base import NoFrameYet, SourceError
from mfgvision.capture.basler import BaslerSource
from mfgvision.capture.factory import build_source
from mfgvision.capture.grabber import FrameGrabber
from mfgvision.cis.service import CisService
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.runtime import Paths
from mfgvision.settings import CameraSettings
from mfgvision.store.database import Database
from tests.capture.conftest import wait_for
from tests.cis.conftest import FRAME_H, FRAME_W, LABELS
from tests.factories import recent

RED, BLUE = (0, 0, 255), (255, 0, 0)


def png_folder(folder: Path, colours: list[tuple[int, int, int]], w: int, h: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(colours):
        image = np.zeros((h, w, 3), np.uint8)
        image[:] = colour
        cv2.imwrite(str(folder / f"{i:02d}.png"), image)
    return folder


def replay(folder: Path) -> dict[str, str]:
    """camera_features that make pylon's emulated camera replay a folder of images."""
    return {"TestImageSelector": "Off", "ImageFileMode": "On", "ImageFilename": str(folder)}


def basler(**settings) -> CameraSettings:
    return CameraSettings(camera_type="basler", **{"camera_uri": "0815-0001", **settings})


def test_grab_from_the_camera_picked_by_serial(pylon_emulation):
    src = build_source(basler(camera_frame_rate=20), Path("."))
    assert isinstance(src, BaslerSource) and src.description == "basler:0815-0001"
    src.open()
    try:
        name, jpeg, image = src.read()
        assert name == "basler-00000001" and jpeg is None
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8  # Mono8 -> BGR
        assert src.feature("PixelFormat") == "Mono8"
    finally:
        src.close()
    src.close()  # twice is fine
    with pytest.raises(SourceError, match=r"'nope'; found: 0815-0000.*0815-0001"):
        BaslerSource(basler(camera_uri="nope")).open()


@pytest.mark.parametrize(
    "pixel_format", ["BayerRG8", "BayerBG8", "BayerGR8", "BayerGB8", "BayerRG12", "RGB8Packed"]
)
def test_replayed_pngs_keep_their_colours(pylon_emulation, tmp_path, pixel_format):
    folder = png_folder(tmp_path / "png", [RED, BLUE], 64, 48)
    src = BaslerSource(
        basler(
            camera_pixel_format=pixel_format,
            camera_roi_width=64,
            camera_roi_height=48,
            camera_features=replay(folder),
        )
    )
    src.open()
    try:
        seen = set()
        for _ in range(6):
            _, _, image = src.read()
            assert image.shape == (48, 64, 3)
            seen.add(tuple(int(c) for c in image[24, 32]))
    finally:
        src.close()
    assert seen == {RED, BLUE}


def test_formats_numpy_cannot_take_go_through_pylons_converter(pylon_emulation, tmp_path):
    folder = png_folder(tmp_path / "png", [RED], 32, 32)
    src = BaslerSource(
        basler(
            camera_pixel_format="BGRA8Packed",
            camera_roi_width=32,
            camera_roi_height=32,
            camera_features=replay(folder),
        )
    )
    src.open()
    try:
        _, _, image = src.read()
    finally:
        src.close()
    assert image.shape == (32, 32, 3) and tuple(int(c) for c in image[16, 16]) == RED


def test_software_trigger(pylon_emulation):
    src = BaslerSource(basler(camera_trigger_mode="software", camera_timeout_s=1))
    src.open()
    try:
        assert src.feature("TriggerMode") == "On" and src.feature("TriggerSource") == "Software"
        with pytest.raises(NoFrameYet):
            src.read()  # no trigger, no frame, and no failure either
        src.trigger()
        assert src.read()[0] == "basler-00000001"
        with pytest.raises(NoFrameYet):
            src.read()
    finally:
        src.close()
    with pytest.raises(SourceError, match="not open"):
        src.trigger()
    free = BaslerSource(basler())
    free.open()
    try:
        with pytest.raises(SourceError, match="needs 'software'"):
            free.trigger()
    finally:
        free.close()


def test_exposure_changes_live_and_size_changes_need_a_reopen(pylon_emulation):
    settings = basler(camera_exposure_us=5000, camera_frame_rate=20)
    src = BaslerSource(settings)
    grabber = FrameGrabber(src, fps=0)
    grabber.start()
    try:
        assert wait_for(lambda: grabber.stats.frames >= 2)
        assert src.feature("ExposureTime") == pytest.approx(5000)
        assert grabber.configure(settings.model_copy(update={"camera_exposure_us": 1500.0}))
        assert src.feature("ExposureTime") == pytest.approx(1500)
        assert grabber.configure(settings.model_copy(update={"camera_gain_db": 6.0}))
        assert src.feature("Gain") == pytest.approx(6, abs=0.1)
        frames = grabber.stats.frames
        assert wait_for(lambda: grabber.stats.frames >= frames + 2)  # still streaming
        assert grabber.stats.reconnects == 0
        assert not grabber.configure(settings.model_copy(update={"camera_pixel_format": "Mono12"}))
        assert not grabber.configure(settings.model_copy(update={"camera_roi_width": 320}))
    finally:
        grabber.stop()
    assert grabber.stats.state == "stopped"


def test_a_missing_sdk_names_the_extra(monkeypatch):
    import mfgvision.capture.machine_vision as mv

    monkeypatch.setattr(mv.importlib.util, "find_spec", lambda name: None)
    for kind, extra in (("basler", "basler"), ("allied", "allied"), ("genicam", "genicam")):
        with pytest.raises(SourceError, match=rf"pip install 'mfgvision\[{extra}\]'"):
            build_source(CameraSettings(camera_type=kind), Path("."))


# --- through the CIS module --------------------------------------------------------------------


def _cis(tmp_path: Path, models_dir: Path, desired: dict) -> tuple[CisService, InProcessBroker]:
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker([])
    db = Database(f"sqlite:///{tmp_path / 'data' / 'cis.db'}")
    base = {
        "camera_type": "basler",
        "camera_uri": "0815-0000",
        "camera_id": "basler-1",
        "camera_frame_rate": 10,
        "inference_fps": 0,
        "model_name": "const",
        "model_version": "1",
        "retrain_interval_s": 3600,
    }
    service = CisService(broker.hub("cam", {**base, **desired}), paths, db, report_every_s=0.2)
    return service, broker


def test_replayed_frames_flow_through_the_cis_into_rows(pylon_emulation, tmp_path, models_dir):
    folder = png_folder(tmp_path / "png", [RED, BLUE, RED], FRAME_W, FRAME_H)
    cis, _ = _cis(
        tmp_path,
        models_dir,
        {
            "camera_pixel_format": "BayerRG8",
            "camera_roi_width": FRAME_W,
            "camera_roi_height": FRAME_H,
            "camera_features": replay(folder),
        },
    )
    cis.start()
    reader = Database(f"sqlite:///{tmp_path / 'data' / 'cis.db'}")
    try:
        assert wait_for(lambda: len(recent(reader, 100)) >= 3)
        record = recent(reader, 1)[0]
        assert (record.frame_width, record.frame_height) == (FRAME_W, FRAME_H)
        assert record.camera_id == "basler-1"
        assert {d.label for d in record.detections} == set(LABELS[:2])
        raw = cv2.imread(str(cis.paths.images / record.raw_image_name))
        centre = raw[FRAME_H // 2, FRAME_W // 2].astype(int)
        assert any(np.abs(centre - c).max() < 40 for c in (RED, BLUE))  # colours kept (JPEG)
        camera = cis.status()["status"]["camera"]
        assert camera["source"] == "basler:0815-0000" and camera["state"] == "streaming"
    finally:
        cis.stop()
        reader.close()


def test_a_twin_change_of_exposure_reaches_the_running_camera(
    pylon_emulation, tmp_path, models_dir
):
    cis, broker = _cis(tmp_path, models_dir, {"camera_exposure_us": 4000})
    cis.start()
    try:
        pipeline = cis.pipeline
        assert pipeline is not None
        assert wait_for(lambda: pipeline.status()["camera"]["frames"] >= 2)
        grabber = pipeline.grabber
        assert grabber is not None and grabber.source.feature("ExposureTime") == 4000
        version = broker.patch_desired("cam", {"camera_exposure_us": 1234.0})
        hub = broker.hub("cam")
        assert wait_for(lambda: hub.get_twin()["reported"]["config"]["applied_version"] == version)
        assert pipeline.grabber is grabber  # applied live: same capture thread, same camera
        assert grabber.source.feature("ExposureTime") == pytest.approx(1234)
        assert grabber.stats.reconnects == 0
        # a pixel format change cannot be made live: the camera is reopened with it
        broker.patch_desired("cam", {"camera_pixel_format": "BayerRG8"})
        assert wait_for(lambda: pipeline.grabber is not grabber)
        assert wait_for(lambda: pipeline.status()["camera"]["state"] == "streaming")
        assert pipeline.grabber.source.feature("PixelFormat") == "BayerRG8"
        assert pipeline.grabber.source.feature("ExposureTime") == pytest.approx(1234)
    finally:
        cis.stop()


def test_trigger_method_and_trigger_input(pylon_emulation, tmp_path, models_dir):
    cis, broker = _cis(tmp_path, models_dir, {"camera_trigger_mode": "software"})
    cis.start()
    reader = Database(f"sqlite:///{tmp_path / 'data' / 'cis.db'}")
    hub = broker.hub("cam")
    try:
        pipeline = cis.pipeline
        assert pipeline is not None and pipeline.models.wait_ready(60)
        assert wait_for(lambda: pipeline.status()["camera"]["state"] == "streaming")
        assert pipeline.status()["camera"]["frames"] == 0  # nothing without a trigger
        status, answer = hub.call_method("trigger", None)
        assert (status, answer) == (200, {"triggered": True})
        assert wait_for(lambda: len(recent(reader, 10)) == 1)
        hub.deliver("trigger", HubMessage.from_json({"part": "A-17"}))
        assert wait_for(lambda: len(recent(reader, 10)) == 2)
        assert pipeline.status()["camera"]["reconnects"] == 0
        grabber = pipeline.grabber
        broker.patch_desired("cam", {"camera_trigger_mode": "off"})
        assert wait_for(lambda: pipeline.grabber is not grabber)  # no longer trigger-paced
        assert wait_for(lambda: pipeline.status()["camera"]["frames"] >= 1)
        status, answer = hub.call_method("trigger", None)
        assert status == 409 and "software" in answer["error"]
    finally:
        cis.stop()
        reader.close()
