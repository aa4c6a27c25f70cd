"""The release's IoT Hub deployments (a base and a layered one, from the expanded template) and the
wait until a device runs them, judged on twins shaped as IoT Hub returns them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mfgvision.deploy.checks import check_expanded, expand_deployment
from mfgvision.deploy.release import (
    MODULES_KEY,
    ROUTES_KEY,
    ReleaseError,
    layer_images,
    layer_priority,
    rollout_problems,
    split_manifest,
    wait_for_rollout,
)
from mfgvision.manifest import read_env_file

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "plant.azurecr.io"


def _variables(version: str, **overrides: str) -> dict[str, str]:
    values = {
        k: v or f"value-of-{k.lower()}" for k, v in read_env_file(REPO / ".env.template").items()
    }
    return {
        **values,
        "CONTAINER_REGISTRY_ADDRESS": REGISTRY,
        "MFGVISION_IMAGE_VERSION": version,
        **overrides,
    }


def _manifest(
    version: str = "1.2.3", platform: str = "arm64v8", **overrides: str
) -> dict[str, Any]:
    return expand_deployment(
        REPO / "deployment.template.json", _variables(version, **overrides), platform
    )


def test_the_layer_carries_every_module_route_and_twin_and_the_base_the_runtime() -> None:
    manifest = _manifest()
    content = manifest["modulesContent"]
    agent = content["$edgeAgent"]["properties.desired"]
    hub = content["$edgeHub"]["properties.desired"]
    out = split_manifest(manifest, "arm64v8", "1.2.3")

    layer = out.layer["modulesContent"]
    assert {k.removeprefix(MODULES_KEY) for k in layer["$edgeAgent"]} == set(agent["modules"])
    assert layer["$edgeAgent"][MODULES_KEY + "CIS1"] == agent["modules"]["CIS1"]
    assert {k.removeprefix(ROUTES_KEY) for k in layer["$edgeHub"]} == set(hub["routes"])
    twins = {k: v for k, v in content.items() if not k.startswith("$")}
    assert twins and {k: v for k, v in layer.items() if not k.startswith("$")} == twins

    base = out.base["modulesContent"]
    assert base["$edgeAgent"]["properties.desired"]["modules"] == {}
    assert base["$edgeAgent"]["properties.desired"]["systemModules"] == agent["systemModules"]
    assert base["$edgeAgent"]["properties.desired"]["runtime"] == agent["runtime"]
    assert base["$edgeHub"]["properties.desired"]["routes"] == {}
    assert (
        base["$edgeHub"]["properties.desired"]["storeAndForwardConfiguration"]
        == hub["storeAndForwardConfiguration"]
    )
    # a deployable manifest for IoT Hub's schemas, with no module twin of its own
    assert check_expanded(out.base, "base") == []
    assert set(base) == {"$edgeAgent", "$edgeHub"}


def test_deployment_ids_and_priorities() -> None:
    first = split_manifest(_manifest("1.2.3"), "amd64.gpu", "1.2.3")
    assert first.layer_id == "mfgvision-amd64-gpu-1-2-3"
    assert first.base_id.startswith("mfgvision-base-amd64-gpu-")
    # the same runtime under another release: the same base deployment, which already exists
    again = split_manifest(_manifest("1.3.0"), "amd64.gpu", "1.3.0")
    assert again.base_id == first.base_id
    # new pull credentials: a new base deployment (IoT Hub's deployment content is immutable)
    rotated = split_manifest(
        _manifest("1.3.0", CONTAINER_REGISTRY_PASSWORD="rotated"), "amd64.gpu", "1.3.0"
    )
    assert rotated.base_id != first.base_id
    assert len(rotated.base_id) <= 128


def test_a_later_version_has_a_higher_priority_and_every_layer_is_above_the_base() -> None:
    ordered = ["0.0.1", "0.1.0", "0.1.1", "0.9.999", "0.10.0", "1.0.0", "1.2.9", "1.2.10", "2.0.0"]
    priorities = [layer_priority(v) for v in ordered]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    assert min(priorities) > 1  # the base deployment's priority
    with pytest.raises(ReleaseError):
        layer_priority("1.2")


def test_a_manifest_without_modules_is_refused() -> None:
    manifest = _manifest()
    manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"] = {}
    with pytest.raises(ReleaseError, match="no modules"):
        split_manifest(manifest, "arm64v8", "1.2.3")


# -- the rollout as the device's twins report it ------------------------------------------------


def _images() -> dict[str, str]:
    return layer_images(split_manifest(_manifest(), "arm64v8", "1.2.3").layer)


def _agent(images: dict[str, str], status: str = "running", code: int = 200) -> dict[str, Any]:
    """edgeAgent's reported properties, as on a device that runs ``images``."""
    modules = {
        name: {
            "runtimeStatus": status,
            "status": "running",
            "settings": {"image": image, "createOptions": "{}"},
            "version": "1.0",
            "exitCode": 0,
        }
        for name, image in images.items()
    }
    modules["MySQL"] = {"runtimeStatus": "running", "settings": {"image": "mariadb:11.4"}}
    return {
        "schemaVersion": "1.1",
        "version": 7,
        "lastDesiredStatus": {"code": code, "description": ""},
        "runtime": {"type": "docker"},
        "systemModules": {},
        "modules": modules,
    }


