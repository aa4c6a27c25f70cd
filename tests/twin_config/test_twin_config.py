"""The twin configuration tool: registries, generated form, diff, apply, acknowledgement."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Module, QueryResult, Twin, TwinProperties
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from mfgvision.deploy import twin_registry as standin_registry_module
from mfgvision.deploy.checks import split_create_options
from mfgvision.deploy.twin_registry import StandInRegistry
from mfgvision.deploy.twin_store import TwinStore
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.settings import CisSettings, SettingsError
from mfgvision.twin_config.app import create_app
from mfgvision.twin_config.forms import form_fields, propose, read_form
from mfgvision.twin_config.manifest import ManifestEditError, clone_camera, redact
from mfgvision.twin_config.registry import (
    LOCAL_DEVICE,
    CloudRegistry,
    ConflictError,
    LocalRegistry,
    command_of,
)
from mfgvision.web.auth import AuthConfig

DESIRED = {"camera_id": "line1-top", "camera_uri": "samples/line1", "prob_threshold": 0.5}
MANIFEST: dict[str, Any] = {
    "modulesContent": {
        "$edgeAgent": {
            "properties.desired": {
                "runtime": {
                    "settings": {
                        "registryCredentials": {
                            "acr": {"username": "bob", "password": "hunter2", "address": "x"}
                        }
                    }
                },
                "modules": {
                    "CIS1": {
                        "settings": {"image": "cis:1", "createOptions": '{"Cmd": ["cis"]}'},
                        "env": {
                            "MFGVISION_DB_URL": {"value": "mysql+mysqlconnector://u:pw@h/db"},
                            "STORAGE_KEY": {"value": "abc"},
                        },
                    },
                    "Dashboard": {
                        "settings": {"image": "d:1", "createOptions": {"Cmd": ["dashboard"]}}
                    },
                },
            }
        },
        "$edgeHub": {
            "properties.desired": {
                "routes": {
                    "CIS1ToUpstream": "FROM /messages/modules/CIS1/outputs/inference INTO $upstream"
                }
            }
        },
        "CIS1": {"properties.desired": DESIRED},
    }
}
COMMANDS = {"CIS1": ["cis"], "Dashboard": ["dashboard"]}


class FakeCis:
    """What the CIS service does with a patch: validate the merged state and report."""

    def __init__(self, broker: InProcessBroker) -> None:
        self.hub = broker.hub("CIS1", dict(DESIRED))
        self.hub.on_desired(lambda patch, _full: self.on_patch(patch))
        self.desired = dict(DESIRED)
        self.hub.connect()

    def on_patch(self, patch: dict[str, Any]) -> None:
        from mfgvision.edge.twins import merge_patch
        from mfgvision.settings import parse_settings

        merged = merge_patch(self.desired, patch)
        try:
            settings = parse_settings(CisSettings, merged)
        except SettingsError as exc:
            self.hub.patch_reported(
                {"config": {"error": {"version": patch["$version"], "message": str(exc)}}}
            )
            return
        self.desired = merged
        self.hub.patch_reported(
            {
                "config": {
                    "applied_version": patch["$version"],
                    "error": None,
                    "settings": settings.model_dump(),
                }
            }
        )


@pytest.fixture
def broker() -> InProcessBroker:
    return InProcessBroker([])


@pytest.fixture
def client(broker: InProcessBroker):
    cis = FakeCis(broker)
    broker.hub("Dashboard", {})
    registry = LocalRegistry(broker, MANIFEST, COMMANDS)
    app = create_app(registry, AuthConfig("eng", generate_password_hash("pw")))
    app.testing = True
    test_client = app.test_client()
    page = test_client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = test_client.post(
        "/login", data={"user": "eng", "password": "pw", "csrf_token": token, "next": "/"}
    )
    assert response.status_code == 302
    yield test_client
    cis.hub.disconnect()


def csrf(client: FlaskClient, url: str) -> tuple[str, str]:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1), page


def form_data(token: str, **changes: Any) -> dict[str, str]:
    values = CisSettings.model_validate(DESIRED).model_dump()
    values.update(changes)
    data = {"csrf_token": token}
    for key, value in values.items():
        if isinstance(value, bool):
            if value:
                data[key] = "on"
        elif value is None:
            data[key] = ""
        elif isinstance(value, list):
            data[key] = ",".join(value)
        elif isinstance(value, dict):
            data[key] = json.dumps(value)
        else:
            data[key] = str(value)
    return data


def wait_for(check, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_login_required() -> None:
    registry = LocalRegistry(InProcessBroker([]), MANIFEST, COMMANDS)
    app = create_app(registry, AuthConfig("eng", generate_password_hash("pw")))
    anonymous = app.test_client()
    assert anonymous.get("/").status_code == 302
    assert anonymous.get("/api/devices/local/modules/CIS1/twin").status_code == 401
    assert anonymous.post("/devices/local/modules/CIS1/apply").status_code == 400  # CSRF first
    assert anonymous.get("/healthz").status_code == 200


def test_lists_devices_and_modules(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "CIS1" in html and "Dashboard" in html and "Add a camera" in html


def test_form_is_generated_from_the_schema(client: FlaskClient) -> None:
    _, html = csrf(client, "/devices/local/modules/CIS1")
    for name in CisSettings.model_fields:
        assert f'name="{name}"' in html
    field = re.search(r'<input id="f-prob_threshold"[^>]*>', html).group(0)
    assert 'type="number"' in field and 'max="1' in field and 'value="0.5"' in field
    assert '<option value="rtsp"' in html


def test_review_apply_and_acknowledge(client: FlaskClient, broker: InProcessBroker) -> None:
    token, _ = csrf(client, "/devices/local/modules/CIS1")
    review = client.post(
        "/devices/local/modules/CIS1/review", data=form_data(token, prob_threshold=0.72)
    )
    assert review.status_code == 200
    html = review.get_data(as_text=True)
    assert "prob_threshold" in html and "0.72" in html
    patch = json.loads(
        re.search(r'name="patch" value="([^"]+)"', html).group(1).replace("&#34;", '"')
    )
    assert patch == {"prob_threshold": 0.72}
    etag = re.search(r'name="etag" value="([^"]+)"', html).group(1)
    response = client.post(
        "/devices/local/modules/CIS1/apply",
        data={"csrf_token": token, "patch": json.dumps(patch), "etag": etag},
    )
    assert response.status_code == 302 and "sent=2" in response.headers["Location"]
    assert broker.hub("CIS1").get_twin()["desired"]["prob_threshold"] == 0.72
    assert wait_for(
        lambda: (
            client.get("/api/devices/local/modules/CIS1/twin").get_json()["applied_version"] == 2
        )
    )
    # The same review again is refused: the twin moved on.
    stale = client.post(
        "/devices/local/modules/CIS1/apply",
        data={"csrf_token": token, "patch": json.dumps({"prob_threshold": 0.3}), "etag": etag},
    )
    assert stale.status_code == 302 and "sent=" not in stale.headers["Location"]
    assert broker.hub("CIS1").get_twin()["desired"]["prob_threshold"] == 0.72


def test_invalid_values_are_shown_and_never_sent(
    client: FlaskClient, broker: InProcessBroker
) -> None:
    token, _ = csrf(client, "/devices/local/modules/CIS1")
    for changes in ({"prob_threshold": "1.5"}, {"camera_id": "bad id!"}, {"inference_fps": "x"}):
        response = client.post(
            "/devices/local/modules/CIS1/review", data=form_data(token, **changes)
        )
        assert response.status_code == 422
        assert 'class="form-error"' in response.get_data(as_text=True)
    forged = client.post(
        "/devices/local/modules/CIS1/apply",
        data={"csrf_token": token, "patch": json.dumps({"prob_threshold": 7}), "etag": "*"},
    )
    assert forged.status_code == 302
    assert broker.hub("CIS1").get_twin()["desired"]["prob_threshold"] == 0.5
    assert client.post(
        "/devices/local/modules/CIS1/apply",
        data={"csrf_token": token, "patch": json.dumps({"password": "x"}), "etag": "*"},
    ).status_code in (302, 400)
    assert "password" not in broker.hub("CIS1").get_twin()["desired"]
    assert client.post("/devices/local/modules/CIS1/apply", data={"patch": "{}"}).status_code == 400


def test_module_refusal_is_reported(client: FlaskClient, broker: InProcessBroker) -> None:
    version = broker.patch_desired("CIS1", {"camera_type": "webcam"})  # bypassing the tool
    data = client.get("/api/devices/local/modules/CIS1/twin").get_json()
    assert wait_for(
        lambda: (
            (client.get("/api/devices/local/modules/CIS1/twin").get_json()["error"] or {}).get(
                "version"
            )
            == version
        )
    )
    data = client.get("/api/devices/local/modules/CIS1/twin").get_json()
    assert data["summary"]["level"] == "error" and "Refused" in data["summary"]["text"]


def test_unknown_ids(client: FlaskClient) -> None:
    assert client.get("/devices/local/modules/Nope").status_code == 404
    assert client.get("/devices/other/modules/CIS1").status_code == 404
    assert client.get("/devices/local/modules/a%20b").status_code == 400


def test_add_camera_downloads_a_manifest(client: FlaskClient) -> None:
    token, _ = csrf(client, "/devices/local/add-camera")
    response = client.post(
        "/devices/local/add-camera",
        data={
            "csrf_token": token,
            "source": "CIS1",
            "module": "CIS2",
            "camera_id": "line2-top",
            "camera_location": "line2",
            "camera_position": "top",
            "camera_type": "rtsp",
            "camera_uri": "rtsp://cam2/stream",
        },
    )
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    manifest = json.loads(response.data)
    content = manifest["modulesContent"]
    assert content["CIS2"]["properties.desired"]["camera_id"] == "line2-top"
    assert content["CIS2"]["properties.desired"]["prob_threshold"] == 0.5
    agent = content["$edgeAgent"]["properties.desired"]
    assert agent["modules"]["CIS2"] == agent["modules"]["CIS1"]
    routes = content["$edgeHub"]["properties.desired"]["routes"]
    assert "FROM /messages/modules/CIS2/outputs/inference INTO $upstream" in routes.values()
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and ":pw@" not in text and '"abc"' not in text
    again = client.post(
        "/devices/local/add-camera",
        data={"csrf_token": token, "source": "CIS1", "module": "CIS2", "camera_id": "line1-top"},
    )
    assert again.status_code == 422


def test_clone_checks() -> None:
    with pytest.raises(ManifestEditError):
        clone_camera(MANIFEST, "CIS1", "9bad", {"camera_id": "x"})
    with pytest.raises(ManifestEditError):
        clone_camera(MANIFEST, "Nope", "CIS2", {"camera_id": "x"})
    with pytest.raises(SettingsError):
        clone_camera(MANIFEST, "CIS1", "CIS2", {"camera_id": "x", "prob_threshold": 3})
    assert redact(MANIFEST)["modulesContent"]["CIS1"] == MANIFEST["modulesContent"]["CIS1"]


def test_propose_rewrites_legacy_keys() -> None:
    fields = form_fields(CisSettings)
    legacy = {"CAMERA_ID": "cam", "PROB_THRES": 0.4, "$version": 3}
    values, errors = read_form(
        fields, {**form_data("t"), "camera_id": "cam", "prob_threshold": "0.6"}
    )
    assert not errors
    proposal = propose(CisSettings, legacy, values)
    assert proposal.patch["CAMERA_ID"] is None and proposal.patch["PROB_THRES"] is None
    assert proposal.patch["prob_threshold"] == 0.6
    assert [c.key for c in proposal.changes] == ["prob_threshold"]


def test_cloud_registry_uses_the_service_sdk() -> None:
    manager = create_autospec(IoTHubRegistryManager, instance=True)
    manager.query_iot_hub.side_effect = [
        QueryResult(items=[Twin(device_id="edge-2")], continuation_token="next"),
        QueryResult(items=[Twin(device_id="edge-1")], continuation_token=None),
    ]
    manager.get_modules.return_value = [
        Module(module_id="$edgeAgent"),
        Module(module_id="CIS1"),
        Module(module_id="Dashboard"),
    ]
    agent = MANIFEST["modulesContent"]["$edgeAgent"]["properties.desired"]
    twins = {
        "$edgeAgent": Twin(etag="a", properties=TwinProperties(desired=agent, reported={})),
        "CIS1": Twin(
            etag="e1",
            properties=TwinProperties(
                desired={**DESIRED, "$version": 4}, reported={"config": {"applied_version": 4}}
            ),
        ),
    }
    manager.get_module_twin.side_effect = lambda device, module: twins[module]
    manager.update_module_twin.return_value = Twin(
        etag="e2", properties=TwinProperties(desired={**DESIRED, "$version": 5}, reported={})
    )
    registry = CloudRegistry(manager)
    assert registry.devices() == ["edge-1", "edge-2"]
    modules = registry.modules("edge-1")
    assert [(m.module_id, m.kind) for m in modules] == [("CIS1", "cis"), ("Dashboard", "dashboard")]
    twin = registry.twin("edge-1", "CIS1")
    assert twin.etag == "e1" and twin.desired_version == 4
    assert twin.kind == "cis"  # the module page finds its settings form by kind
    updated = registry.patch_desired("edge-1", "CIS1", {"prob_threshold": 0.7}, "e1")
    assert updated.desired_version == 5 and updated.kind == "cis"
    (call,) = manager.update_module_twin.call_args_list
    device, module, body, etag = call.args
    assert (device, module, etag) == ("edge-1", "CIS1", "e1")
    assert body.properties.desired == {"prob_threshold": 0.7}


def test_cloud_conflict_is_reported() -> None:
    from msrest.exceptions import HttpOperationError

    manager = create_autospec(IoTHubRegistryManager, instance=True)
    response = type("R", (), {"status_code": 412, "reason": "Precondition Failed", "text": ""})()
    error = HttpOperationError.__new__(HttpOperationError)
    error.response = response
    manager.update_module_twin.side_effect = error
    with pytest.raises(ConflictError):
        CloudRegistry(manager).patch_desired("d", "m", {"a": 1}, "old")


def test_command_of_reads_every_create_options_form() -> None:
    cmd = ["cis", "--module", "CIS1"]
    padding = {"HostConfig": {"Binds": [f"/srv/volume{i}:/data{i}" for i in range(40)]}}
    as_object = {"settings": {"createOptions": {"Cmd": cmd, **padding}}}
    as_string = {"settings": {"createOptions": json.dumps({"Cmd": cmd})}}
    chunked = copy.deepcopy(as_object)
    split_create_options(chunked["settings"])
    assert "createOptions01" in chunked["settings"]
    for spec in (as_object, as_string, chunked):
        assert command_of(spec) == cmd
    assert command_of({"settings": {"createOptions": "{not json"}}) == []
    assert command_of({}) == []


def test_stand_in_registry_reads_its_twins_file_and_the_manifest_once(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_path = tmp_path / "deployment.json"
    manifest_path.write_text(json.dumps(MANIFEST))
    state = tmp_path / "edgehub"
    TwinStore(state / "twins.json").deploy("CIS1", DESIRED)  # no stand-in running: its file
    parsed: list[object] = []
    real = standin_registry_module.load_manifest
    monkeypatch.setattr(
        standin_registry_module, "load_manifest", lambda *a, **k: parsed.append(a) or real(*a, **k)
    )
    standin = StandInRegistry(state, manifest_path)
    modules = standin.modules(LOCAL_DEVICE)
    assert [(m.module_id, m.kind) for m in modules] == [("CIS1", "cis"), ("Dashboard", "dashboard")]
    twin = standin.twin(LOCAL_DEVICE, "CIS1")
    assert twin.kind == "cis" and twin.desired["prob_threshold"] == 0.5
    after = standin.patch_desired(LOCAL_DEVICE, "CIS1", {"prob_threshold": 0.8}, twin.etag)
    assert after.desired["prob_threshold"] == 0.8
    assert TwinStore(state / "twins.json").twin("CIS1")["desired"]["prob_threshold"] == 0.8
    with pytest.raises(ConflictError):
        standin.patch_desired(LOCAL_DEVICE, "CIS1", {"prob_threshold": 0.7}, twin.etag)
    assert len(parsed) == 1  # every call above used the manifest parsed once
    changed = copy.deepcopy(MANIFEST)
    del changed["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["Dashboard"]
    manifest_path.write_text(json.dumps(changed))
    assert [m.module_id for m in standin.modules(LOCAL_DEVICE)] == ["CIS1"]
    assert len(parsed) == 2
