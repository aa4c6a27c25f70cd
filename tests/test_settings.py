import re

import pytest

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import (
    CisSettings,
    LineBridgeSettings,
    MqttSettings,
    OpcUaServerSettings,
    SettingsError,
    parse_settings,
)


def test_defaults_are_valid():
    s = parse_settings(CisSettings, {})
    assert isinstance(s, CisSettings)
    assert 0 <= s.prob_threshold <= 1 and s.camera_name == "line1-top"


def test_legacy_v1_twin_keys_are_accepted():
    legacy = {
        "CAMERA_GVSP_ALLIED": "false",
        "CAMERA_GVSP_BASLER": False,
        "CAMERA_RTSP": "true",
        "CAMERA_FILE": "false",
        "CAMERA_ID": "FILE_CAM",
        "CAMERA_URI": "rtsp://cam.local/stream",
        "CAMERA_LOCATION": "BENCH",
        "CAMERA_POSITION": "HORIZONTAL",
        "CAMERA_FPS": "25",
        "INFERENCE_FPS": "",
        "TARGET_DIM": "416",
        "PROB_THRES": ".65",
        "IOU_THRES": ".45",
        "RETRAIN_INTERVAL": "1000",
        "STORE_RAW_FRAMES": "true",
        "STORE_ALL_INFERENCES": "false",
        "MODEL_NAME": "casting",
        "MODEL_VERSION": "1",
        "$version": 3,
    }
    s = parse_settings(CisSettings, legacy)
    assert s.camera_type == "rtsp"  # "false" strings are false, not truthy
    assert s.camera_uri == "rtsp://cam.local/stream"
    assert s.camera_fps == 25.0 and s.inference_fps == 1.0
    assert s.prob_threshold == pytest.approx(0.65)
    assert s.retrain_interval_s == pytest.approx(40.0)  # 1000 frames at 25 fps
    assert s.store_all_inferences is False


def test_v2_camera_type_enum():
    assert parse_settings(CisSettings, {"CAMERA_TYPE": "Basler GVSP"}).camera_type == "basler"
    with pytest.raises(SettingsError, match="CAMERA_TYPE"):
        parse_settings(CisSettings, {"CAMERA_TYPE": "Webcam"})


@pytest.mark.parametrize(
    "desired, field",
    [
        ({"prob_threshold": 1.5}, "prob_threshold"),
        ({"inference_fps": -1}, "inference_fps"),
        ({"camera_fps": "fast"}, "camera_fps"),
        ({"store_raw_frames": "maybe"}, "store_raw_frames"),
        ({"camera_id": "a b/c"}, "camera_id"),
        ({"camera_typo": "x"}, "camera_typo"),
        ({"camera_type": "webcam"}, "camera_type"),
    ],
)
def test_invalid_values_are_refused_with_the_key_named(desired, field):
    with pytest.raises(SettingsError, match=field):
        parse_settings(CisSettings, desired)


@pytest.mark.parametrize(
    "key", ["MSSQL_PWD", "db_password", "storage_connection_string", "api_key", "token"]
)
def test_secrets_are_refused(key):
    with pytest.raises(SettingsError, match="secret"):
        parse_settings(CisSettings, {key: "hunter2"})


def test_merge_patch_deletes_with_null_and_ignores_metadata():
    assert merge_patch({"a": 1, "b": 2}, {"a": None, "c": 3, "$version": 9}) == {"b": 2, "c": 3}


def test_merge_patch_merges_nested_objects_as_the_hub_does():
    current = {"camera_features": {"ExposureTime": 8000, "Gain": 2.0}, "prob_threshold": 0.5}
    patch = {"camera_features": {"Gain": None, "Gamma": 1.2}}
    merged = merge_patch(current, patch)
    assert merged == {
        "camera_features": {"ExposureTime": 8000, "Gamma": 1.2},
        "prob_threshold": 0.5,
    }
    assert current["camera_features"] == {"ExposureTime": 8000, "Gain": 2.0}  # left as it was


def test_every_setting_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for name in CisSettings.model_fields:
        assert f"`{name}`" in doc, name


