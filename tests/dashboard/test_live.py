"""The live view: MJPEG streams of the frames a CIS hands over in ``<data>/live``, capped in frame
rate, width and viewers, ended when the viewer leaves or the dashboard stops."""

from __future__ import annotations

import argparse
import http.client
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision.capture.jpeg import encode_jpeg
from mfgvision.dashboard.app import create_app
from mfgvision.dashboard.live import (
    MIMETYPE,
    POLL_S,
    REPEAT_S,
    LiveConfig,
    LiveConfigError,
    LiveView,
)
from mfgvision.dashboard.server import (
    DashboardServer,
    add_dashboard_arguments,
    dashboard_main,
)
from mfgvision.store.database import Database
from mfgvision.store.live import (
    LIVE_FOLDER,
    is_watched,
    live_frame_path,
    write_live_frame,
)
from mfgvision.store.status import STALE_AFTER_S, write_status
from mfgvision.web.auth import AuthConfig
from mfgvision.web.server import SERVER_THREADS
from tests.factories import wait_for

CAMERA = "cam1"


def frame(width: int, height: int, seq: int, quality: int = 90) -> bytes:
    """A JPEG frame of the given size and quality whose content depends on ``seq``."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 1] = np.linspace(0, 255, width, dtype=np.uint8)
    cv2.putText(image, str(seq), (20, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
    return encode_jpeg(image, quality)


def width_of(jpeg: bytes) -> int:
    """The width of a JPEG; fails the test when it does not decode."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "a part is not a JPEG"
    return int(image.shape[1])


def parts_of(part: bytes) -> bytes:
    """The JPEG inside one multipart part, its headers checked."""
    head, _, rest = part.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "--frame"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "image/jpeg"
    assert rest.endswith(b"\r\n")
    jpeg = rest[:-2]
    assert int(headers["Content-Length"]) == len(jpeg)
    return jpeg


class Camera:
    """Stands in for a CIS: each ``step`` writes a new live frame (new content) with its own time
    stamp, as frames at a camera's rate have."""

    def __init__(
        self, folder: Path, width: int = 1280, height: int = 720, quality: int = 90
    ) -> None:
        self.folder = folder
        self.size = (width, height)
        self.quality = quality
        self.written = 0
        self.last = b""

    def step(self) -> None:
        self.last = frame(*self.size, self.written, self.quality)
        write_live_frame(self.folder, CAMERA, self.last)
        stamp = time.time_ns() + self.written * 1_000_000
        os.utime(live_frame_path(self.folder, CAMERA), ns=(stamp, stamp))
        self.written += 1


