"""The real ``azure-iot-device`` client through the edgeHub stand-in, restarted mid-run: once with
its MQTT sessions kept, once with none (an edgeHub that restarts with a clean state). After the
restart the module gets the desired section as it now is (a key deleted meanwhile is gone), and
desired patches, direct methods and reported properties work again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from mfgvision.deploy.standin import EdgeHubStandIn
from mfgvision.edge.hub import MethodArguments
from mfgvision.edge.iotedge import IoTEdgeHub
from mfgvision.manifest import load_manifest
from tests.edge.standin_env import (
    module,
    random_address_base,
    remove_broker_files,
    require_mosquitto,
    write_manifest,
)
from tests.factories import wait_for

pytestmark = pytest.mark.slow
TIMEOUT = 120.0


class Ping(MethodArguments):
    n: int = 0


@pytest.mark.parametrize("sessions", [True, False], ids=["sessions-kept", "no-sessions"])
def test_a_module_keeps_working_across_an_edgehub_restart(sessions, tmp_path, monkeypatch):
    require_mosquitto()
    manifest = write_manifest(
        tmp_path / "deployment.json",
        {"CIS1": module(["cis"], prob_threshold=0.6, camera_id="cam1")},
        {},
    )
    state = tmp_path / "edgehub"
    standin = EdgeHubStandIn(
        load_manifest(manifest), state, address_base=random_address_base(), sessions=sessions
    )
    standin.start()
    env = standin.module_environment("CIS1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    hub = IoTEdgeHub("CIS1", backoff_start_s=0.2, backoff_max_s=2, sdk_timeout_s=5)
    seen: list[tuple[dict[str, Any], bool]] = []
    calls: list[Any] = []
    try:
        hub.connect()
        hub.on_desired(lambda desired, full: seen.append((desired, full)))
        hub.on_method("ping", lambda a: calls.append(a.model_dump()) or {"pong": True}, Ping)
        assert hub.get_twin()["desired"]["prob_threshold"] == 0.6
        assert standin.call_method("CIS1", "ping", {"n": 1}, timeout=30)[0] == 200

        standin.stop()
        # while edgeHub is away the operator deletes a key and changes another
        deleted, _ = standin.twins.patch_desired(
            "CIS1", {"prob_threshold": None, "camera_id": "c2"}
        )
        standin.start()

        assert wait_for(
            lambda: any(full and d.get("$version") == deleted for d, full in seen), TIMEOUT
        )
        full_section = next(d for d, full in seen if full and d.get("$version") == deleted)
        assert "prob_threshold" not in full_section and full_section["camera_id"] == "c2"

        # the next patch arrives as a patch, or (when the client is being renewed as it is made)
        # in the whole document read after the renewal: either way at its version
        version = standin.patch_desired("CIS1", {"inference_fps": 3})
        assert wait_for(
            lambda: any(
                d.get("$version") == version and d.get("inference_fps") == 3 for d, _ in seen
            ),
            TIMEOUT,
        ), seen
        status, answer = standin.call_method("CIS1", "ping", {"n": 2}, timeout=30)
        assert (status, answer) == (200, {"pong": True}) and calls[-1] == {"n": 2}
        hub.report(lambda: {"status": {"state": "after-restart"}})
        assert wait_for(
            lambda: (
                standin.twins.twin("CIS1")["reported"].get("status", {}).get("state")
                == "after-restart"
            ),
            TIMEOUT,
        )
        if not sessions:  # the twin read went unanswered: a new client subscribed again
            assert hub.counters["renewed"] >= 1
    finally:
        hub.disconnect()
        standin.stop()
        remove_broker_files(state)


def test_sigterm_ends_a_module_whatever_edgehubs_state(tmp_path):
    """edgeHub gone mid-run (reported patches pending, twin calls unanswered): SIGTERM still ends
    the module process, cleanly."""
    require_mosquitto()
    manifest = write_manifest(
        tmp_path / "deployment.json", {"FileCleanup": module(["file-cleanup"], interval_s=5)}, {}
    )
    state = tmp_path / "edgehub"
    standin = EdgeHubStandIn(
        load_manifest(manifest), state, address_base=random_address_base(), sessions=False
    )
    standin.start()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IOTEDGE_", "EdgeHub", "EdgeModule", "MFGVISION_"))
    }
    env.update(standin.module_environment("FileCleanup"), MFGVISION_DATA=str(tmp_path / "data"))
    log = (tmp_path / "module.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfgvision", "file-cleanup"], env=env, stdout=log, stderr=log
    )
    try:

        def applied() -> bool:
            config = standin.twins.twin("FileCleanup")["reported"].get("config") or {}
            return config.get("applied_version") is not None

        assert wait_for(applied, TIMEOUT), (tmp_path / "module.log").read_text()[-3000:]
        standin.stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "module.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        standin.stop()
        remove_broker_files(state)