@pytest.mark.parametrize(
    "desired, key",
    [
        ({"CAMERA_TYPE": []}, "CAMERA_TYPE"),
        ({"CAMERA_TYPE": {}}, "CAMERA_TYPE"),
        ({"RETRAIN_INTERVAL": {}}, "RETRAIN_INTERVAL"),
        ({"RETRAIN_INTERVAL": "many"}, "RETRAIN_INTERVAL"),
        ({"RETRAIN_INTERVAL": True}, "RETRAIN_INTERVAL"),
        ({"CAMERA_RTSP": [1]}, "CAMERA_RTSP"),
        ({"CAMERA_RTSP": "true", "CAMERA_FILE": True}, "CAMERA_RTSP"),
        ({"CAMERA_FPS": {}}, "camera_fps"),
    ],
)
def test_a_bad_legacy_value_is_a_settings_error_never_a_crash(desired, key):
    with pytest.raises(SettingsError, match=key):
        parse_settings(CisSettings, desired)


@pytest.mark.parametrize(
    "desired, key",
    [
        ({"camera_fps": float("inf")}, "camera_fps"),
        ({"prob_threshold": float("nan")}, "prob_threshold"),
        ({"camera_fps": "inf"}, "camera_fps"),
        ({"camera_roi_x": 2**63}, "camera_roi_x"),
        ({"camera_features": {"Width": 2**64}}, "camera_features.Width"),
        ({"camera_roi_width": 100_000}, "camera_roi_width"),
        ({"retrain_interval_s": 1e12}, "retrain_interval_s"),
        ({"providers": ["NoSuchExecutionProvider"]}, "providers"),
        ({"camera_uri": "x" * 100_000}, "camera_uri"),
        ({"camera_id": "cam\n1"}, "camera_id"),
        ({"camera_uri": "frames\x00"}, "camera_uri"),
        ({"camera_features": {"Gain\u202e": 1}}, "camera_features"),
        ({"camera_location": "line 1/../x"}, "camera_location"),
        ({"camera_uri": "../../etc"}, "camera_uri"),
        ({"camera_type": "video", "camera_uri": "videos/../../x.mp4"}, "camera_uri"),
        ({"camera_gentl_producer": "/tmp/evil.cti"}, "camera_gentl_producer"),
        ({"camera_gentl_producer": "evil.so"}, "camera_gentl_producer"),
        ({"camera_features": {"a": {"b": {"c": {"d": {"e": 1}}}}}}, "camera_features"),
        ({"camera_features": {f"F{i}": i for i in range(100)}}, "camera_features"),
    ],
)
def test_values_out_of_bounds_are_refused(desired, key):
    with pytest.raises(SettingsError, match=re.escape(key)):
        parse_settings(CisSettings, desired)


def test_known_onnx_runtime_providers_are_accepted():
    import onnxruntime

    names = onnxruntime.get_all_providers()[:2]
    assert parse_settings(CisSettings, {"providers": names}).providers == names


@pytest.mark.parametrize(
    "desired",
    [
        {"camera_features": {"password": "hunter2"}},
        {"camera_features": {"DeviceUserPassword": "hunter2"}},
        {"containers": {"raw": "x"}, "storage": {"AccountKey": "abc"}},
        {"camera_uri": "rtsp://admin:hunter2@10.0.0.5/s"},
        {"camera_uri": "rtsp://admin:hun@ter2@10.0.0.5/s"},
        {"camera_uri": "http://cam/snap?pwd=hunter2"},
        {"camera_uri": "http://cam/snap?password=hunter2"},
        {"camera_uri": "Server=db;Password=hunter2"},
        {"camera_features": {"Note": "DefaultEndpointsProtocol=https;AccountKey=abc=="}},
        {"camera_features": {"Note": "HostName=h;SharedAccessKey=abc="}},
        {"camera_features": {"Note": "Bearer eyJhbGciOiJIUzI1NiJ9"}},
        {"CAMERA_URI": "rtsp://admin:hunter2@10.0.0.5/s"},
    ],
)
def test_secrets_are_refused_at_any_depth_by_key_and_by_shape(desired):
    with pytest.raises(SettingsError, match=r"secret|password|token") as refused:
        parse_settings(CisSettings, desired)
    assert "hunter2" not in str(refused.value) and "abc" not in str(refused.value)


