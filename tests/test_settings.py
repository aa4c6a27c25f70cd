import pytest

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import CisSettings, SettingsError, parse_settings


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
