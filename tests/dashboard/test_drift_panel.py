"""The camera health panel: what a camera's drift monitor recorded, served as the panel's JSON, its
reference and checked frames through the drift file route, and a link from the overview."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

from mfgvision.cis.drift.monitor import DriftMonitor
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.dashboard.drift import thin
from mfgvision.settings import CisSettings
from mfgvision.store.database import Database
from mfgvision.store.drift import HISTORY_FILE, HistoryFile
from mfgvision.store.status import write_status
from tests.cis.drift_scenes import Hub, LineCamera, check, outcome, take_reference
from tests.dashboard.conftest import record

CAMERA = "cam-d"


def drift_settings() -> CisSettings:
    return CisSettings(camera_id=CAMERA, drift_every_s=0.001)


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[DriftMonitor]:
    """A drift monitor of ``cam-d`` writing where the dashboard of ``tmp_path/images`` reads."""
    m = DriftMonitor(tmp_path / "drift", Hub(), drift_settings(), PipelineMetrics())
    m.start()
    yield m
    m.stop()


@pytest.fixture
def knocked(monitor: DriftMonitor) -> dict:
    """The camera set up, steady, knocked (alert raised), put back (cleared), knocked again."""
    camera, s = LineCamera(), drift_settings()
    answer = take_reference(monitor, outcome(camera.frame(), s))
    for view in [{}] * 2 + [{"dx": 40.0}] * 5 + [{}] * 5 + [{"dx": 40.0}] * 5:
        check(monitor, outcome(camera.frame(**view), s))
    return answer


def test_the_panel_has_the_figures_over_time_both_frames_and_the_alerts(
    client: FlaskClient, knocked: dict
) -> None:
    response = client.get(f"/api/cameras/{CAMERA}/drift?window=hour")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    assert (data["camera_id"], data["enabled"], data["every_s"]) == (CAMERA, True, 0.001)
    assert data["reference"]["taken_at"] == knocked["taken_at"]
    assert data["reference"]["image_url"] == f"/images/drift/{CAMERA}/{knocked['image']}"
    assert data["current"]["image_url"].startswith(f"/images/drift/{CAMERA}/current-")
    assert data["figures"]["shift_px"] > 35
    assert {limit["figure"] for limit in data["limits"]} >= {"shift_px", "brightness_change"}
    # recorded: the first check, the raise, the clear, the raise again
    history = data["history"]
    assert len(history) == 4 and all(p["at"].endswith("Z") for p in history)
    assert [p["raised"] for p in history] == [[], ["camera_moved"], [], ["camera_moved"]]
    assert history[0]["figures"]["shift_px"] < 3 and history[1]["figures"]["shift_px"] > 35
    assert [(c["alert"], c["state"]) for c in data["changes"]] == [
        ("camera_moved", "raised"),
        ("camera_moved", "cleared"),
        ("camera_moved", "raised"),
    ]
    assert data["changes"][0]["figure"] == "shift_px" and data["changes"][0]["value"] > 35
    assert data["changes"][0]["at"] == history[-1]["at"]  # newest first
    [alert] = data["alerts"]
    assert (alert["alert"], alert["figure"], alert["threshold"]) == ("camera_moved", "shift_px", 20)
    assert alert["raised_at"] == history[-1]["at"]

    reference = client.get(data["reference"]["image_url"])
    assert reference.status_code == 200 and reference.mimetype == "image/png"
    assert "max-age=86400" in reference.headers["Cache-Control"]
    current = client.get(data["current"]["image_url"])
    assert current.status_code == 200 and current.mimetype == "image/jpeg"
    for image in (reference.data, current.data):
        decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (180, 320, 3)


def test_a_camera_without_a_reference_says_how_to_set_one(
    client: FlaskClient, monitor: DriftMonitor, tmp_path: Path
) -> None:
    write_status(tmp_path / "status", CAMERA, "CIS7", {"status": {"state": "running"}})
    check(monitor, outcome(LineCamera().frame(), drift_settings()))
    data = client.get(f"/api/cameras/{CAMERA}/drift").get_json()
    assert data["reference"] is None and data["module_id"] == "CIS7"
    assert data["notes"] == ["no reference: call set_reference once the camera is set up"]
    assert data["current"]["image_url"] is not None  # the frame it looked at, all the same
    assert data["figures"] == {} and data["alerts"] == []
    page = client.get(f"/cameras/{CAMERA}").get_data(as_text=True)
    assert "No reference frame yet" in page and "set_reference" in page


def test_the_window_picks_the_history_and_the_changes(
    client: FlaskClient, knocked: dict, tmp_path: Path
) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=2)
    stamp = old.isoformat().replace("+00:00", "Z")
    HistoryFile(tmp_path / "drift" / CAMERA / HISTORY_FILE).append(
        {"at": stamp, "figures": {"shift_px": 1.0}, "raised": [], "changes": []}
    )
    hour = client.get(f"/api/cameras/{CAMERA}/drift?window=hour").get_json()
    assert stamp not in [p["at"] for p in hour["history"]]
    since = (old - timedelta(minutes=1)).isoformat()
    until = (old + timedelta(minutes=1)).isoformat()
    custom = client.get(
        f"/api/cameras/{CAMERA}/drift", query_string={"from": since, "to": until}
    ).get_json()
    assert [p["at"] for p in custom["history"]] == [stamp] and custom["changes"] == []


def test_the_overview_links_each_camera_to_its_health_and_says_when_it_drifts(
    client: FlaskClient, db: Database, knocked: dict
) -> None:
    now = datetime.now(timezone.utc)
    db.write([record(CAMERA, now), record("cam2", now)])
    cameras = {c["camera_id"]: c for c in client.get("/api/overview").get_json()["cameras"]}
    assert cameras[CAMERA]["health_url"] == f"/cameras/{CAMERA}"
    assert cameras[CAMERA]["drift"] == {"reference": True, "alerts": ["camera_moved"]}
    assert cameras["cam2"]["drift"] is None and cameras["cam2"]["health_url"] == "/cameras/cam2"
    script = client.get("/static/overview.js").get_data(as_text=True)
    assert "health_url" in script and "innerHTML" not in script


def test_the_health_page_is_a_polling_shell(client: FlaskClient) -> None:
    response = client.get(f"/cameras/{CAMERA}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'data-api="/api/cameras/{CAMERA}/drift"' in html and 'data-poll-ms="10000"' in html
    for asset in ("/static/camera.js", "/vendor/plotly.min.js", "/static/common.js"):
        assert asset in html and client.get(asset).status_code == 200
    script = client.get("/static/camera.js").get_data(as_text=True)
    assert "localTime" in script and "innerHTML" not in script
    assert client.get("/cameras/cam%20d").status_code == 400
    assert client.get("/cameras/..").status_code in (400, 404)


def test_unknown_and_malformed_cameras_and_parameters(client: FlaskClient) -> None:
    assert client.get("/api/cameras/nobody/drift").status_code == 404
    assert client.get("/api/cameras/.hidden/drift").status_code == 400
    assert client.get(f"/api/cameras/{CAMERA}/drift?limit=3").status_code == 400
    assert client.get(f"/api/cameras/{CAMERA}/drift?window=week").status_code == 400


@pytest.mark.parametrize(
    "name",
    [
        "state.json",
        "reference.json",
        "history.jsonl",
        "..%2fcam-d.json",
        "reference-20260301T070211000000.jpg",
        "current-20260301T070211000000.jpg",  # well named, not there
        "escape-20260301T070211000000.png",
        "current-20260301T070211000001.jpg",  # a link to a file outside
    ],
)
def test_the_drift_frame_route_serves_nothing_else(
    client: FlaskClient, knocked: dict, tmp_path: Path, name: str
) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"SECRET")
    link = tmp_path / "drift" / CAMERA / "current-20260301T070211000001.jpg"
    link.symlink_to(tmp_path / "secret.jpg")
    response = client.get(f"/images/drift/{CAMERA}/{name}")
    assert response.status_code in (400, 404)
    assert b"SECRET" not in response.data and b"{" not in response.data[:1]
    assert client.get(f"/images/drift/..%2fdrift/{knocked['image']}").status_code in (400, 404)
    assert client.get(f"/images/drift/{CAMERA}/{knocked['image']}?size=160").status_code == 400


def test_a_long_history_is_thinned_keeping_every_alert_change() -> None:
    points = [
        {"at": str(i), "changes": [{"alert": "blur"}] if i == 1001 else []} for i in range(3000)
    ]
    kept = thin(points, most=100)
    assert 100 <= len(kept) <= 102
    assert {"1001", "2999", "0"} <= {p["at"] for p in kept}
    assert thin(points[:50], most=100) == points[:50]