def test_environment_references_keep_credentials_out_of_the_twin():
    uri = "rtsp://${RTSP_USER}:${RTSP_PASSWORD}@10.0.0.5/s"
    assert parse_settings(CisSettings, {"camera_type": "rtsp", "camera_uri": uri}).camera_uri == uri


def test_a_new_key_wins_over_a_legacy_one_with_a_warning():
    s = parse_settings(
        CisSettings,
        {
            "camera_type": "folder",
            "CAMERA_GVSP_BASLER": True,
            "PROB_THRES": 0.9,
            "prob_threshold": 0.3,
            "RETRAIN_INTERVAL": 100,
            "retrain_interval_s": 60,
        },
    )
    assert (s.camera_type, s.prob_threshold, s.retrain_interval_s) == ("folder", 0.3, 60)
    assert s.warnings == [
        "PROB_THRES ignored: prob_threshold is set",
        "CAMERA_GVSP_BASLER ignored: camera_type is set",
        "RETRAIN_INTERVAL ignored: retrain_interval_s is set",
    ]
    assert parse_settings(CisSettings, {"CAMERA_GVSP_BASLER": True}).warnings == []


def test_accepted_name_parts_become_safe_image_and_blob_names():
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mfgvision.settings import SettingsError
    from mfgvision.store.images import sanitise_name_part

    @settings(max_examples=300, deadline=None)
    @given(st.text(min_size=1, max_size=40))
    def safe(name):
        try:
            accepted = parse_settings(CisSettings, {"camera_location": name}).camera_location
        except SettingsError:
            return
        part = sanitise_name_part(accepted)
        assert re.fullmatch(r"[A-Za-z0-9_.]+", part) and ".." not in part
        assert not part.startswith(".") and sanitise_name_part(part) == part

    safe()
    assert parse_settings(CisSettings, {"camera_location": "Line 1"}).camera_location == "Line 1"


def test_every_line_bridge_setting_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for name in LineBridgeSettings.model_fields:
        assert f"| `{name}` |" in doc, name
    for name in MqttSettings.model_fields:
        assert f"| `mqtt.{name}` |" in doc, name
    for name in OpcUaServerSettings.model_fields:
        assert f"| `opcua_server.{name}` |" in doc, name


def test_the_mqtt_password_is_never_a_line_bridge_setting():
    with pytest.raises(SettingsError) as refused:
        parse_settings(LineBridgeSettings, {"mqtt": {"username": "line", "password": "pw"}})
    assert "password" in str(refused.value)
    assert (
        parse_settings(LineBridgeSettings, {"mqtt": {"username": "line"}}).mqtt.username == "line"
    )


def test_the_opcua_password_is_never_a_line_bridge_setting():
    server = {"username": "line", "password": "pw", "anonymous": True}
    with pytest.raises(SettingsError) as refused:
        parse_settings(LineBridgeSettings, {"opcua_server": server})
    assert "password" in str(refused.value)
    assert parse_settings(LineBridgeSettings, {}).opcua_server is None


def test_each_camera_takes_the_module_keys_it_does_not_set():
    s = parse_settings(
        CisSettings,
        {
            "MODEL_NAME": "casting",
            "prob_threshold": 0.6,
            "cameras": [
                {"camera_id": "a", "camera_uri": "rtsp://cam-a/s", "camera_type": "rtsp"},
                {"camera_id": "b", "prob_threshold": 0.8, "drift_every_s": 0},
            ],
        },
    )
    a, b = s.each_camera()
    assert (a.camera_id, a.camera_type, a.camera_uri) == ("a", "rtsp", "rtsp://cam-a/s")
    assert (a.model_name, a.prob_threshold, a.drift_every_s) == ("casting", 0.6, 5.0)
    assert (b.camera_type, b.prob_threshold, b.drift_every_s) == ("folder", 0.8, 0.0)
    assert a.cameras is None and b.cameras is None
    # reported as given, so that many cameras fit in the twin
    assert s.model_dump()["cameras"][0] == {
        "camera_id": "a",
        "camera_uri": "rtsp://cam-a/s",
        "camera_type": "rtsp",
    }
    assert parse_settings(CisSettings, {"camera_id": "solo"}).each_camera()[0].camera_id == "solo"


