"""``mfgvision demo --edge``: every module of a manifest as its own process on the real IoT Edge
client, through the edgeHub stand-in, as on a device but without Docker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mfgvision.deploy.control import ControlClient, wait_until
from tests.edge.standin_env import (
    REPO,
    module,
    random_address_base,
    remove_broker_files,
    require_mosquitto,
    write_assets,
    write_manifest,
)
from tests.metrics.exposition import scrape, value

pytestmark = pytest.mark.slow
TIMEOUT = 180


def test_demo_edge_runs_the_manifest_through_the_stand_in(tmp_path):
    require_mosquitto()
    data = tmp_path / "data"
    models, frames = write_assets(data)  # camera folders are read from the assets or data folder
    mysql = module([])
    mysql[0]["settings"]["image"] = "mariadb:11.4"
    manifest = write_manifest(
        tmp_path / "deployment.json",
        {
            "MySQL": mysql,
            "CIS1": module(
                ["cis"],
                camera_uri=str(frames),
                camera_id="cam-e",
                camera_location="line3",
                camera_fps=5,
                inference_fps=2,
                model_name="const",
                model_version="1",
            ),
            "ImageUpload": module(["image-upload"]),
            "Dashboard": module(["dashboard", "--host", "0.0.0.0", "--port", "23000"]),
        },
        {
            "up": "FROM /messages/modules/CIS1/outputs/inference INTO $upstream",
            "img": "FROM /messages/modules/CIS1/outputs/imageUpload INTO "
            'BrokeredEndpoint("/modules/ImageUpload/inputs/imageUpload")',
            "CIS1Receipts": "FROM /messages/modules/ImageUpload/outputs/uploadReceipts INTO "
            'BrokeredEndpoint("/modules/CIS1/inputs/uploadReceipts")',
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFGVISION_")}
    env.update(MFGVISION_MODELS=str(models), MFGVISION_EDGEHUB_ADDRESS=random_address_base())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mfgvision",
            "demo",
            "--edge",
            "--manifest",
            str(manifest),
            "--data-dir",
            str(data),
            "--port",
            "0",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []

        def dashboard_url() -> str | None:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            return line.split(": ", 1)[1].strip() if line.startswith("Dashboard: ") else None

        url = None
        while url is None and proc.poll() is None and len(lines) < 50:
            url = dashboard_url()
        assert url, "".join(lines)
        lines.append(proc.stdout.readline() if proc.stdout else "")
        assert lines[-1].startswith("Metrics: "), "".join(lines)
        metrics = dict(
            reversed(u.rstrip(")").split(" (")) for u in lines[-1][9:].strip().split(", ")
        )
        assert sorted(metrics) == ["CIS1", "Dashboard", "ImageUpload"]

        blobs = data / "blobs"
        assert wait_until(lambda: any(blobs.rglob("*.jpg")), TIMEOUT), _logs(data)
        upstream = data / "upstream.jsonl"
        assert wait_until(lambda: upstream.is_file() and upstream.stat().st_size > 0, TIMEOUT)
        client = ControlClient.from_state(data / "edgehub")
        assert client is not None
        reported = client.twin("CIS1")["reported"]
        assert wait_until(
            lambda: (client.twin("CIS1")["reported"].get("config") or {}).get("applied_version"),
            TIMEOUT,
        ), reported
        status, answer = client.call("CIS1", "status", None, timeout=60)
        assert status == 200 and answer["config"]["settings"]["camera_id"] == "cam-e"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        assert wait_until(healthy, TIMEOUT), _logs(data)
        cis = scrape(metrics["CIS1"])  # each process its own endpoint; CIS1's hub is edgeHub's
        assert value(cis, "mfgvision_hub_connected", module="CIS1") == 1
        assert value(cis, "mfgvision_hub_events_total", module="CIS1", event="sent") > 0
        assert value(cis, "mfgvision_module_info", module="Dashboard") is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        remove_broker_files(data / "edgehub")
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out[out.index("{\n") :])
    assert summary["uploaded"] >= 1 and summary["upstream_messages"] >= 1
    assert summary["inferences"] >= 1
    assert summary["modules"] == {
        "CIS1": {"exit_code": 0},
        "ImageUpload": {"exit_code": 0},
        "Dashboard": {"exit_code": 0},
    }
    assert "MySQL" in err  # reported as not run locally
    for name in ("CIS1", "ImageUpload", "Dashboard"):
        assert (data / "logs" / f"{name}.log").is_file()


def _logs(data: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
        for p in (data / "logs").glob("*.log")
    )
