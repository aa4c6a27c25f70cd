import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.capture.base import FrameSource, SourceError
from mfgvision.capture.factory import resolve_path
from mfgvision.capture.folder import ImageFolderSource
from mfgvision.capture.grabber import FrameGrabber
from mfgvision.capture.jpeg import decode, jpeg_size, reduction_for
from mfgvision.capture.opencv_stream import OpenCVSource


def _jpeg(w, h, value=128) -> bytes:
    img = np.full((h, w, 3), value, np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(w, h) // 4, (0, 0, 255), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_jpeg_size_from_header_and_reduced_decode():
    data = _jpeg(1920, 1080)
    assert jpeg_size(data) == (1920, 1080)
    assert jpeg_size(b"not a jpeg") is None
    assert jpeg_size(data[:20]) is None
    assert reduction_for(1920, 1080, 320) == 4
    assert reduction_for(1920, 1080, 640) == 2
    assert reduction_for(640, 480, 640) == 1
    assert decode(data, 4).shape == (270, 480, 3)
    assert decode(b"\xff\xd8garbage", 1) is None


def test_folder_source_sorted_loops_and_skips_unreadable(tmp_path: Path):
    (tmp_path / "b.jpg").write_bytes(_jpeg(64, 48))
    (tmp_path / "a.png").write_bytes(
        cv2.imencode(".png", np.zeros((10, 20, 3), np.uint8))[1].tobytes()
    )
    (tmp_path / "c.png").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImageFolderSource(tmp_path, loop=True)
    src.open()
    names = [src.read()[0] for _ in range(4)]
    assert names == ["a.png", "b.jpg", "a.png", "b.jpg"]
    once = ImageFolderSource(tmp_path, loop=False)
    once.open()
    assert [once.read()[0], once.read()[0], once.read()] == ["a.png", "b.jpg", None]


def test_missing_or_empty_folder_raises(tmp_path: Path):
    with pytest.raises(SourceError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope").open()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path).open()


def test_grabber_keeps_only_the_newest_frame(tmp_path: Path):
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg(32, 32, value=i * 40))
    grabber = FrameGrabber(ImageFolderSource(tmp_path, loop=False), fps=200)
    grabber.start()
    deadline = time.monotonic() + 5
    while grabber.stats.state != "ended" and time.monotonic() < deadline:
        time.sleep(0.01)
    frame = grabber.next_frame(timeout=1)
    assert frame is not None and frame.name == "4.jpg" and (frame.width, frame.height) == (32, 32)
    assert frame.captured_at.tzinfo is not None
    assert grabber.stats.frames == 5 and grabber.stats.dropped == 4
    assert grabber.next_frame(timeout=0.05) is None
    grabber.stop()


def test_unpaced_file_source_waits_for_the_consumer(tmp_path: Path):
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg(32, 32))
    grabber = FrameGrabber(ImageFolderSource(tmp_path, loop=False), fps=0)
    grabber.start()
    time.sleep(0.2)
    got = [grabber.next_frame(timeout=2) for _ in range(5)]
    assert [f.name for f in got] == [f"{i}.jpg" for i in range(5)]
    assert grabber.stats.dropped == 0
    grabber.stop()


def test_grabber_keeps_every_frame_when_trigger_paced(tmp_path: Path):
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg(32, 32))
    grabber = FrameGrabber(ImageFolderSource(tmp_path, loop=False), fps=0, keep=16)
    grabber.start()
    got = [grabber.next_frame(timeout=2) for _ in range(5)]
    assert [f.name for f in got] == [f"{i}.jpg" for i in range(5)]
    grabber.stop()


class FlakySource(FrameSource):
    """Fails to open a few times, then streams."""

    def __init__(self, failures: int) -> None:
        self.failures, self.opens, self.closes = failures, 0, 0

    @property
    def description(self) -> str:
        return "flaky"

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise SourceError("camera unplugged")

    def read(self):
        time.sleep(0.01)
        return "f", None, np.zeros((4, 4, 3), np.uint8)

    def close(self) -> None:
        self.closes += 1


def test_grabber_reconnects_with_backoff_then_streams():
    src = FlakySource(failures=3)
    grabber = FrameGrabber(src, fps=0, backoff=(0.01, 0.04))
    grabber.start()
    assert grabber.next_frame(timeout=5) is not None
    assert grabber.stats.reconnects == 3 and grabber.stats.state == "streaming"
    assert grabber.stats.last_error is None
    grabber.stop()
    assert grabber.stats.state == "stopped" and src.closes == src.opens


def test_camera_url_that_never_answers_keeps_retrying():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = OpenCVSource(f"rtsp://user:secret@127.0.0.1:{port}/line", "rtsp", timeout_ms=1000)
    assert "secret" not in src.description
    grabber = FrameGrabber(src, fps=0, backoff=(0.05, 0.1))
    grabber.start()
    deadline = time.monotonic() + 20
    while grabber.stats.reconnects < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert grabber.stats.reconnects >= 2
    assert grabber.stats.state == "reconnecting" and "cannot open" in (
        grabber.stats.last_error or ""
    )
    assert "secret" not in grabber.stats.last_error
    grabber.stop()


def test_camera_paths_stay_in_the_assets_folder(tmp_path):
    assets = tmp_path / "assets"
    (assets / "frames").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (assets / "link").symlink_to(tmp_path / "elsewhere")
    assert resolve_path("frames", assets) == (assets / "frames").resolve()
    assert resolve_path(str(assets / "frames"), assets) == (assets / "frames").resolve()
    for outside in ("/etc", "../elsewhere", "frames/../../elsewhere", "link", str(tmp_path)):
        with pytest.raises(SourceError, match="outside the assets and data folders"):
            resolve_path(outside, assets)
    data = tmp_path / "data"
    (data / "frames").mkdir(parents=True)
    assert resolve_path(str(data / "frames"), assets, data) == (data / "frames").resolve()
    with pytest.raises(SourceError, match="outside the assets and data folders"):
        resolve_path(str(tmp_path / "elsewhere"), assets, data)