@pytest.mark.parametrize(
    "cameras, reason",
    [
        ([{"camera_id": "a"}, {"camera_id": "a"}], "cameras[1].camera_id: a is already the id"),
        ([{}, {}], "cameras[1].camera_id: camera1 is already the id of cameras[0]"),
        ([{"camera_id": "a", "prob_threshold": 2}], "cameras[0].prob_threshold: Input should be"),
        ([{"camera_id": "a", "fp16": False}], "cameras[0].fp16: a setting of the whole module"),
        ([{"camera_id": "a", "cameras": []}], "cameras[0].cameras: a setting of the whole module"),
        ([{"camera_id": "a", "CAMERA_URI": "x"}], "cameras[0].CAMERA_URI: not a setting of a"),
        ([{"camera_id": "a b"}], "cameras[0].camera_id: String should match pattern"),
        ([{"camera_uri": "../etc"}], "cameras[0].camera_uri: a camera path must not contain"),
        ([{"camera_id": "a"}, "b"], "cameras[1]: Input should be a valid dictionary"),
        ([{"camera_id": f"c{i}"} for i in range(65)], "cameras: more than 64 entries"),
    ],
)
def test_a_bad_camera_entry_is_named_by_its_place(cameras, reason):
    with pytest.raises(SettingsError) as refused:
        parse_settings(CisSettings, {"cameras": cameras})
    assert set(refused.value.problems) == {"cameras"}
    assert str(refused.value).startswith(reason)
    assert refused.value.problems["cameras"].startswith(reason.removeprefix("cameras: "))


@pytest.mark.parametrize(
    "entry",
    [
        {"camera_uri": "rtsp://admin:hunter2@10.0.0.5/s"},
        {"camera_features": {"DeviceUserPassword": "hunter2"}},
        {"camera_password": "hunter2"},
    ],
)
def test_secrets_are_refused_in_a_camera_entry(entry):
    with pytest.raises(SettingsError, match=r"cameras\[1\]\.\w+.*(secret|password)") as refused:
        parse_settings(CisSettings, {"cameras": [{"camera_id": "a"}, {"camera_id": "b", **entry}]})
    assert "hunter2" not in str(refused.value)


SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def test_zones_and_rules_are_accepted_with_each_kind_yielding_its_default():
    s = parse_settings(
        CisSettings,
        {
            "zones": {"seal": SQUARE, "cell": [[0, 0], [1, 0], [1, 1], [0, 1]]},
            "rules": {
                "scratch_on_seal": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]},
                "screws": {"kind": "count", "classes": ["screw"], "min": 12, "max": 12},
                "no_hand": {"kind": "absent", "classes": ["hand"], "zones": ["cell"]},
                "helmet": {
                    "kind": "required_with",
                    "classes": ["person"],
                    "with_classes": ["helmet"],
                    "zones": ["cell"],
                    "membership": "overlap",
                    "overlap_fraction": 0.3,
                },
                "helmet_stops_the_line": {
                    "kind": "required_with",
                    "classes": ["person"],
                    "with_classes": ["helmet"],
                    "yields": "NG",
                },
            },
        },
    )
    assert {name: rule.yields for name, rule in s.rules.items()} == {
        "scratch_on_seal": "NG",
        "screws": "NG",
        "no_hand": "NG",
        "helmet": "alarm",
        "helmet_stops_the_line": "NG",
    }
    assert s.rules["scratch_on_seal"].membership == "centre" and s.rules["screws"].zones == []
    assert parse_settings(CisSettings, s.model_dump()) == s  # what the module reports reads back


def test_zones_in_pixels_are_checked_against_their_frame():
    frame = {"zones_frame": [1280, 720]}
    inside = {**frame, "zones": {"a": [[0, 0], [1280, 0], [1280, 720]]}}
    assert parse_settings(CisSettings, inside).zones["a"][1] == [1280.0, 0.0]
    with pytest.raises(SettingsError, match=re.escape("zones.a[1]: outside the zones_frame")):
        parse_settings(CisSettings, {**frame, "zones": {"a": [[0, 0], [1281, 0], [0, 700]]}})
    with pytest.raises(SettingsError, match=re.escape("zones.a[1]: outside 0..1")):
        parse_settings(CisSettings, {"zones": {"a": [[0, 0], [1280, 0], [0, 0.7]]}})


