"""The twin configuration tool: registries, generated form, diff, apply, acknowledgement."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Module, QueryResult, Twin, TwinProperties
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from mfgvision.deploy import twin_registry as standin_registry_module
from mfgvision.deploy.checks import check_manifest, split_create_options
from mfgvision.deploy.twin_registry import StandInRegistry
from mfgvision.deploy.twin_store import TwinStore
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.settings import CisSettings, LineBridgeSettings, SettingsError
from mfgvision.store.images import image_name
from mfgvision.twin_config.app import create_app
from mfgvision.twin_config.forms import form_fields, form_sections, propose, read_form
from mfgvision.twin_config.manifest import ManifestEditError, clone_camera, redact
from mfgvision.twin_config.registry import (
    LOCAL_DEVICE,
    CloudRegistry,
    ConflictError,
    LocalRegistry,
    NotFoundError,
    command_of,
)
from mfgvision.web.auth import AuthConfig
from tests.services import REPO

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
#: The module's own inputs: the ``cameras`` list has a section per camera instead.
MODULE_KEYS = [name for name in CisSettings.model_fields if name != "cameras"]


def module_fields() -> list[Any]:
    return [f for f in form_fields(CisSettings) if f.name != "cameras"]


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
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


@pytest.fixture
def client(broker: InProcessBroker, images: Path):
    cis = FakeCis(broker)
    broker.hub("Dashboard", {})
    registry = LocalRegistry(broker, MANIFEST, COMMANDS, images=images)
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
    for name in MODULE_KEYS:
        assert f'name="{name}"' in html
    assert 'name="cameras"' not in html
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


def test_zones_and_rules_are_edited_as_json_longer_than_a_text_setting() -> None:
    fields = form_fields(CisSettings)
    kinds = {f.name: f.kind for f in fields}
    assert (kinds["zones"], kinds["rules"], kinds["zones_frame"]) == ("json", "json", "list")
    zones = {f"zone{i}": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2], [0.1, 0.2]] for i in range(30)}
    rule = {"kind": "defect", "classes": ["scratch"], "min_probability": 0.6}
    rules = {f"scratch_in_zone{i}": {**rule, "zones": [f"zone{i}"]} for i in range(30)}
    data = form_data("t")
    data.update(zones=json.dumps(zones), rules=json.dumps(rules), zones_frame="")
    assert len(data["rules"]) > 2000
    values, errors = read_form(fields, data)
    assert not errors
    proposal = propose(CisSettings, {}, values)
    assert proposal.patch["zones"] == zones and proposal.settings["rules"]["scratch_in_zone7"][
        "zones"
    ] == ["zone7"]
    data["rules"] = json.dumps({"r": {"kind": "defect", "classes": ["s"], "zones": ["lid"]}})
    values, errors = read_form(fields, data)
    with pytest.raises(SettingsError, match=r"rules\.r\.zones\[0\]: unknown zone 'lid'"):
        propose(CisSettings, {}, values)


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
    assert standin.images_dir(LOCAL_DEVICE) is None
    with_images = StandInRegistry(state, manifest_path, images=tmp_path / "images")
    assert with_images.images_dir(LOCAL_DEVICE) == tmp_path / "images"
    with pytest.raises(NotFoundError):
        with_images.images_dir("other")


class _FormReader(HTMLParser):
    """What a browser submits from the settings form: enabled controls only, checked boxes only,
    the selected option of a select."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._in_form = False
        self._disabled_depth = 0
        self._depth = 0
        self._select: str | None = None
        self._first_option: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "settings":
            self._in_form = True
        if not self._in_form:
            return
        if tag == "fieldset":
            self._depth += 1
            if "disabled" in a and not self._disabled_depth:
                self._disabled_depth = self._depth
        off = "disabled" in a or bool(self._disabled_depth)
        if tag == "input" and not off and a.get("name"):
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.data[a["name"]] = "on"
            else:
                self.data[a["name"]] = a.get("value") or ""
        elif tag == "select" and not off:
            self._select, self._first_option = a.get("name"), None
        elif tag == "option" and self._select:
            value = a.get("value") or ""
            if self._first_option is None:
                self._first_option = value
                self.data[self._select] = value
            if "selected" in a:
                self.data[self._select] = value

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "fieldset" and self._in_form:
            if self._disabled_depth == self._depth:
                self._disabled_depth = 0
            self._depth -= 1
        elif tag == "form":
            self._in_form = False


