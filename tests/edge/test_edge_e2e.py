"""CIS and ImageUpload as processes on the real ``azure-iot-device`` client, through the edgeHub
stand-in and its Mosquitto brokers: twins, desired patches, direct methods and routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfgvision.deploy.control import ControlClient, wait_until
from tests.edge.standin_env import (
    StandInProcess,
    cli,
    module,
    require_mosquitto,
    write_assets,
    write_manifest,
)

pytestmark = pytest.mark.slow
TIMEOUT = 180  # generous: two cores shared with other work


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    require_mosquitto()
    root = tmp_path_factory.mktemp("edge")
    models, frames = write_assets(root)
    manifest = write_manifest(
        root / "deployment.json",
        {
            "CIS1": module(
                ["cis"],
                camera_type="folder",
                camera_uri=str(frames),
                camera_id="cam-1",
                camera_location="line7",
                camera_position="top",
                camera_fps=5,
                inference_fps=2,
                model_name="const",
                model_version="1",
                prob_threshold=0.5,
                retrain_interval_s=3600,
            ),
            "ImageUpload": module(["image-upload"]),
        },
        {
            "CIS1ToUpstream": "FROM /messages/modules/CIS1/outputs/inference INTO $upstream",
            "CIS1ToUpload": "FROM /messages/modules/CIS1/outputs/imageUpload INTO "
            'BrokeredEndpoint("/modules/ImageUpload/inputs/imageUpload")',
            "CIS1Receipts": "FROM /messages/modules/ImageUpload/outputs/uploadReceipts INTO "
            'BrokeredEndpoint("/modules/CIS1/inputs/uploadReceipts")',
        },
    )
    hub = StandInProcess(root, manifest)
    try:
        hub.start(TIMEOUT)
        data = root / "data"
        for name, cmd in (("ImageUpload", ["image-upload"]), ("CIS1", ["cis"])):
            env = hub.module_env(
                name,
                MFGVISION_DATA=str(data),
                MFGVISION_ASSETS=str(root),
                MFGVISION_MODELS=str(models),
            )
            hub.run_module(name, cmd, env)
        yield hub
    finally:
        codes = hub.stop()
        for name in ("CIS1", "ImageUpload"):
            if name in codes:
                assert codes[name] == 0, f"{name} exit {codes[name]}: {hub.log(name)[-3000:]}"


def _reported(client: ControlClient, module: str) -> dict:
    return client.twin(module)["reported"]


def _config(client: ControlClient) -> dict:
    return _reported(client, "CIS1").get("config") or {}


def test_cis_reads_its_twin_and_reports_the_settings_in_force(edge: StandInProcess):
    client = edge.client
    desired_version = client.twin("CIS1")["desired"]["$version"]
    assert wait_until(lambda: _config(client).get("applied_version") == desired_version, TIMEOUT), (
        edge.log("CIS1")[-3000:]
    )
    assert _config(client)["settings"]["camera_id"] == "cam-1"
    assert wait_until(
        lambda: (_reported(client, "CIS1").get("status") or {}).get("state") == "running", TIMEOUT
    ), edge.log("CIS1")[-3000:]


def test_a_threshold_patch_is_applied_live_and_reported(edge: StandInProcess):
    result = cli(*edge.edgehub_args("patch", "CIS1", '{"prob_threshold": 0.7}'))
    assert result.returncode == 0, result.stderr
    version = json.loads(result.stdout)["$version"]
    client = edge.client
    assert wait_until(lambda: _config(client).get("applied_version") == version, TIMEOUT), edge.log(
        "CIS1"
    )[-3000:]
    assert _config(client)["settings"]["prob_threshold"] == 0.7
    assert client.twin("CIS1")["desired"]["prob_threshold"] == 0.7


def test_a_bad_patch_is_reported_and_the_module_keeps_running(edge: StandInProcess):
    client = edge.client
    good = client.twin("CIS1")["desired"]["$version"]
    assert wait_until(lambda: _config(client).get("applied_version") == good, TIMEOUT)
    bad = client.patch("CIS1", {"prob_threshold": "high"})
    assert wait_until(
        lambda: (_config(client).get("error") or {}).get("version") == bad, TIMEOUT
    ), edge.log("CIS1")[-3000:]
    config = _config(client)
    assert "prob_threshold" in config["error"]["message"]
    assert config["applied_version"] == good
    assert edge.alive("CIS1")
    status, answer = client.call("CIS1", "status", None, timeout=60)
    assert status == 200 and answer["config"]["applied_version"] == good
    # a good patch afterwards clears the error
    fixed = client.patch("CIS1", {"prob_threshold": 0.5})
    assert wait_until(lambda: _config(client).get("applied_version") == fixed, TIMEOUT)
    assert _config(client).get("error") is None  # null deletes a reported key, as in IoT Hub


def test_direct_methods(edge: StandInProcess):
    client = edge.client
    status, answer = client.call("CIS1", "status", None, timeout=60)
    assert status == 200 and answer["status"]["state"] in ("running", "loading_model")
    status, answer = client.call("CIS1", "capture_now", {"timeout_s": 30}, timeout=90)
    assert status == 200, answer
    assert {d["label"] for d in answer["detections"]} <= {"scratch", "hole", "spot"}
    assert answer["detections"], answer
    status, answer = client.call("CIS1", "reload_model", None, timeout=60)
    assert status == 200 and answer["reloading"] == "const/1"
    result = cli(*edge.edgehub_args("call", "CIS1", "self_destruct", "{}"))
    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == 404 and "capture_now" in answer["payload"]["methods"]
    status, answer = client.call("ImageUpload", "status", None, timeout=60)
    assert status == 200 and isinstance(answer, dict)


def test_the_image_upload_route_delivers_and_inference_goes_upstream(edge: StandInProcess):
    blobs = edge.root / "data" / "blobs"
    assert wait_until(lambda: any(blobs.rglob("*.jpg")), TIMEOUT), edge.log("ImageUpload")[-3000:]
    uploaded = next(blobs.rglob("*.jpg"))
    assert (edge.root / "data" / "images" / uploaded.name).read_bytes() == uploaded.read_bytes()
    upstream = edge.state / "upstream.jsonl"
    assert wait_until(lambda: upstream.is_file() and upstream.read_text().strip(), TIMEOUT)
    first = json.loads(upstream.read_text().splitlines()[0])
    assert (first["module"], first["output"]) == ("CIS1", "inference")
    assert first["properties"]["$.ct"] == "application/json"
    assert first["body"]["camera_id"] == "cam-1"


def test_twin_command_shows_the_reported_state(edge: StandInProcess):
    result = cli(*edge.edgehub_args("twin", "CIS1"))
    assert result.returncode == 0, result.stderr
    twin = json.loads(result.stdout)
    assert twin["reported"]["config"]["settings"]["camera_location"] == "line7"
    assert isinstance(twin["desired"]["$version"], int)


def test_unknown_module_is_refused(edge: StandInProcess):
    result = cli(*edge.edgehub_args("patch", "Nope", "{}"))
    assert result.returncode == 2 and "Nope" in result.stderr


def test_state_files_are_private(edge: StandInProcess):
    for name in ("ca.key", "identity.json", "endpoints.json", "control.json"):
        assert (Path(edge.state) / name).stat().st_mode & 0o077 == 0, name


def test_outputs_sent_while_edgehub_is_down_are_delivered_after_it_returns(edge: StandInProcess):
    """The stand-in (and every broker) goes away; the CIS keeps inferring; nothing is lost."""
    import sqlite3

    db = edge.root / "data" / "mfgvision.db"
    upstream = edge.state / "upstream.jsonl"

    def stored() -> set[str]:
        if not db.is_file():
            return set()
        try:
            with sqlite3.connect(db) as conn:
                return {r[0] for r in conn.execute("SELECT unique_id FROM inference_data")}
        except sqlite3.OperationalError:  # created, but the schema not yet
            return set()

    def delivered() -> set[str]:
        lines = upstream.read_text().splitlines() if upstream.is_file() else []
        return {json.loads(line)["body"]["unique_id"] for line in lines}

    assert wait_until(lambda: stored() and stored() <= delivered(), TIMEOUT), edge.log("CIS1")
    assert edge.stop_standin() == 0, edge.log("edgehub")[-3000:]
    before = stored()
    assert wait_until(lambda: len(stored() - before) >= 3, TIMEOUT), edge.log("CIS1")[-3000:]
    during = stored() - before
    assert edge.alive("CIS1") and edge.alive("ImageUpload")
    edge.start(TIMEOUT)
    assert wait_until(lambda: during <= delivered(), TIMEOUT), edge.log("CIS1")[-3000:]
    # and the module is reachable again through the restarted stand-in, and running once what
    # waited for edgeHub has gone out (degraded, with that reason, until then)
    answers: list[tuple[int, dict]] = []

    def running() -> bool:
        answers.append(edge.client.call("CIS1", "status", None, timeout=90))
        status, answer = answers[-1]
        return status == 200 and answer["status"]["state"] == "running"

    assert wait_until(running, TIMEOUT), answers[-1]
