"""The embedded default, as a user runs it: ``mfgvision demo`` as a subprocess."""

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from asyncua import Client, ua

from mfgvision.line_bridge.opcua_server import NAMESPACE
from mfgvision.local.demo import free_port
from mfgvision.store.database import Database
from tests.factories import run_coroutine

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _demo(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mfgvision",
            "demo",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )


def test_demo_runs_every_module_and_leaves_data(tmp_path):
    proc = _demo(tmp_path, "--duration", "20")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out[out.index("{") :])
    assert summary["inferences"] >= 5, (summary, err[-3000:])
    with sqlite3.connect(tmp_path / "mfgvision.db") as conn:
        inferences = conn.execute("SELECT COUNT(*) FROM inference_data").fetchone()[0]
        detections = conn.execute("SELECT COUNT(*) FROM detection_data").fetchone()[0]
        times = [r[0] for r in conn.execute("SELECT created FROM inference_data")]
    assert inferences == summary["inferences"] and detections >= 1
    assert all(t for t in times)
    assert list((tmp_path / "images").glob("line1-top-*-annotated.jpg"))
    assert list((tmp_path / "images").glob("line1-top-*-raw.jpg"))
    assert list((tmp_path / "blobs" / "images-annotated").rglob("*.jpg"))
    assert summary["upstream_messages"] >= inferences
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "module", "event"} <= set(line) for line in lines)


@pytest.mark.mysql
def test_demo_on_mariadb_reports_the_rows_it_stored_there(tmp_path, mariadb_url):
    proc = _demo(tmp_path, "--duration", "15", env={"MFGVISION_DB_URL": mariadb_url})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out[out.index("{") :])
    counts = Database(mariadb_url).row_counts()
    assert summary["inferences"] == counts["inferences"] >= 3, (summary, err[-3000:])
    assert summary["detections"] == counts["detections"]
    assert summary["database"].startswith("mysql+mysqlconnector://")
    assert not (tmp_path / "mfgvision.db").exists()  # nothing went to the default SQLite file


async def _first_verdict(url: str) -> str:
    """The demo camera's verdict from LineBridge's OPC UA server, once it listens and has one."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with Client(url, timeout=10) as client:
                ns = await client.get_namespace_index(NAMESPACE)
                path = [f"{ns}:Cameras", f"{ns}:line1-top", f"{ns}:Verdict"]
                verdict = await (await client.nodes.objects.get_child(path)).read_value()
        except (OSError, ua.UaStatusCodeError):  # not listening yet, or no result yet
            verdict = ""
        if verdict:
            return verdict
        await asyncio.sleep(0.5)
    return ""


def test_demo_serves_the_dashboard_and_opcua_and_stops_on_sigterm(tmp_path):
    proc = _demo(tmp_path)
    try:
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(urls) < 2 and time.monotonic() < deadline:
            label, _, url = proc.stdout.readline().partition(": ")
            if label in ("Dashboard", "OPC UA"):
                assert label not in urls, f"{label} printed twice"
                urls[label] = url.strip()
        url = urls.get("Dashboard")
        assert url, "the demo never printed its dashboard URL"
        opcua = urls.get("OPC UA", "")
        assert opcua.startswith("opc.tcp://127.0.0.1:"), "the demo never printed its OPC UA URL"
        assert run_coroutine(_first_verdict(opcua)) in ("OK", "NG")
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "healthz", timeout=5) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert "text/html" in resp.headers["Content-Type"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_keeps_its_port_when_the_last_run_left_connections_in_time_wait(capsys):
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end lingers in TIME_WAIT
        client.close()
    assert free_port(port) == port
    assert capsys.readouterr().out == ""


def test_demo_says_when_its_port_is_taken(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = free_port(port)
    assert other != port
    assert capsys.readouterr().out == f"Port {port} is taken by another program; using {other}.\n"