def browser_form(html: str) -> dict[str, str]:
    reader = _FormReader()
    reader.feed(html)
    return reader.data


def field_block(html: str, name: str) -> str:
    """The opening tag of a setting's block on the page."""
    return re.search(rf'<div class="field[^"]*" data-field="{name}"[^>]*>', html).group(0)


def hidden_fields(html: str) -> set[str]:
    """The settings the page hides (those of other camera types); its script disables them."""
    return {
        name
        for name in re.findall(r'data-field="([a-z0-9_]+)"', html)
        if " hidden" in field_block(html, name)
    }


def review_patch(client: FlaskClient, data: dict[str, str]) -> dict[str, Any]:
    response = client.post("/devices/local/modules/CIS1/review", data=data)
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    value = re.search(r'name="patch" value="([^"]*)"', html)
    return json.loads(value.group(1).replace("&#34;", '"')) if value else {}


def test_form_sections_labels_and_order_come_from_the_schema(client: FlaskClient) -> None:
    _, html = csrf(client, "/devices/local/modules/CIS1")
    fields = module_fields()
    sections = form_sections(fields)
    legends = re.findall(r"<legend>([^<]+)</legend>", html)
    assert legends == [s.title for s in sections]
    assert legends[:2] == ["Inspection", "Camera"]
    assert {"Storage and retraining", "Alerts"} <= set(legends)
    on_page = re.findall(r'data-field="([a-z0-9_]+)"', html)
    assert on_page == [f.name for s in sections for f in (*s.fields, *s.advanced)], (
        "common settings of each section first, then its advanced ones"
    )
    assert on_page[:2] == ["prob_threshold", "inference_fps"]
    assert sorted(on_page) == sorted(MODULE_KEYS)
    schema = CisSettings.model_json_schema()["properties"]
    for f in fields:
        assert f.label == schema[f.name]["title"] and f">{f.label}" in html
    assert 'Inference rate <span class="unit">(frames/s)</span>' in html
    assert "0–1, default 0.5" in html
    assert "max 100000000.0" not in html and "default none" not in html.lower()
    advanced = re.findall(r'<details class="advanced">(.*?)</details>', html, re.S)
    folded = set(re.findall(r'data-field="([a-z0-9_]+)"', "".join(advanced)))
    assert folded == {f.name for f in fields if f.advanced}
    assert {"iou_threshold", "camera_timeout_s", "jpeg_quality"} <= folded
    assert "prob_threshold" not in folded and "camera_type" not in folded


def test_hints_say_range_and_default_in_plain_words() -> None:
    fields = {f.name: f for f in form_fields(CisSettings)}
    expected = {
        "prob_threshold": "0–1, default 0.5",
        "retrain_interval_s": "0–604,800, default 600",
        "camera_exposure_us": "above 0, up to 100,000,000",
        "camera_gain_db": "-20 to 60",
        "camera_timeout_s": "0.5–300, default 10",
        "fp16": "default on",
        "camera_type": "default folder",
        "providers": "",
    }
    assert {name: fields[name].hint for name in expected} == expected
    assert fields["inference_fps"].unit == "frames/s" and fields["camera_gain_db"].unit == "dB"


