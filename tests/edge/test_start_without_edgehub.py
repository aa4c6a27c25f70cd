"""A CIS on the real ``azure-iot-device`` client that starts while edgeHub is down: it inspects on its
last good settings at once, its messages wait, and when edgeHub comes the twin's settings apply and
what was inferred meanwhile goes out."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from mfgvision.deploy.control import wait_until
from mfgvision.store.status import STATUS_FOLDER
from tests.edge.standin_env import (
    StandInProcess,
    module,
    require_mosquitto,
    write_assets,
    write_manifest,
)

pytestmark = pytest.mark.slow
TIMEOUT = 180


def status_file(data: Path) -> dict:
    path = data / STATUS_FOLDER / "cam-1.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def upstream(hub: StandInProcess) -> list[dict]:
    path = hub.state / "upstream.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_the_cis_inspects_while_edgehub_is_down_and_catches_up_after(tmp_path: Path) -> None:
    require_mosquitto()
    models, frames = write_assets(tmp_path)
    manifest = write_manifest(
        tmp_path / "deployment.json",
        {
            "CIS1": module(
                ["cis"],
                camera_type="folder",
                camera_uri=str(frames),
                camera_id="cam-1",
                camera_fps=5,
                inference_fps=2,
                model_name="const",
                model_version="1",
                upload_receipts=False,
            )
        },
        {"up": "FROM /messages/modules/CIS1/outputs/inference INTO $upstream"},
    )
    hub = StandInProcess(tmp_path, manifest)
    data = tmp_path / "data"
    try:
        client = hub.start(TIMEOUT)
        env = hub.module_env(
            "CIS1",
            MFGVISION_DATA=str(data),
            MFGVISION_ASSETS=str(tmp_path),
            MFGVISION_MODELS=str(models),
        )
        # a first run saves the twin's settings as the last good ones
        hub.run_module("CIS1", ["cis"], env)
        version = client.twin("CIS1")["desired"]["$version"]
        assert wait_until(
            lambda: (
                (client.twin("CIS1")["reported"].get("config") or {}).get("applied_version")
                == version
            ),
            TIMEOUT,
        ), hub.log("CIS1")[-3000:]
        hub.procs["CIS1"].terminate()
        assert hub.procs["CIS1"].wait(30) == 0
        assert hub.stop_standin() == 0

        # edgeHub is down: the module starts anyway, on the saved settings
        down_since = datetime.now().astimezone()
        hub.run_module("CIS1", ["cis"], env)
        assert wait_until(
            lambda: (
                status_file(data).get("status", {}).get("state") == "running"
                and datetime.fromisoformat(status_file(data)["updated"]) > down_since
            ),
            TIMEOUT,
        ), hub.log("CIS1")[-3000:]
        assert wait_until(
            lambda: status_file(data)["status"]["counters"].get("rows_written", 0) >= 3, TIMEOUT
        ), status_file(data)
        assert hub.alive("CIS1")
        log = hub.log("CIS1")
        assert "starting without edgeHub, still connecting" in log
        assert "starting on the last good settings saved" in log

        # edgeHub comes: the twin's settings apply, what was inferred meanwhile goes upstream
        back_at = datetime.now().astimezone()
        client = hub.start(TIMEOUT)
        patched = client.patch("CIS1", {"prob_threshold": 0.4})
        assert wait_until(
            lambda: (
                (client.twin("CIS1")["reported"].get("config") or {}).get("applied_version")
                == patched
            ),
            TIMEOUT,
        ), hub.log("CIS1")[-3000:]

        def offline(message: dict) -> bool:
            return down_since < datetime.fromisoformat(message["body"]["created"]) < back_at

        assert wait_until(lambda: any(offline(m) for m in upstream(hub)), TIMEOUT), hub.log("CIS1")[
            -3000:
        ]
    finally:
        codes = hub.stop()
    assert codes.get("CIS1") == 0, hub.log("CIS1")[-3000:]
