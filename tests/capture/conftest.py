"""Capture test helpers: pylon's camera emulation, the GenTL simulator, the local RTSP server.

``PYLON_CAMEMU`` must be set before pypylon is first imported (pylon reads it once), so it is set
here, when pytest collects this folder. Tests that need an SDK or the RTSP server skip with the
reason when it cannot be had, unless ``MFGVISION_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import free_port, unavailable

os.environ.setdefault("PYLON_CAMEMU", "2")  # before anything imports pypylon

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


def require_module(name: str, extra: str) -> None:
    if importlib.util.find_spec(name) is None:
        unavailable(f"{name} is not installed (pip install 'mfgvision[{extra}]')")


def wait_for(check: Callable[[], bool], timeout: float = 60.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    """Threads of this process, including native ones (FFmpeg, pylon)."""
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """The constant-output YOLOv8 model of the CIS tests, as model ``const`` version 1."""
    from tests.cis.conftest import write_const_model

    return write_const_model(tmp_path / "models")


@pytest.fixture
def pylon_emulation():
    """pypylon with two emulated cameras (serials 0815-0000 and 0815-0001)."""
    require_module("pypylon", "basler")
    if os.environ.get("PYLON_CAMEMU", "0") in ("", "0"):
        unavailable("PYLON_CAMEMU is not set; pylon's camera emulation is off")
    from pypylon import pylon

    serials = [d.GetSerialNumber() for d in pylon.TlFactory.GetInstance().EnumerateDevices()]
    if "0815-0001" not in serials:
        unavailable(f"pylon camera emulation not available (devices: {serials})")
    return pylon


@pytest.fixture
def viky_cti() -> Path:
    """The simulated GenTL producer shipped in the genicam wheel."""
    require_module("harvesters", "genicam")
    require_module("genicam", "genicam")
    import genicam

    cti = Path(genicam.__file__).parent / "viky.cti"
    if not cti.is_file():
        unavailable(f"genicam wheel has no simulated producer at {cti}")
    return cti


class RtspServer:
    """Debian's GStreamer RTSP server in a subprocess of the system Python."""

    def __init__(self, port: int, auth: str | None = None) -> None:
        self.port = port
        self.auth = auth
        self.process: subprocess.Popen[str] | None = None

    def url(self, mount: str = "/test", credentials: str | None = None) -> str:
        who = f"{credentials}@" if credentials else ""
        return f"rtsp://{who}127.0.0.1:{self.port}{mount}"

    def start(self) -> None:
        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port)]
        if self.auth:
            cmd += ["--auth", self.auth]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline().strip() if self.process.stdout else ""
        if line != "ready":
            err = self.process.stderr.read() if self.process.stderr else ""
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line} {err[-2000:]}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def stop(self) -> None:
        """Kill it at once (a crash, as far as the clients can tell)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.process = None


def _rtsp_server_available() -> str | None:
    if not sys.platform.startswith("linux") or not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'jpegenc', 'rtpjpegpay')"
        " if Gst.ElementFactory.find(e) is None];"
        "print(','.join(missing))"
    )
    try:
        out = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if out.returncode != 0:
        return (
            "GStreamer RTSP server not installed (apt-get install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
            f"gstreamer1.0-plugins-ugly): {out.stderr.strip().splitlines()[-1:]}"
        )
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()}"
    return None


@pytest.fixture(scope="session")
def rtsp_available() -> bool:
    reason = _rtsp_server_available()
    if reason:
        unavailable(reason)
    return True


@pytest.fixture
def rtsp_server(rtsp_available) -> Iterator[Callable[..., RtspServer]]:
    """Start local RTSP servers: ``rtsp_server(auth="user:pw")``; all are killed afterwards."""
    servers: list[RtspServer] = []

    def start(auth: str | None = None) -> RtspServer:
        server = RtspServer(free_port(), auth)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
