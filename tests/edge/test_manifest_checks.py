"""Offline manifest checks: the repository's templates pass; broken copies fail with a clear problem."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mfgvision.deploy.checks import (
    CREATE_OPTIONS_CHUNK,
    CheckError,
    check_expanded,
    check_manifest,
    expand_deployment,
    split_create_options,
)
from mfgvision.edge.hub import Hub
from mfgvision.edge.inprocess import InProcessBroker, InProcessHub
from mfgvision.manifest import join_create_options, load_manifest
from mfgvision.module_registry import MODULES, ModuleContext, build_module
from mfgvision.runtime import Paths
from mfgvision.twin_config.registry import LocalRegistry

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = {
    "deployment.template.json": ("arm64v8", "amd64.gpu", "amd64"),
    "deployment.debug.template.json": ("amd64",),
}


def _raw(name: str = "deployment.template.json") -> dict[str, Any]:
    return json.loads((REPO / name).read_text())


def _check(tmp_path: Path, raw: dict[str, Any] | str, platform: str = "arm64v8") -> list[str]:
    path = tmp_path / "deployment.template.json"
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw, indent=2))
    problems = check_manifest(
        path, env_template=REPO / ".env.template", platform=platform, modules_dir=REPO / "modules"
    )
    return [str(p) for p in problems]


def _modules(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]


def _routes(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]


@pytest.mark.parametrize(
    "name, platform", [(n, p) for n, platforms in TEMPLATES.items() for p in platforms]
)
def test_repository_templates_pass(name, platform):
    problems = check_manifest(REPO / name, platform=platform)
    assert problems == [], "\n".join(map(str, problems))


def test_both_templates_run_the_same_modules_and_routes():
    prod, debug = (
        load_manifest(REPO / "deployment.template.json", {}),
        load_manifest(REPO / "deployment.debug.template.json", {}),
    )
    assert set(prod.modules) == set(debug.modules)
    assert prod.routes == debug.routes
    assert prod.modules["CIS1"].create_options["HostConfig"]["Runtime"] == "nvidia"
    assert "Runtime" not in debug.modules["CIS1"].create_options["HostConfig"]
    assert debug.modules["CIS1"].env["MFGVISION_LOG_LEVEL"] == "DEBUG"


def test_required_routes_and_storage_are_there():
    raw = _raw()
    manifest = load_manifest(REPO / "deployment.template.json", {})
    pairs = {
        (r.source_module, r.source_output, r.sink_module, r.sink_input) for r in manifest.routes
    }
    assert ("CIS1", "inference", None, None) in pairs
    assert ("CIS1", "alerts", None, None) in pairs
    assert ("CIS1", "imageUpload", "ImageUpload", "imageUpload") in pairs
    hub = raw["modulesContent"]["$edgeHub"]["properties.desired"]
    assert hub["storeAndForwardConfiguration"]["timeToLiveSecs"] > 0
    for spec in manifest.modules.values():
        for bind in spec.create_options.get("HostConfig", {}).get("Binds", []):
            assert bind.startswith("/home/edge_assets/"), bind
    mysql = manifest.modules["MySQL"]
    assert "/home/edge_assets/mysql:/var/lib/mysql" in mysql.create_options["HostConfig"]["Binds"]
    assert _modules(raw)["MySQL"]["env"]["MARIADB_PASSWORD"]["value"] == "${MYSQL_PASSWORD}"


def test_a_route_from_an_output_the_module_does_not_send_fails(tmp_path):
    raw = _raw()
    _routes(raw)["CIS1InferenceToUpstream"] = (
        "FROM /messages/modules/CIS1/outputs/outputInference INTO $upstream"
    )
    problems = _check(tmp_path, raw)
    assert any("CIS1InferenceToUpstream" in p and "outputInference" in p for p in problems), (
        problems
    )


def test_a_route_to_an_input_the_target_does_not_handle_fails(tmp_path):
    raw = _raw()
    _routes(raw)["CIS1ImagesToUpload"] = (
        "FROM /messages/modules/CIS1/outputs/imageUpload INTO "
        'BrokeredEndpoint("/modules/ImageUpload/inputs/inputImageSend")'
    )
    problems = _check(tmp_path, raw)
    assert any("inputImageSend" in p and "handles no input" in p for p in problems), problems


@pytest.mark.parametrize(
    "route, expected",
    [
        # the original system's bug: the source module name does not match the deployed module
        ("FROM /messages/modules/CIS_1/outputs/inference INTO $upstream", "'CIS_1' is not in"),
        (
            'FROM /messages/modules/CIS1/outputs/imageUpload INTO BrokeredEndpoint("/modules/Upload/inputs/imageUpload")',
            "'Upload' is not in",
        ),
        ("FROM /messages/modules/MySQL/outputs/x INTO $upstream", "does not run a mfgvision"),
        ("FROM /messages/modules/CIS1/outputs/inference", "expected 'FROM"),
    ],
)
def test_broken_routes_fail(tmp_path, route, expected):
    raw = _raw()
    _routes(raw)["Broken"] = route
    problems = _check(tmp_path, raw)
    assert any("Broken" in p and expected in p for p in problems), problems


def test_an_undefined_variable_fails(tmp_path):
    raw = _raw()
    _modules(raw)["ImageUpload"]["env"]["MFGVISION_STORAGE_CONNECTION_STRING"]["value"] = (
        "${STORAGE_CONN_STR}"
    )
    problems = _check(tmp_path, raw)
    assert any("${STORAGE_CONN_STR} is not defined in .env.template" in p for p in problems), (
        problems
    )


def test_an_image_without_a_module_folder_fails(tmp_path):
    raw = _raw()
    _modules(raw)["Dashboard"]["settings"]["image"] = "${MODULES.Dashbord}"
    problems = _check(tmp_path, raw)
    assert any("modules/Dashbord/module.json" in p and "does not exist" in p for p in problems)


def test_a_platform_without_a_dockerfile_fails(tmp_path):
    problems = _check(tmp_path, _raw(), platform="amd64.debug")
    assert any("no Dockerfile for platform 'amd64.debug'" in p for p in problems), problems


def test_schema_errors_are_reported(tmp_path):
    raw = _raw()
    _modules(raw)["CIS1"]["status"] = "sleeping"
    del raw["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
    problems = _check(tmp_path, raw)
    assert any("'sleeping' is not one of" in p for p in problems), problems
    assert any("'routes' is a required property" in p for p in problems), problems


def test_a_variable_as_schema_version_is_refused(tmp_path):
    text = (REPO / "deployment.template.json").read_text()
    text = text.replace('"schemaVersion": "1.1"', '"schemaVersion": "${EDGEAGENT_SCHEMA}"', 1)
    problems = _check(tmp_path, text)
    assert any("schemaVersion" in p for p in problems), problems


def test_a_twin_for_a_module_that_is_not_deployed_fails(tmp_path):
    raw = _raw()
    raw["modulesContent"]["CIS2"] = {"properties.desired": {"camera_id": "cam2"}}
    problems = _check(tmp_path, raw)
    assert any("CIS2" in p and "module not deployed" in p for p in problems), problems


def test_cis_twin_sections_are_validated(tmp_path):
    raw = _raw()
    raw["modulesContent"]["CIS1"]["properties.desired"]["prob_treshold"] = 0.4
    problems = _check(tmp_path, raw)
    assert any("CIS1 properties.desired" in p and "prob_treshold" in p for p in problems)


def test_a_literal_secret_in_the_environment_fails(tmp_path):
    raw = _raw()
    _modules(raw)["MySQL"]["env"]["MARIADB_ROOT_PASSWORD"]["value"] = "hunter2"
    problems = _check(tmp_path, raw)
    assert any("MARIADB_ROOT_PASSWORD" in p and "secret" in p for p in problems), problems


def test_an_unknown_module_command_fails(tmp_path):
    raw = _raw()
    _modules(raw)["CIS1"]["settings"]["createOptions"]["Cmd"] = ["cis2"]
    problems = _check(tmp_path, raw)
    assert any("'cis2' is not a mfgvision module command" in p for p in problems), problems


def test_long_create_options_are_split_into_512_character_chunks(tmp_path):
    raw = _raw()
    binds = [f"/home/edge_assets/cam{i:02d}:/data/cam{i:02d}" for i in range(40)]
    _modules(raw)["CIS1"]["settings"]["createOptions"]["HostConfig"]["Binds"] += binds
    assert _check(tmp_path, raw) == []
    manifest = expand_deployment(
        tmp_path / "deployment.template.json",
        {k: "x" for k in ("CONTAINER_REGISTRY_ADDRESS", "MFGVISION_IMAGE_VERSION")}
        | dict.fromkeys(
            [
                "CONTAINER_REGISTRY_USERNAME",
                "CONTAINER_REGISTRY_PASSWORD",
                "MYSQL_DATABASE",
                "MYSQL_USER",
                "MYSQL_PASSWORD",
                "MYSQL_ROOT_PASSWORD",
                "STORAGE_CONNECTION_STRING",
                "MQTT_PASSWORD",
                "OPCUA_CLIENT_PASSWORD",
                "OPCUA_PASSWORD",
            ],
            "v",
        ),
        modules_dir=REPO / "modules",
    )
    settings = _modules(manifest)["CIS1"]["settings"]
    keys = [k for k in settings if k.startswith("createOptions")]
    assert keys[:3] == ["createOptions", "createOptions01", "createOptions02"]
    assert all(len(settings[k]) <= CREATE_OPTIONS_CHUNK for k in keys)
    assert join_create_options(settings)["HostConfig"]["Binds"][-1] == binds[-1]
    assert settings["image"] == "x/mfgvision-cis:x-arm64v8"
    assert "$schema-template" not in manifest
    assert check_expanded(manifest) == []


def test_an_over_long_chunk_in_an_expanded_manifest_fails():
    manifest = expand_deployment(
        REPO / "deployment.debug.template.json",
        {**{k: "v" for k in _env_keys()}, "CONTAINER_REGISTRY_ADDRESS": "reg.io"},
        platform="amd64",
    )
    settings = _modules(manifest)["CIS1"]["settings"]
    options = join_create_options(settings)
    options["HostConfig"]["Binds"] += [f"/home/edge_assets/x{i}:/x{i}" for i in range(30)]
    settings["createOptions"] = json.dumps(options)  # one string, not split
    problems = [str(p) for p in check_expanded(manifest)]
    assert any("IoT Edge allows 512 per chunk" in p for p in problems), problems


def test_create_options_beyond_4096_characters_cannot_be_expanded():
    settings = {"createOptions": {"Env": ["X=" + "y" * 5000]}}
    with pytest.raises(CheckError, match="4096"):
        split_create_options(copy.deepcopy(settings))


def _env_keys() -> list[str]:
    from mfgvision.manifest import read_env_file

    return list(read_env_file(REPO / ".env.template"))


def test_check_manifest_command(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "mfgvision", "check-manifest", "deployment.template.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0 and "OK" in good.stdout, good.stdout + good.stderr
    raw = _raw()
    _routes(raw)["CIS1ImagesToUpload"] = _routes(raw)["CIS1ImagesToUpload"].replace(
        "inputs/imageUpload", "inputs/images"
    )
    bad_path = tmp_path / "deployment.template.json"
    bad_path.write_text(json.dumps(raw))
    (tmp_path / ".env.template").write_text((REPO / ".env.template").read_text())
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "modules").symlink_to(REPO / "modules")
    bad = subprocess.run(
        [sys.executable, "-m", "mfgvision", "check-manifest", str(bad_path), "--platform", "amd64"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "inputs" in bad.stdout and "images" in bad.stdout, bad.stdout


def test_check_manifest_writes_the_deployable_manifest(tmp_path):
    work = tmp_path / "solution"
    work.mkdir()
    for name in ("deployment.debug.template.json", ".env.template", "pyproject.toml"):
        (work / name).write_text((REPO / name).read_text())
    (work / "modules").symlink_to(REPO / "modules")
    env = {k: "value" for k in _env_keys()}
    env["CONTAINER_REGISTRY_ADDRESS"] = "example.azurecr.io"
    env["MYSQL_PASSWORD"] = 'p"w$d'
    (work / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    out = work / "config" / "deployment.amd64.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfgvision",
            "check-manifest",
            str(work / "deployment.debug.template.json"),
            "--platform",
            "amd64",
            "--output",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads(out.read_text())
    cis = _modules(manifest)["CIS1"]
    assert cis["settings"]["image"] == "example.azurecr.io/mfgvision-cis:value-amd64"
    assert isinstance(cis["settings"]["createOptions"], str)
    assert 'p"w$d' in cis["env"]["MFGVISION_DB_URL"]["value"]


class RecordingHub(InProcessHub):
    """An in-process hub that remembers which inputs the module registers."""

    def __init__(self, module_id: str, broker: InProcessBroker) -> None:
        super().__init__(module_id, broker, {"camera_uri": "/nonexistent", "model_name": "none"})
        self.inputs: list[str] = []

    def on_input(self, input_name, handler):
        self.inputs.append(input_name)
        super().on_input(input_name, handler)


@pytest.mark.parametrize("command", sorted(MODULES))
def test_declared_inputs_are_the_ones_the_module_code_registers(tmp_path, command):
    broker = InProcessBroker([])
    hub: Hub = RecordingHub(command, broker)
    paths = Paths(assets=tmp_path, models=tmp_path / "models", data=tmp_path / "data")
    manifest = load_manifest(REPO / "deployment.template.json", {})
    commands = {name: spec.command for name, spec in manifest.modules.items()}
    ctx = ModuleContext(  # what the in-process demo gives modules that need more than a hub
        hub,
        paths,
        f"sqlite:///{tmp_path / 'm.db'}",
        "127.0.0.1",
        0,
        twin_registry=LocalRegistry(broker, manifest.raw, commands),
        twin_config_port=0,
    )
    service = build_module([command], ctx)
    assert service is not None
    service.start()
    try:
        assert sorted(hub.inputs) == sorted(MODULES[command].inputs)
    finally:
        service.stop()


def test_a_cis_without_the_receipts_route_back_fails_unless_it_waits_for_none(tmp_path):
    raw = _raw()
    del _routes(raw)["CIS1ReceiptsFromUpload"]
    problems = _check(tmp_path, raw)
    assert any(
        "CIS1ImagesToUpload" in p
        and "receipts do not come back to CIS1" in p
        and "/modules/CIS1/inputs/uploadReceipts" in p
        for p in problems
    ), problems
    raw["modulesContent"]["CIS1"]["properties.desired"]["upload_receipts"] = False
    assert not any("receipts" in p for p in _check(tmp_path, raw))


def test_modules_on_the_host_network_need_metrics_ports_of_their_own(tmp_path):
    raw = _raw()
    del _modules(raw)["ImageUpload"]["env"]["MFGVISION_METRICS_PORT"]  # the default: CIS1's port
    problems = _check(tmp_path, raw)
    assert [p for p in problems if "METRICS" in p] == [
        "deployment.template.json ImageUpload env MFGVISION_METRICS_PORT: port 9464 is CIS1's "
        "too; each module on the host network needs its own metrics port"
    ]
    _modules(raw)["ImageUpload"]["env"]["MFGVISION_METRICS_PORT"] = {"value": "0"}  # off
    assert not any("METRICS" in p for p in _check(tmp_path, raw))


def _second_cis(raw: dict[str, Any], desired: dict[str, Any]) -> None:
    """A module CIS2 running as CIS1 does (its own metrics port), with ``desired`` as its twin."""
    modules = _modules(raw)
    modules["CIS2"] = copy.deepcopy(modules["CIS1"])
    modules["CIS2"]["env"]["MFGVISION_METRICS_PORT"] = {"value": "9480"}
    raw["modulesContent"]["CIS2"] = {"properties.desired": desired}


def test_a_cis_with_several_cameras_is_validated_camera_by_camera(tmp_path):
    raw = _raw()
    desired = raw["modulesContent"]["CIS1"]["properties.desired"]
    desired["cameras"] = [{"camera_id": "line1-top"}, {"camera_id": "line1-side", "fp16": False}]
    problems = _check(tmp_path, raw)
    assert [p for p in problems if "CIS1" in p] == [
        "deployment.template.json CIS1 properties.desired: cameras[1].fp16: a setting of the "
        "whole module, not of one camera"
    ]
    desired["cameras"][1] = {"camera_id": "line1-side", "camera_position": "side"}
    assert not _check(tmp_path, raw)


def test_camera_ids_are_unique_across_every_cis_module(tmp_path):
    raw = _raw()
    cis1 = raw["modulesContent"]["CIS1"]["properties.desired"]
    cis1["cameras"] = [{"camera_id": "line1-top"}, {"camera_id": "line1-side"}]
    _second_cis(raw, {**cis1, "cameras": [{"camera_id": "line2-top"}, {"camera_id": "line1-top"}]})
    problems = _check(tmp_path, raw)
    assert problems == [
        "deployment.template.json CIS2 properties.desired cameras[1].camera_id: camera id "
        "line1-top is CIS1's cameras[0].camera_id too; each camera of the device needs an id of "
        "its own"
    ]
    # A module with one camera of its own keys counts too.
    raw["modulesContent"]["CIS2"]["properties.desired"] = {**cis1, "cameras": None}
    problems = _check(tmp_path, raw)
    assert problems == [
        "deployment.template.json CIS2 properties.desired camera_id: camera id line1-top is "
        "CIS1's cameras[0].camera_id too; each camera of the device needs an id of its own"
    ]
    raw["modulesContent"]["CIS2"]["properties.desired"]["camera_id"] = "line2-top"
    assert not _check(tmp_path, raw)


def test_a_module_with_several_cameras_still_needs_one_metrics_port(tmp_path):
    raw = _raw()
    cis1 = raw["modulesContent"]["CIS1"]["properties.desired"]
    cis1["cameras"] = [{"camera_id": "line1-top"}, {"camera_id": "line1-side"}]
    _second_cis(raw, {**cis1, "cameras": [{"camera_id": "line2-top"}]})
    assert not _check(tmp_path, raw)
    _modules(raw)["CIS2"]["env"]["MFGVISION_METRICS_PORT"] = {"value": "9464"}
    assert [p for p in _check(tmp_path, raw) if "METRICS" in p] == [
        "deployment.template.json CIS2 env MFGVISION_METRICS_PORT: port 9464 is CIS1's too; each "
        "module on the host network needs its own metrics port"
    ]
