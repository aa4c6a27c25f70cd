"""Every module type started on a twin with a bad key, then restarted: it serves the last good
settings (or, on a first start, the document with defaults for the bad keys), names each bad key
in ``config.error``, keeps working, and after a restart starts from the persisted last good ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.module_registry import ModuleContext, build_module
from mfgvision.runtime import Paths
from tests.cis.conftest import write_const_model
from tests.factories import wait_for

# module command -> (a valid document, a key and a value the settings refuse, a setting to read)
CASES: dict[str, tuple[dict[str, Any], str, Any, str]] = {
    "cis": ({"camera_id": "cam7", "camera_fps": 20}, "prob_threshold", 7, "camera_id"),
    "image-upload": ({"max_attempts": 3}, "backoff_initial_s", 0, "max_attempts"),
    "file-cleanup": ({"interval_s": 600, "dry_run": True}, "interval_s", 0, "dry_run"),
    "model-repo": (
        {"interval_s": 600, "golden_tolerance": 0.2},
        "interval_s",
        1,
        "golden_tolerance",
    ),
}

# a valid other value of the probed setting: not served while the document is invalid
OTHER = {"cis": "cam9", "image-upload": 5, "file-cleanup": False, "model-repo": 0.9}


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.jpg"), np.full((48, 64, 3), i * 90, np.uint8))
    models = write_const_model(tmp_path / "models")
    return Paths(assets=tmp_path, models=models, data=tmp_path / "data")


def _base(command: str, paths: Paths) -> dict[str, Any]:
    if command != "cis":
        return {}
    uri = str(paths.assets / "frames")
    return {"camera_uri": uri, "model_name": "const", "model_version": "1"}


def _run(command: str, paths: Paths, desired: dict[str, Any], then: Callable[[Any], None]):
    broker = InProcessBroker([])
    hub = broker.hub(command, desired)
    service = build_module([command], ModuleContext(hub, paths, f"sqlite:///{paths.data}/m.db"))
    assert service is not None
    paths.data.mkdir(parents=True, exist_ok=True)
    service.start()
    try:
        then((broker, hub, service))
    finally:
        service.stop()


def _config(hub) -> dict[str, Any]:
    return hub.get_twin()["reported"].get("config") or {}


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_bad_key_at_start_then_a_restart_on_the_last_good_settings(command, paths):
    good, bad_key, bad_value, probe = CASES[command]
    base = _base(command, paths)
    first = {**base, **good, bad_key: bad_value, "$version": 4}

    def first_start(running) -> None:
        broker, hub, _service = running
        assert wait_for(lambda: (_config(hub).get("error") or {}).get("keys"), 60)
        config = _config(hub)
        assert set(config["error"]["keys"]) == {bad_key} and config["error"]["version"] == 4
        assert config["applied_version"] is None
        # the valid keys serve, the bad one has its default
        assert config["settings"][probe] == good[probe]
        assert config["settings"][bad_key] != bad_value
        fixed = broker.patch_desired(command, {bad_key: None})
        assert wait_for(lambda: _config(hub).get("applied_version") == fixed, 60)
        assert _config(hub).get("error") is None  # null deletes a reported key, as in IoT Hub

    _run(command, paths, first, first_start)

    # restarted on a twin that is bad again, with another value of the probed setting
    second = {**base, **good, probe: OTHER[command], bad_key: bad_value}
    second["$version"] = 9

    def restart(running) -> None:
        _broker, hub, service = running
        assert wait_for(lambda: (_config(hub).get("error") or {}).get("version") == 9, 60)
        config = _config(hub)
        assert config["applied_version"] == 5  # the persisted last good document
        assert config["settings"][probe] == good[probe]
        assert bad_key in config["error"]["keys"]
        status, answer = hub.call_method("status", None)
        assert status == 200 and answer["config"]["applied_version"] == 5
        if command == "cis":  # still inspecting, under the last good camera id
            assert wait_for(lambda: service.pipeline.metrics.counters.get("inferences", 0) > 0, 60)

    _run(command, paths, second, restart)