@pytest.mark.parametrize(
    "desired, problem",
    [
        ({"zones": {"a": [[0, 0], [1, 1]]}}, "zones.a: List should have at least 3 items"),
        ({"zones": {"a": [[-0.1, 0], [1, 0], [1, 1]]}}, "zones.a[0][0]"),
        ({"zones": {"a": [[0, 0, 0], [1, 0], [1, 1]]}}, "zones.a[0]"),
        ({"zones": {"bow": [[0, 0], [1, 1], [1, 0], [0, 1]]}}, "zones.bow: edges cross"),
        ({"zones": {"flat": [[0, 0], [0.5, 0.5], [1, 1]]}}, "zones.flat: folds back"),
        ({"zones": {"dup": [[0, 0], [1, 0], [1, 0], [0, 1]]}}, "zones.dup: repeats a point"),
        ({"zones": {"a b": SQUARE}}, "zones.a b"),
        ({"zones": {f"z{i}": SQUARE for i in range(33)}}, "zones: Dictionary should have at most"),
        ({"zones": {"many": [[0.5, 0.5]] * 65}}, "zones.many: more than 64 entries"),
        ({"zones_frame": [1280]}, "zones_frame"),
        (
            {
                "zones": {"seal": SQUARE},
                "rules": {"r": {"kind": "defect", "classes": ["x"], "zones": ["seal", "lid"]}},
            },
            "rules.r.zones[1]: unknown zone 'lid'",
        ),
        ({"rules": {"r": {"kind": "defect", "classes": []}}}, "rules.r.classes"),
        (
            {"rules": {"r": {"kind": "count", "classes": ["screw"]}}},
            "rules.r: a count rule needs min",
        ),
        (
            {"rules": {"r": {"kind": "count", "classes": ["s"], "min": 3, "max": 2}}},
            "min must not be",
        ),
        ({"rules": {"r": {"kind": "defect", "classes": ["s"], "max": 2}}}, "count rules only"),
        ({"rules": {"r": {"kind": "required_with", "classes": ["person"]}}}, "needs with_classes"),
        (
            {"rules": {"r": {"kind": "defect", "classes": ["s"], "with_classes": ["h"]}}},
            "required_with rules only",
        ),
        ({"rules": {"r": {"kind": "colour", "classes": ["s"]}}}, "rules.r.kind"),
        (
            {"rules": {"r": {"kind": "defect", "classes": ["s"], "membership": "touch"}}},
            "rules.r.membership",
        ),
        (
            {"rules": {"r": {"kind": "defect", "classes": ["s"], "overlap_fraction": 0}}},
            "rules.r.overlap_fraction",
        ),
        (
            {"rules": {"r": {"kind": "defect", "classes": ["s"], "min_probability": 2}}},
            "rules.r.min_probability",
        ),
        ({"rules": {"r": {"kind": "defect", "classes": ["s"], "colour": "red"}}}, "rules.r.colour"),
    ],
)
def test_bad_zones_and_rules_are_refused_naming_the_key_path(desired, problem):
    with pytest.raises(SettingsError, match=re.escape(problem)):
        parse_settings(CisSettings, desired)


def test_each_camera_may_have_zones_and_rules_of_its_own():
    s = parse_settings(
        CisSettings,
        {
            "rules": {"any_scratch": {"kind": "defect", "classes": ["scratch"]}},
            "cameras": [
                {"camera_id": "a"},
                {
                    "camera_id": "b",
                    "zones": {"seal": SQUARE},
                    "rules": {
                        "seal": {"kind": "defect", "classes": ["scratch"], "zones": ["seal"]}
                    },
                },
            ],
        },
    )
    a, b = s.each_camera()
    assert list(a.rules) == ["any_scratch"] and a.zones == {}
    assert list(b.rules) == ["seal"] and b.zones["seal"][2] == [0.5, 0.5]
    with pytest.raises(SettingsError, match=re.escape("cameras[0].rules.r.zones[0]: unknown zone")):
        parse_settings(
            CisSettings,
            {"cameras": [{"rules": {"r": {"kind": "absent", "classes": ["x"], "zones": ["lid"]}}}]},
        )