@pytest.mark.parametrize("camera_type", ["folder", "rtsp", "basler", "genicam"])
def test_settings_of_other_camera_types_are_hidden(
    client: FlaskClient, broker: InProcessBroker, camera_type: str
) -> None:
    broker.patch_desired("CIS1", {"camera_type": camera_type})
    _, html = csrf(client, "/devices/local/modules/CIS1")
    for f in module_fields():
        applies = camera_type in f.shown_when.get("camera_type", (camera_type,))
        assert (" hidden" in field_block(html, f.name)) is not applies, f.name
    # Without the page's script every setting is sent; the server ignores those that do not apply.
    fields = module_fields()
    assert {f.name for f in fields if f.kind != "checkbox"} <= set(browser_form(html))
    hidden = hidden_fields(html)
    assert ("camera_exposure_us" in hidden) is (camera_type not in ("basler", "genicam"))
    assert ("camera_loop" in hidden) is (camera_type != "folder")
    assert ("camera_rtsp_transport" in hidden) is (camera_type != "rtsp")
    assert ("camera_gentl_producer" in hidden) is (camera_type != "genicam")
    assert "prob_threshold" not in hidden and "camera_uri" not in hidden


def test_a_change_through_the_form_is_the_same_minimal_patch(client: FlaskClient) -> None:
    token, html = csrf(client, "/devices/local/modules/CIS1")
    without_script = browser_form(html)
    with_script = {k: v for k, v in without_script.items() if k not in hidden_fields(html)}
    assert without_script["csrf_token"] == token
    assert "camera_exposure_us" in without_script and "camera_exposure_us" not in with_script
    for sent in (without_script, with_script):
        assert review_patch(client, {**sent, "prob_threshold": "0.72"}) == {"prob_threshold": 0.72}
        assert review_patch(client, sent) == {}
    assert review_patch(client, form_data(token, prob_threshold=0.72)) == {"prob_threshold": 0.72}


def test_a_setting_of_another_camera_type_is_never_sent(client: FlaskClient) -> None:
    _, html = csrf(client, "/devices/local/modules/CIS1")
    forged = {**browser_form(html), "camera_exposure_us": "500", "camera_rtsp_transport": "udp"}
    assert review_patch(client, {**forged, "inference_fps": "3"}) == {"inference_fps": 3.0}
    # Choosing the camera type they apply to sends them with it, and a box of the folder camera
    # left unticked (or disabled by the script) changes nothing.
    basler = {**forged, "camera_type": "basler", "camera_uri": "serial-1"}
    del basler["camera_loop"]
    patch = review_patch(client, basler)
    assert patch == {"camera_type": "basler", "camera_uri": "serial-1", "camera_exposure_us": 500.0}


def test_the_current_frame_is_shown_beside_the_form(client: FlaskClient, images: Path) -> None:
    when = datetime(2026, 3, 1, 8, 30, 15, tzinfo=timezone.utc)
    image_dir = images
    old = image_dir / image_name("line1", "top", when, "annotated")
    new = image_dir / image_name("line1", "top", when + timedelta(seconds=3), "annotated")
    other = image_dir / image_name("line2", "top", when + timedelta(seconds=9), "raw")
    for path in (old, new, other):
        path.write_bytes(b"\xff\xd8" + path.name.encode())
    _, html = csrf(client, "/devices/local/modules/CIS1")
    src = re.search(r'<img id="frame-image"[^>]*src="([^"]+)"', html).group(1)
    assert src.endswith("/" + new.name)
    assert 'datetime="2026-03-01T08:30:18.000Z"' in html
    response = client.get(src)
    assert response.status_code == 200 and response.data == new.read_bytes()
    assert response.mimetype == "image/jpeg"
    frame = client.get("/api/devices/local/modules/CIS1/twin").get_json()["frame"]
    assert frame["url"] == src and frame["captured_at"] == "2026-03-01T08:30:18.000Z"
    base = src.rsplit("/", 1)[0]
    for name in (other.name, "..%2Fsecret.jpg", new.name.replace("annotated", "retrain")):
        assert client.get(f"{base}/{name}").status_code == 404, name
    # The camera now reports another location: its frames are those of that name.
    broker_cis = client.application.extensions["mfgvision.twin_config"].broker.hub("CIS1")
    broker_cis.patch_reported(
        {"config": {"settings": {"camera_location": "line2", "camera_position": "top"}}}
    )
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert (
        re.search(r'<img id="frame-image"[^>]*src="([^"]+)"', html)
        .group(1)
        .endswith("/" + other.name)
    )
    assert client.get(src).status_code == 404


