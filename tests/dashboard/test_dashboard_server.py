"""The dashboard command: serves over HTTP and exits 0 on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mfgvision.dashboard.live import LiveConfig
from mfgvision.dashboard.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DashboardServer,
    add_dashboard_arguments,
)
from mfgvision.store.database import Database
from mfgvision.web.auth import AuthConfig

LAUNCH = """
import argparse, sys
from mfgvision.dashboard.server import add_dashboard_arguments, dashboard_main
parser = argparse.ArgumentParser()
add_dashboard_arguments(parser)
sys.exit(dashboard_main(parser.parse_args(sys.argv[1:])))
"""


def test_arguments_and_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_dashboard_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.db_url, args.images_dir) == (
        DEFAULT_HOST,
        DEFAULT_PORT,
        None,
        None,
    )
    args = parser.parse_args(["--db-url", "sqlite:///x.db", "--images-dir", "imgs", "--port", "1"])
    assert (args.db_url, args.images_dir, args.port) == ("sqlite:///x.db", Path("imgs"), 1)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_dashboard_serves_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    env = {**os.environ, "MFGVISION_DATA": str(tmp_path), "MFGVISION_DB_URL": ""}
    args = ["--port", "0", "--images-dir", str(tmp_path / "images"), "--db-url"]
    args.append(f"sqlite:///{tmp_path / 'edge.db'}")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("mfgvision dashboard on http://localhost:"), line
        url = line.split(" on ", 1)[1].strip()
        with urllib.request.urlopen(url + "healthz", timeout=10) as response:
            assert response.status == 200
            assert json.load(response) == {"status": "ok", "db": "ok"}
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr
    assert "dashboard stopped" in stderr


def test_stopping_closes_the_port(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'edge.db'}")
    server = DashboardServer(db, tmp_path / "images", port=0, auth=AuthConfig(), live=LiveConfig())
    server.start()
    with urllib.request.urlopen(server.url + "healthz", timeout=10) as response:
        assert response.status == 200
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
