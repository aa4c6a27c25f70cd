"""``mfgvision compose`` writes a compose file that runs the manifest with the edgeHub stand-in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from mfgvision.edge.routes import parse_routes
from mfgvision.manifest import load_manifest, parse_manifest

REPO = Path(__file__).resolve().parents[2]


def _compose(tmp_path: Path, template: str, platform: str) -> tuple[dict, dict, str]:
    out = tmp_path / "site" / "docker-compose.yml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfgvision",
            "compose",
            "--manifest",
            str(REPO / template),
            "--platform",
            platform,
            "--output",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    standin = json.loads((out.parent / "edgehub-manifest.json").read_text())
    return yaml.safe_load(text), standin, text


def test_compose_runs_every_module_with_the_stand_in(tmp_path):
    compose, standin, text = _compose(tmp_path, "deployment.template.json", "arm64v8")
    services = compose["services"]
    manifest = load_manifest(REPO / "deployment.template.json", {})
    for name in manifest.modules:
        assert name.lower() in services, name
    assert {"edgehub-init", "edgehub", "broker-cis1", "broker-imageupload"} <= set(services)

    cis = services["cis1"]
    spec = manifest.modules["CIS1"]
    assert cis["command"] == ["cis"]
    assert cis["network_mode"] == "host" and cis["runtime"] == "nvidia" and cis["ipc"] == "host"
    assert set(spec.create_options["HostConfig"]["Binds"]) <= set(cis["volumes"])
    assert "edgehub:/edgehub:ro" in cis["volumes"]
    env = cis["environment"]
    assert "GatewayHostName=127.0.0.2;" in env["EdgeHubConnectionString"]
    assert "ModuleId=CIS1;" in env["EdgeHubConnectionString"]
    assert env["EdgeModuleCACertificateFile"] == "/edgehub/ca.pem"
    assert (
        cis["image"]
        == "${CONTAINER_REGISTRY_ADDRESS}/mfgvision-cis:${MFGVISION_IMAGE_VERSION}-arm64v8"
    )
    assert cis["build"]["dockerfile"] == "modules/CIS/Dockerfile.arm64v8"
    assert (tmp_path / "site" / cis["build"]["context"] / "pyproject.toml").resolve().is_file()
    assert cis["depends_on"]["edgehub"] == {"condition": "service_started"}
    assert "mysql" in cis["depends_on"]  # startupOrder 0 comes first

    # secrets stay ${VAR} references for compose to fill in from .env
    mysql = services["mysql"]
    assert mysql["environment"]["MARIADB_PASSWORD"] == "${MYSQL_PASSWORD}"
    assert "/home/edge_assets/mysql:/var/lib/mysql" in mysql["volumes"]
    assert "${MYSQL_PASSWORD}" in env["MFGVISION_DB_URL"]
    assert services["imageupload"]["environment"]["MFGVISION_STORAGE_CONNECTION_STRING"] == (
        "${STORAGE_CONNECTION_STRING}"
    )
    assert "*id" not in text and "&id" not in text

    broker = services["broker-cis1"]
    assert broker["command"] == ["mosquitto", "-c", "/edgehub/brokers/CIS1/mosquitto.conf"]
    assert broker["depends_on"]["edgehub-init"]["condition"] == "service_completed_successfully"
    hub = services["edgehub"]
    assert hub["command"][-2:] == ["serve", "--no-brokers"]
    assert set(hub["depends_on"]) >= {"broker-cis1", "broker-imageupload"}
    assert services["edgehub-init"]["command"][-3:] == ["init", "--broker-uid", "1883"]

    # the stand-in's manifest: same routes and twins, no environment (no secrets)
    parsed = parse_manifest(standin)
    assert parsed.routes == manifest.routes
    assert parsed.modules["CIS1"].command == ["cis"] and parsed.modules["CIS1"].env == {}
    assert parsed.modules["CIS1"].desired == manifest.modules["CIS1"].desired
    assert "PASSWORD" not in json.dumps(standin)
    assert parse_routes(standin["modulesContent"]["$edgeHub"]["properties.desired"]["routes"])


def test_compose_for_the_cpu_debug_template(tmp_path):
    compose, _, _ = _compose(tmp_path, "deployment.debug.template.json", "amd64")
    cis = compose["services"]["cis1"]
    assert "runtime" not in cis
    assert cis["image"].endswith("-amd64") and cis["build"]["dockerfile"].endswith(".amd64")
    assert cis["environment"]["MFGVISION_LOG_LEVEL"] == "DEBUG"


def test_the_stand_in_prepares_broker_files_for_compose(tmp_path):
    """What ``edgehub-init`` does in the compose file, run here: configs the brokers can use."""
    _, standin, _ = _compose(tmp_path, "deployment.template.json", "amd64")
    manifest_path = tmp_path / "edgehub-manifest.json"
    manifest_path.write_text(json.dumps(standin))
    state = tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfgvision",
            "edgehub",
            "--state",
            str(state),
            "--manifest",
            str(manifest_path),
            "init",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    configs = json.loads(result.stdout)
    assert set(configs) >= {"CIS1", "Dashboard", "ImageUpload"}
    conf = Path(configs["CIS1"]).read_text()
    assert "listener 8883 127.0.0.2" in conf and "keyfile" in conf
    root = Path(configs["CIS1"]).parent.parent
    if root.name.startswith("mfgvision-edgehub-"):  # a temp folder the broker user can reach
        shutil.rmtree(root)
    twins = json.loads((state / "twins.json").read_text())["modules"]
    assert (
        twins["CIS1"]["desired"]["camera_id"]
        == standin["modulesContent"]["CIS1"]["properties.desired"]["camera_id"]
    )