def test_no_frame_yet_is_said(client: FlaskClient) -> None:
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert re.search(r'<img id="frame-image"[^>]*hidden', html)
    assert "No frame from this camera yet." in html


def test_reported_state_is_shown_next_to_applied(
    client: FlaskClient, broker: InProcessBroker
) -> None:
    hub = broker.hub("CIS1")
    version = hub.get_twin()["desired"]["$version"]
    hub.patch_reported(
        {
            "config": {"applied_version": version, "error": None},
            "status": {
                "state": "camera_error",
                "reasons": [],
                "last_error": "RTSP stream lost: connection refused",
            },
        }
    )
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert f"Applied version {version}" in html
    state = re.search(r'<span class="state (\w+)" id="module-state"[^>]*>([^<]+)<', html)
    assert state.groups() == ("error", "Module: Camera error")
    assert "<li>RTSP stream lost: connection refused</li>" in html
    devices = client.get("/").get_data(as_text=True)
    assert f"Applied version {version}" in devices and "Camera error" in devices
    assert "RTSP stream lost: connection refused" in devices
    summary = client.get("/api/devices/local/modules/CIS1/twin").get_json()["summary"]
    assert summary["level"] == "ok"
    assert summary["module"] == {
        "state": "camera_error",
        "label": "Camera error",
        "level": "error",
        "reasons": ["RTSP stream lost: connection refused"],
    }
    hub.patch_reported(
        {"status": {"state": "degraded", "reasons": ["disk full: images not written"]}}
    )
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert re.search(r'class="state warn" id="module-state"[^>]*>Module: Degraded<', html)
    assert "<li>disk full: images not written</li>" in html


def test_cloud_mode_shows_no_frame(images: Path) -> None:
    manager = create_autospec(IoTHubRegistryManager, instance=True)
    manager.get_module_twin.side_effect = lambda device, module: Twin(
        etag="e1",
        properties=TwinProperties(
            desired={**DESIRED, "$version": 4} if module == "CIS1" else {}, reported={}
        ),
    )
    app = create_app(CloudRegistry(manager), AuthConfig("eng", generate_password_hash("pw")))
    test_client = app.test_client()
    token, _ = csrf(test_client, "/login")
    test_client.post(
        "/login", data={"user": "eng", "password": "pw", "csrf_token": token, "next": "/"}
    )
    html = test_client.get("/devices/edge-1/modules/CIS1").get_data(as_text=True)
    assert "No frame available in cloud mode" in html
    assert re.search(r'<img id="frame-image"[^>]*hidden', html)
    name = image_name("line1", "top", datetime.now(timezone.utc), "raw")
    (images / name).write_bytes(b"x")
    assert test_client.get(f"/devices/edge-1/modules/CIS1/frames/{name}").status_code == 404


