"""RTSP streams against a real local server (GStreamer's RTSP server, tests/capture/rtsp_server.py).

Opening a stream through OpenCV's FFmpeg backend takes about 2 s, so every wait here is generous;
the tests assert what happens, never how fast.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from mfgvision.capture.grabber import FrameGrabber
from mfgvision.capture.opencv_stream import FFMPEG_OPTIONS_ENV, OpenCVSource, ffmpeg_options
from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from tests.capture.conftest import open_fds, os_threads, wait_for

TIMEOUT_MS = 4000


def frames_after(grabber: FrameGrabber, count: int, timeout: float = 90.0) -> bool:
    start = grabber.stats.frames
    return wait_for(lambda: grabber.stats.frames >= start + count, timeout)


def udp_sockets_of_this_process() -> int:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                udp.add(line.split()[9])
    return len(inodes & udp)


def test_ffmpeg_options_keep_other_options():
    assert ffmpeg_options(None, "udp") == "rtsp_transport;udp"
    assert (
        ffmpeg_options("rtsp_transport;tcp|stimeout;5000000", "udp")
        == "stimeout;5000000|rtsp_transport;udp"
    )


def test_stream_survives_a_hang_a_crash_and_a_restart_without_leaks(rtsp_server):
    server = rtsp_server()
    url = server.url("/test")
    # warm up OpenCV/FFmpeg once, so lazily created process-wide state is not counted as a leak
    warm = OpenCVSource(url, "rtsp", timeout_ms=TIMEOUT_MS)
    warm.open()
    assert warm.read() is not None
    warm.close()
    threads, native, fds = threading.active_count(), os_threads(), open_fds()

    grabber = FrameGrabber(
        OpenCVSource(url, "rtsp", timeout_ms=TIMEOUT_MS),
        fps=0,
        backoff=(0.2, 1.0),
        stall_timeout=3 * TIMEOUT_MS / 1000,
    )
    grabber.start()
    try:
        assert frames_after(grabber, 10)
        assert grabber.stats.state == "streaming" and grabber.stats.reconnects == 0

        # 1. the server hangs: the connection stays open but nothing arrives
        server.signal(signal.SIGSTOP)
        assert wait_for(lambda: grabber.stats.reconnects >= 1, 90)
        assert grabber.stats.state == "reconnecting" and grabber.stats.last_error
        server.signal(signal.SIGCONT)
        assert frames_after(grabber, 10)
        assert wait_for(lambda: grabber.stats.state == "streaming")

        # 2. the server dies mid-stream, and comes back on the same port
        before = grabber.stats.reconnects
        server.stop()
        assert wait_for(lambda: grabber.stats.reconnects > before, 90)
        assert grabber.stats.state == "reconnecting"
        server.start()
        assert frames_after(grabber, 10)
        assert wait_for(lambda: grabber.stats.state == "streaming")
        assert grabber.stats.last_error is None
    finally:
        grabber.stop(timeout=30)
    assert grabber.stats.state == "stopped"
    assert wait_for(lambda: threading.active_count() <= threads, 30)
    assert wait_for(lambda: os_threads() <= native, 30), (os_threads(), native)
    assert wait_for(lambda: open_fds() <= fds, 30), (open_fds(), fds)


def test_udp_transport_and_mjpeg(rtsp_server):
    server = rtsp_server()
    before = os.environ.get(FFMPEG_OPTIONS_ENV)
    for transport, uses_udp in (("tcp", False), ("udp", True)):
        src = OpenCVSource(server.url("/mjpeg"), "rtsp", timeout_ms=TIMEOUT_MS, transport=transport)
        src.open()
        try:
            for _ in range(5):
                _, _, image = src.read()
                assert image is not None and image.shape == (240, 320, 3)
            assert (udp_sockets_of_this_process() > 0) == uses_udp, transport
        finally:
            src.close()
        assert os.environ.get(FFMPEG_OPTIONS_ENV) == before  # only set around the open


def test_credentials_work_and_never_show(
    rtsp_server, caplog, capfd, tmp_path, models_dir, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    server = rtsp_server(auth="operator:s3cr3t/pw")
    # the secret stays out of the twin: camera_uri refers to the module's environment
    monkeypatch.setenv("TEST_RTSP_USER", "operator")
    monkeypatch.setenv("TEST_RTSP_PASSWORD", "s3cr3t/pw")  # URL-encoded when expanded
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker([])
    desired = {
        "camera_type": "rtsp",
        "camera_uri": server.url("/test", "${TEST_RTSP_USER}:${TEST_RTSP_PASSWORD}"),
        "camera_timeout_s": TIMEOUT_MS / 1000,
        "inference_fps": 2,
        "model_name": "const",
        "model_version": "1",
    }
    db = Database(f"sqlite:///{tmp_path / 'data' / 'cis.db'}")
    cis = CisService(broker.hub("cam", desired), paths, db, report_every_s=0.2)
    hub = broker.hub("cam")

    def camera() -> dict:
        return hub.get_twin()["reported"].get("status", {}).get("camera", {})

    cis.start()
    try:
        assert wait_for(lambda: camera().get("state") == "streaming" and camera()["frames"] > 5, 90)
        assert camera()["source"] == f"rtsp:rtsp://***@127.0.0.1:{server.port}/test"
        # the server restarts: the reconnect shows in the reported properties, then frames resume
        server.stop()
        assert wait_for(lambda: camera().get("reconnects", 0) >= 1, 90)
        assert hub.get_twin()["reported"]["status"]["state"] == "reconnecting"
        server.start()
        frames = camera()["frames"]
        assert wait_for(
            lambda: camera()["state"] == "streaming" and camera()["frames"] > frames, 90
        )
        # a password written into the URI itself (as old twins do) is refused, without the secret,
        # and the camera keeps streaming with the settings in force
        broker.patch_desired("cam", {"camera_uri": server.url("/test", "operator:wrong-pw")})

        def refused() -> str:
            return str(hub.get_twin()["reported"]["config"].get("error") or "")

        assert wait_for(lambda: "camera_uri" in refused() and "password" in refused(), 30)
        assert camera()["state"] == "streaming"
    finally:
        cis.stop()
    out, err = capfd.readouterr()
    reported = json.dumps(hub.get_twin()["reported"])
    shown = "\n".join([caplog.text, out, err, reported])
    for secret in ("s3cr3t", "s3cr3t%2Fpw", "wrong-pw"):
        assert secret not in shown
    assert "***@127.0.0.1" in reported


@pytest.mark.parametrize("kind", ["rtsp", "http"])
def test_a_port_with_nothing_listening_keeps_retrying(kind):
    from tests.capture.conftest import free_port

    src = OpenCVSource(f"{kind}://user:pw@127.0.0.1:{free_port()}/x", kind, timeout_ms=1000)
    grabber = FrameGrabber(src, fps=0, backoff=(0.05, 0.1))
    grabber.start()
    try:
        assert wait_for(lambda: grabber.stats.reconnects >= 2, 60)
        assert "***@" in (grabber.stats.last_error or "")
    finally:
        grabber.stop()


def test_environment_references_in_the_uri(monkeypatch):
    from mfgvision.capture.base import SourceError
    from mfgvision.capture.opencv_stream import expand_env

    monkeypatch.setenv("CAM_PW", "p@ss:w/rd")
    assert expand_env("rtsp://admin:${CAM_PW}@h/s") == "rtsp://admin:p%40ss%3Aw%2Frd@h/s"
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(SourceError, match="CAM_PW"):
        expand_env("rtsp://admin:${CAM_PW}@h/s")
    assert expand_env("rtsp://h/$notareference") == "rtsp://h/$notareference"