def _reports(version: str, reporting: tuple[str, ...] = ("CIS1", "ImageUpload", "ModelRepo")):
    return {
        name: {"software_version": version, "status": {"state": "running"}} for name in reporting
    }


def test_the_layer_images_are_ours_and_of_the_release() -> None:
    images = _images()
    assert set(images) == {
        "ModelRepo",
        "CIS1",
        "ImageUpload",
        "LineBridge",
        "Dashboard",
        "FileCleanup",
    }  # MySQL is not ours
    assert images["CIS1"] == f"{REGISTRY}/mfgvision-cis:1.2.3-arm64v8"


def test_a_device_running_the_release_has_no_problems() -> None:
    images = _images()
    assert rollout_problems(images, "1.2.3", _agent(images), _reports("1.2.3")) == []


def test_a_device_still_on_the_previous_release_is_not_there_yet() -> None:
    images = _images()
    old = {name: image.replace(":1.2.3-", ":1.2.2-") for name, image in images.items()}
    problems = rollout_problems(images, "1.2.3", _agent(old), _reports("1.2.2"))
    assert len(problems) == len(images)
    assert f"CIS1: runs {old['CIS1']}, not {images['CIS1']}" in problems


def test_a_module_that_reports_another_version_or_does_not_run_is_a_problem() -> None:
    images = _images()
    reports = {**_reports("1.2.3"), "ImageUpload": {"software_version": "0.0.0"}}
    assert rollout_problems(images, "1.2.3", _agent(images), reports) == [
        "ImageUpload: reports software_version 0.0.0, not 1.2.3"
    ]
    backoff = rollout_problems(images, "1.2.3", _agent(images, status="backoff"), _reports("1.2.3"))
    assert "CIS1: backoff, not running" in backoff
    refused = rollout_problems(images, "1.2.3", _agent(images, code=400), _reports("1.2.3"))
    assert refused == ["edgeAgent has not applied its desired properties (status 400)"]


def test_the_right_images_without_any_reported_version_are_not_enough() -> None:
    images = _images()
    assert rollout_problems(images, "1.2.3", _agent(images), {}) == [
        "no module reports a software_version yet"
    ]


class _Device:
    """A device whose twins move to release 1.2.3 at ``switch_s`` on a clock that only sleeps move."""

    def __init__(self, images: dict[str, str], switch_s: float) -> None:
        self.images = images
        self.switch_s = switch_s
        self.now = 0.0
        self.agent_reads = 0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def read(self, module: str) -> dict[str, Any]:
        done = self.now >= self.switch_s
        if module == "$edgeAgent":
            self.agent_reads += 1
            return _agent(self.images if done else {})
        return _reports("1.2.3" if done else "1.2.2").get(module, {})


def test_the_wait_ends_when_the_device_gets_there() -> None:
    images = _images()
    device = _Device(images, switch_s=75)
    problems = wait_for_rollout(
        images, "1.2.3", device.read, 600, 30, sleep=device.sleep, clock=lambda: device.now
    )
    assert problems == []
    assert device.now == 90 and device.agent_reads == 4


def test_the_wait_gives_up_after_its_timeout_with_what_is_missing() -> None:
    images = _images()
    device = _Device(images, switch_s=10_000)
    problems = wait_for_rollout(
        images, "1.2.3", device.read, 300, 30, sleep=device.sleep, clock=lambda: device.now
    )
    assert problems and all("runs nothing" in p for p in problems)
    assert device.now == 300


def test_split_on_the_command_line(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(_manifest("0.4.0", "amd64")))
    done = subprocess.run(
        [
            sys.executable, "-m", "mfgvision.deploy.release", "split", str(manifest),
            "--platform", "amd64", "--version", "0.4.0", "--out-dir", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert lines["LAYER_ID"] == "mfgvision-amd64-0-4-0"
    assert lines["LAYER_PRIORITY"] == str(layer_priority("0.4.0"))
    assert lines["BASE_ID"].startswith("mfgvision-base-amd64-")
    layer = json.loads((tmp_path / "out" / "layer.json").read_text())
    assert layer_images(layer)["CIS1"] == f"{REGISTRY}/mfgvision-cis:0.4.0-amd64"
    assert json.loads((tmp_path / "out" / "base.json").read_text())["modulesContent"]


def test_a_branch_is_no_release_on_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mfgvision.deploy.release", "version", "refs/heads/main"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and "not a release tag" in done.stderr