def test_a_cloned_camera_passes_the_manifest_checks_with_its_receipts_route(tmp_path: Path) -> None:
    template = json.loads((REPO / "deployment.template.json").read_text())
    cloned = clone_camera(template, "CIS1", "CIS2", {"camera_id": "line1-side"})
    routes = cloned["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
    assert routes["CIS2ReceiptsFromUpload"] == (
        "FROM /messages/modules/ImageUpload/outputs/uploadReceipts INTO "
        'BrokeredEndpoint("/modules/CIS2/inputs/uploadReceipts")'
    )
    path = tmp_path / "deployment.template.json"
    path.write_text(json.dumps(cloned))
    problems = check_manifest(
        path, env_template=REPO / ".env.template", platform="amd64", modules_dir=REPO / "modules"
    )
    assert [str(p) for p in problems] == []


def test_a_settings_sub_object_is_edited_as_json() -> None:
    fields = {f.name: f for f in form_fields(LineBridgeSettings)}
    assert fields["mqtt"].kind == "json" and fields["fail_safe"].kind == "select"
    values, errors = read_form(
        list(fields.values()),
        {
            **form_data("t"),
            "trigger_timeout_s": "2",
            "fail_safe": "NG",
            "status_poll_s": "1",
            "report_every_s": "10",
            "mqtt": '{"enabled": true, "host": "broker.plant"}',
        },
    )
    assert not errors
    proposal = propose(LineBridgeSettings, {}, values)
    assert proposal.patch["mqtt"] == {"enabled": True, "host": "broker.plant"}


TWO_CAMERAS = [
    {"camera_id": "line1-top"},
    {"camera_id": "line1-side", "camera_position": "side", "prob_threshold": 0.7},
]


def camera_sections(html: str) -> list[str]:
    return re.findall(r'<fieldset class="form-section camera-section" data-camera="([^"]*)"', html)


def test_a_module_with_cameras_has_a_section_per_camera(
    client: FlaskClient, broker: InProcessBroker, images: Path
) -> None:
    broker.patch_desired("CIS1", {"cameras": TWO_CAMERAS})
    when = datetime(2026, 3, 1, 8, 30, 15, tzinfo=timezone.utc)
    top = images / image_name("line1", "top", when, "annotated")
    side = images / image_name("line1", "side", when, "raw")
    for path in (top, side):
        path.write_bytes(b"\xff\xd8" + path.name.encode())
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert camera_sections(html) == ["line1-top", "line1-side"]
    assert 'name="cameras"' not in html and 'name="camera_count" value="2"' in html
    # An entry's own value is shown; one it leaves out shows the module's as what applies.
    assert re.search(r'name="cam1\.prob_threshold" value="0\.7"', html)
    assert re.search(r'name="cam0\.prob_threshold" value="" placeholder="module\'s: 0\.5"', html)
    assert re.search(r'name="cam1\.camera_position" value="side"', html)
    # Each camera shows its own frame, and both are served; the module's own keys name none.
    assert 'id="frame-image"' not in html
    srcs = dict(re.findall(r'data-camera-frame="([^"]+)".*?<img [^>]*src="([^"]+)"', html, re.S))
    assert srcs["line1-top"].endswith("/" + top.name)
    assert srcs["line1-side"].endswith("/" + side.name)
    for src in srcs.values():
        assert client.get(src).status_code == 200
    frames = client.get("/api/devices/local/modules/CIS1/twin").get_json()["cameras"]
    assert {k: v["url"] for k, v in frames.items()} == srcs


def test_a_camera_change_sends_the_whole_list_and_nothing_else(
    client: FlaskClient, broker: InProcessBroker
) -> None:
    broker.patch_desired("CIS1", {"cameras": TWO_CAMERAS})
    _, html = csrf(client, "/devices/local/modules/CIS1")
    sent = browser_form(html)
    assert review_patch(client, sent) == {}
    assert review_patch(client, {**sent, "prob_threshold": "0.6"}) == {"prob_threshold": 0.6}
    changed = review_patch(client, {**sent, "cam1.camera_uri": "samples/side"})
    assert changed == {
        "cameras": [TWO_CAMERAS[0], {**TWO_CAMERAS[1], "camera_uri": "samples/side"}]
    }
    # Emptied, the entry's threshold goes: the module's applies again.
    assert review_patch(client, {**sent, "cam1.prob_threshold": ""}) == {
        "cameras": [TWO_CAMERAS[0], {"camera_id": "line1-side", "camera_position": "side"}]
    }
    response = client.post(
        "/devices/local/modules/CIS1/review", data={**sent, "cam1.camera_id": "line1-top"}
    )
    assert response.status_code == 422
    assert "line1-top is already the id of cameras[0]" in response.get_data(as_text=True)


def test_the_modules_json_settings_survive_the_form_unchanged(
    client: FlaskClient, broker: InProcessBroker
) -> None:
    zones = {"seal": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}
    rules = {"seal-scratch": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]}}
    broker.patch_desired("CIS1", {"zones": zones, "rules": rules})
    _, html = csrf(client, "/devices/local/modules/CIS1")
    sent = browser_form(html)
    assert json.loads(sent["zones"]) == zones
    assert review_patch(client, sent) == {}
    assert review_patch(client, {**sent, "prob_threshold": "0.6"}) == {"prob_threshold": 0.6}


