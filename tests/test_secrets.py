"""The one masking of secrets, and what counts as one."""

import pytest

from mfgvision.secrets import find_secret, is_secret_key, mask_secrets, mask_text

SECRET_TEXTS = [
    ("rtsp://admin:pw@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),
    ("rtsp://admin:p@ss@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
    ("mysql://root:hunter2@db:3306/x", "mysql://***@db:3306/x"),
    ("http://cam/snap?user=a&pwd=hunter2", "http://cam/snap?user=a&pwd=***"),
    ("http://cam/snap?password=hunter2&x=1", "http://cam/snap?password=***&x=1"),
    ("Server=db;Database=x;Password=hunter2;", "Server=db;Database=x;Password=***;"),
    (
        "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=abc+def==;EndpointSuffix=x",
        "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=***;EndpointSuffix=x",
    ),
    (
        "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0=",
        "HostName=h;DeviceId=d;SharedAccessKey=***",
    ),
    (
        "https://acc.blob.core.windows.net/c?sv=2022&sig=abc%3D",
        "https://acc.blob.core.windows.net/c?sv=2022&sig=***",
    ),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
    ("input_value={'password': 'hunter2'}", "input_value={'password': '***'}"),
]


@pytest.mark.parametrize(("text", "masked"), SECRET_TEXTS)
def test_secret_shapes_are_found_and_masked(text, masked):
    assert find_secret(text)
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "samples/line1",
        "rtsp://10.0.0.5/s",
        "rtsp://${RTSP_USER}:${RTSP_PASSWORD}@10.0.0.5/s",
        "http://cam/snap?user=${U}&pwd=${P}",
        "compass=north",
        "basic settings",
        "line1-top",
    ],
)
def test_plain_texts_and_environment_references_are_no_secrets(text):
    assert find_secret(text) is None


@pytest.mark.parametrize(
    "key",
    [
        "MSSQL_PWD",
        "db_password",
        "storage_connection_string",
        "api_key",
        "token",
        "AccountKey",
        "SharedAccessKey",
        "sig",
        "DevicePassword",
    ],
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "camera_id",
        "camera_uri",
        "SharedAccessKeyName",
        "bypass",
        "pass",
        "last_pass",
        "golden_tolerance",
    ],
)
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_masking_reaches_every_depth_and_keeps_the_rest():
    status = {
        "config": {"settings": {"camera_features": {"UserPassword": "hunter2", "Gain": 2.0}}},
        "sources": ["rtsp://a:hunter2@h/s", {"db": {"password": 5}}],
        "fps": 12.5,
    }
    masked = mask_secrets(status)
    assert "hunter2" not in repr(masked) and masked["sources"][1]["db"]["password"] == "***"
    assert masked["fps"] == 12.5 and masked["config"]["settings"]["camera_features"]["Gain"] == 2.0
    assert status["sources"][0] == "rtsp://a:hunter2@h/s"  # the original is left as it was