class FakeClock:
    """Monotonic time that moves only when a stream waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drive(
    view: LiveView, clock: FakeClock, camera: Camera | None, updates: int, period: float
) -> tuple[list[bytes], float]:
    """Stream ``CAMERA`` while ``camera`` writes ``updates`` more frames, one every ``period``
    seconds of the clock, until ``(updates + 1) * period`` has passed (with no ``camera``, only the
    clock runs); returns the parts and the clock time that passed."""
    start = clock.now
    end = start + (updates + 1) * period
    due = [start + period]

    def wait(seconds: float) -> bool:
        clock.now += seconds
        if camera is not None and clock.now >= due[0] and camera.written <= updates:
            due[0] += period
            camera.step()
        return clock.now >= end

    parts = list(view.stream(CAMERA, wait))
    return parts, clock.now - start


@pytest.fixture
def live_dir(tmp_path: Path) -> Path:
    folder = tmp_path / LIVE_FOLDER
    folder.mkdir()
    return folder


def test_every_frame_is_streamed_below_the_rate_cap(live_dir: Path) -> None:
    clock, camera = FakeClock(), Camera(live_dir)
    camera.step()
    view = LiveView(LiveConfig(enabled=True, max_fps=30), live_dir, clock=clock)
    parts, _ = drive(view, clock, camera, updates=40, period=0.1)
    assert len(parts) == camera.written == 41
    assert len({parts_of(p) for p in parts[:3]}) == 3


def test_a_faster_camera_is_thinned_to_the_rate_cap(live_dir: Path) -> None:
    clock, camera = FakeClock(), Camera(live_dir)
    camera.step()
    view = LiveView(LiveConfig(enabled=True, max_fps=5), live_dir, clock=clock)
    parts, elapsed = drive(view, clock, camera, updates=100, period=0.05)
    assert camera.written == 101
    assert len(parts) <= elapsed * 5 + 1
    assert len(parts) >= elapsed * 5 * 0.8


def test_frames_are_scaled_to_the_max_width_at_the_stream_quality(live_dir: Path) -> None:
    clock = FakeClock()
    view = LiveView(LiveConfig(enabled=True, max_width=640, quality=60), live_dir, clock=clock)
    wide = Camera(live_dir, 1920, 1080)
    wide.step()
    parts, _ = drive(view, clock, wide, updates=3, period=0.5)
    assert [width_of(parts_of(p)) for p in parts] == [640] * 4
    narrow = Camera(live_dir, 480, 270, quality=95)
    narrow.step()
    parts, _ = drive(view, clock, None, updates=1, period=0.5)
    assert [width_of(parts_of(p)) for p in parts] == [480]
    assert len(parts_of(parts[0])) < len(narrow.last)
    # A narrow frame already smaller than the stream quality would make it passes as it came.
    small = Camera(live_dir, 480, 270, quality=30)
    small.step()
    parts, _ = drive(view, clock, None, updates=1, period=0.5)
    assert [parts_of(p) for p in parts] == [small.last]


def test_the_last_frame_is_repeated_while_the_camera_is_quiet(live_dir: Path) -> None:
    clock, camera = FakeClock(), Camera(live_dir)
    camera.step()
    view = LiveView(LiveConfig(enabled=True), live_dir, clock=clock)
    parts, elapsed = drive(view, clock, None, updates=100, period=0.1)
    # one repeat every REPEAT_S, each at most a poll late
    assert 1 + int(elapsed // (REPEAT_S + POLL_S)) <= len(parts) <= 1 + int(elapsed // REPEAT_S)
    assert len(parts) >= 4
    assert len(set(parts)) == 1


def test_a_frame_older_than_the_status_timeout_is_not_shown(live_dir: Path) -> None:
    clock, camera = FakeClock(), Camera(live_dir)
    camera.step()
    old = time.time() - STALE_AFTER_S - 5
    os.utime(live_frame_path(live_dir, CAMERA), (old, old))
    view = LiveView(LiveConfig(enabled=True), live_dir, clock=clock)
    parts, _ = drive(view, clock, None, updates=30, period=0.1)
    assert parts == []
    assert is_watched(live_dir, CAMERA)


def test_settings_from_the_environment() -> None:
    assert LiveConfig.from_env({}) == LiveConfig()
    assert not LiveConfig().enabled
    config = LiveConfig.from_env(
        {
            "MFGVISION_LIVE_VIEW": "on",
            "MFGVISION_LIVE_MAX_FPS": "2.5",
            "MFGVISION_LIVE_MAX_WIDTH": "",
        }
    )
    assert (config.enabled, config.max_fps, config.max_width) == (True, 2.5, 960)
    with pytest.raises(LiveConfigError, match="MFGVISION_LIVE_MAX_FPS") as caught:
        LiveConfig.from_env({"MFGVISION_LIVE_MAX_FPS": "0", "MFGVISION_LIVE_VIEW": "sometimes"})
    assert "MFGVISION_LIVE_VIEW" in str(caught.value)


def test_a_malformed_variable_stops_the_dashboard_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MFGVISION_LIVE_MAX_CLIENTS", "many")
    parser = argparse.ArgumentParser()
    add_dashboard_arguments(parser)
    assert dashboard_main(parser.parse_args(["--port", "0"])) == 2
    assert "MFGVISION_LIVE_MAX_CLIENTS" in capsys.readouterr().err


def test_refusals_say_why(tmp_path: Path, db: Database) -> None:
    images = tmp_path / "images"
    images.mkdir()
    write_status(tmp_path / "status", CAMERA, "CIS1", {"status": {"state": "running"}})
    off = create_app(db, images, auth=AuthConfig(), live=LiveConfig()).test_client()
    response = off.get(f"/api/cameras/{CAMERA}/live.mjpeg")
    assert response.status_code == 404
    assert "MFGVISION_LIVE_VIEW=on" in response.get_json()["error"]
    assert b'data-live=""' in off.get("/").data
    on = create_app(db, images, auth=AuthConfig(), live=LiveConfig(enabled=True)).test_client()
    assert b'data-live="/api/cameras"' in on.get("/").data
    for name in ("cam9", "..", ".hidden"):
        response = on.get(f"/api/cameras/{name}/live.mjpeg")
        assert response.status_code == 404, name
        assert response.get_json()["error"] == "no such camera"
    assert on.get(f"/api/cameras/{CAMERA}/live.mjpeg?fps=30").status_code == 400


# Over HTTP, as served -------------------------------------------------------------------------


class Viewer:
    """One HTTP client watching a stream, reading it part by part."""

    def __init__(self, server: DashboardServer, camera: str = CAMERA) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        self.connection.request("GET", f"/api/cameras/{camera}/live.mjpeg")
        self.response = self.connection.getresponse()

    def next_jpeg(self) -> bytes:
        line = self.response.readline()
        assert line == b"--frame\r\n", line
        headers = {}
        while (line := self.response.readline()) not in (b"\r\n", b""):
            key, value = line.decode().split(":", 1)
            headers[key.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        jpeg = self.response.read(int(headers["content-length"]))
        assert self.response.read(2) == b"\r\n"
        return jpeg

    def close(self) -> None:
        """Leave: close the connection (the response holds the socket too)."""
        self.response.close()
        self.connection.close()


@pytest.fixture
def served(tmp_path: Path, db: Database) -> Iterator[tuple[DashboardServer, LiveView]]:
    """A dashboard with the live view on (two viewers at most, 640 px) and a CIS that writes a
    1280-px frame every 50 ms while it is watched."""
    images = tmp_path / "images"
    images.mkdir()
    write_status(tmp_path / "status", CAMERA, "CIS1", {"status": {"state": "running"}})
    live = LiveConfig(enabled=True, max_fps=10, max_width=640, max_clients=2)
    server = DashboardServer(db, images, port=0, auth=AuthConfig(), live=live)
    camera = Camera(tmp_path / LIVE_FOLDER)
    stop = threading.Event()

    def cis() -> None:
        while not stop.wait(0.05):
            if is_watched(camera.folder, CAMERA):
                camera.step()

    thread = threading.Thread(target=cis, daemon=True)
    thread.start()
    server.start()
    try:
        assert server.live_view is not None
        yield server, server.live_view
    finally:
        stop.set()
        thread.join()
        server.stop()


def test_a_stream_is_multipart_jpeg_no_wider_than_max_width(
    served: tuple[DashboardServer, LiveView],
) -> None:
    server, view = served
    assert server.threads == SERVER_THREADS + 2  # one more per viewer allowed
    viewer = Viewer(server)
    try:
        assert viewer.response.status == 200
        assert viewer.response.getheader("Content-Type") == MIMETYPE
        assert viewer.response.getheader("Cache-Control") == "no-store"
        jpegs = [viewer.next_jpeg() for _ in range(3)]
        assert [width_of(j) for j in jpegs] == [640, 640, 640]
        assert len(set(jpegs)) == 3
        assert view.clients == 1
    finally:
        viewer.close()


def test_viewers_beyond_the_cap_get_503_and_a_viewer_that_leaves_frees_its_slot(
    served: tuple[DashboardServer, LiveView],
) -> None:
    server, view = served
    first, second = Viewer(server), Viewer(server)
    try:
        first.next_jpeg()
        second.next_jpeg()
        third = Viewer(server)
        assert third.response.status == 503
        assert third.response.getheader("Retry-After") == "10"
        assert b"2 streams at a time" in third.response.read()
        third.close()
        assert view.clients == 2
        first.close()
        assert wait_for(lambda: view.clients == 1)
        fourth = Viewer(server)
        assert fourth.response.status == 200
        fourth.next_jpeg()
        fourth.close()
    finally:
        first.close()
        second.close()


def test_stopping_the_dashboard_ends_its_streams(
    served: tuple[DashboardServer, LiveView],
) -> None:
    server, view = served
    viewer = Viewer(server)
    viewer.next_jpeg()
    server.stop()
    assert view.clients == 0
    with pytest.raises((http.client.IncompleteRead, AssertionError, OSError)):
        for _ in range(100):
            viewer.next_jpeg()
    viewer.close()