def test_a_cameras_own_zones_and_rules_survive_the_form_unchanged(
    client: FlaskClient, broker: InProcessBroker
) -> None:
    zones = {"seal": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}
    rules = {"seal-scratch": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]}}
    cameras = [TWO_CAMERAS[0], {**TWO_CAMERAS[1], "zones": zones, "rules": rules}]
    broker.patch_desired("CIS1", {"cameras": cameras})
    _, html = csrf(client, "/devices/local/modules/CIS1")
    sent = browser_form(html)
    # An entry's JSON settings show as JSON, which is what the form reads back.
    assert json.loads(sent["cam1.zones"]) == zones
    assert json.loads(sent["cam1.rules"]) == rules
    assert review_patch(client, sent) == {}
    moved = {"seal": [[0.1, 0.1], [0.6, 0.1], [0.5, 0.5]]}
    assert review_patch(client, {**sent, "cam1.zones": json.dumps(moved)}) == {
        "cameras": [TWO_CAMERAS[0], {**cameras[1], "zones": moved}]
    }


def test_a_camera_is_added_to_a_module_and_saved(
    client: FlaskClient, broker: InProcessBroker
) -> None:
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert camera_sections(html) == [] and "Add a camera to this module" in html
    response = client.post(
        "/devices/local/modules/CIS1/review", data={**browser_form(html), "camera_action": "add"}
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert camera_sections(html) == ["line1-top", "line1-top-2"]
    assert "Camera line1-top-2 added to the form" in html
    patch = review_patch(client, {**browser_form(html), "cam1.camera_uri": "samples/line2"})
    expected = [
        {"camera_id": "line1-top"},
        {"camera_id": "line1-top-2", "camera_type": "folder", "camera_uri": "samples/line2"},
    ]
    assert patch == {"cameras": expected}
    token, _ = csrf(client, "/devices/local/modules/CIS1")
    twin = client.application.extensions["mfgvision.twin_config"].twin("local", "CIS1")
    response = client.post(
        "/devices/local/modules/CIS1/apply",
        data={"csrf_token": token, "patch": json.dumps(patch), "etag": twin.etag},
    )
    assert response.status_code == 302
    assert wait_for(
        lambda: (
            client.get("/api/devices/local/modules/CIS1/twin").get_json()["applied_version"]
            is not None
        )
    )
    twin = client.get("/api/devices/local/modules/CIS1/twin").get_json()
    assert twin["desired"]["cameras"] == expected and twin["error"] is None
    assert camera_sections(csrf(client, "/devices/local/modules/CIS1")[1]) == [
        "line1-top",
        "line1-top-2",
    ]


def test_a_camera_is_removed_from_a_module(client: FlaskClient, broker: InProcessBroker) -> None:
    broker.patch_desired("CIS1", {"cameras": TWO_CAMERAS})
    _, html = csrf(client, "/devices/local/modules/CIS1")
    assert html.count("Remove this camera") == 2
    response = client.post(
        "/devices/local/modules/CIS1/review",
        data={**browser_form(html), "camera_action": "remove:0"},
    )
    html = response.get_data(as_text=True)
    assert camera_sections(html) == ["line1-side"] and "Remove this camera" not in html
    assert review_patch(client, browser_form(html)) == {"cameras": [TWO_CAMERAS[1]]}
    bad = {**browser_form(html), "camera_action": "remove:0"}
    assert client.post("/devices/local/modules/CIS1/review", data=bad).status_code == 400
