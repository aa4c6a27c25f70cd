"""Dashboard routes: overview data, camera list, image serving, health and the page shell."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mfgvision.dashboard.app import create_app
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord
from mfgvision.web.auth import AuthConfig


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_overview_lists_latest_inference_per_camera(
    client: FlaskClient, seeded: list[InferenceRecord]
) -> None:
    response = client.get("/api/overview?window=day")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    cam1, cam2, cam3 = data["cameras"]
    assert [c["camera_id"] for c in data["cameras"]] == ["cam1", "cam2", "cam3"]

    assert cam1["camera_name"] == "Line 1"
    latest = cam1["latest"]
    assert latest["verdict"] == "NG"
    assert [(d["label"], d["probability"], d["probability_pct"]) for d in latest["detections"]] == [
        ("scratch", 0.9312, 93.1),
        ("hole", 0.5, 50.0),
    ]
    assert latest["image_url"] == "/images/cam1-new-annotated.jpg"
    assert latest["image_kind"] == "annotated"
    assert latest["images"]["thumbnail"] == "/images/cam1-new-annotated.jpg?size=160"
    assert latest["inferencing_time_ms"] == 12.3
    assert (latest["model_name"], latest["model_version"]) == ("defects", "7")
    assert latest["detail_url"] == f"/inferences/{seeded[2].unique_id}"
    assert cam1["counts"] == {"total": 3, "ok": 1, "ng": 2, "yield_pct": 33.3}
    assert cam1["status"] is None

    assert cam2["latest"]["verdict"] == "OK"
    assert cam2["latest"]["detections"] == []
    assert (cam2["latest"]["image_url"], cam2["latest"]["image_kind"]) == (
        "/images/cam2-new-raw.jpg",
        "raw",
    )
    assert (cam3["latest"]["image_url"], cam3["latest"]["image_kind"]) == (None, None)
    assert data["window"]["name"] == "day"
    assert data["totals"] == {"total": 6, "ok": 3, "ng": 3, "yield_pct": 50.0}
    hour = client.get("/api/overview").get_json()
    assert hour["window"]["name"] == "hour"
    assert hour["totals"] == {"total": 4, "ok": 3, "ng": 1, "yield_pct": 75.0}


def test_overview_times_are_iso_utc_with_z(
    client: FlaskClient, seeded: list[InferenceRecord]
) -> None:
    data = client.get("/api/overview").get_json()
    created = data["cameras"][0]["latest"]["created"]
    assert created.endswith("Z")
    parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert parsed.tzinfo == timezone.utc
    assert abs(parsed - seeded[2].created).total_seconds() < 0.001
    assert data["generated_at"].endswith("Z")


def test_overview_without_data(client: FlaskClient) -> None:
    data = client.get("/api/overview").get_json()
    assert data["cameras"] == []
    assert data["totals"] == {"total": 0, "ok": 0, "ng": 0, "yield_pct": None}


def test_cameras(client: FlaskClient, seeded: list[InferenceRecord]) -> None:
    cameras = client.get("/api/cameras").get_json()
    assert [c["camera_id"] for c in cameras] == ["cam1", "cam2", "cam3"]


def test_page_is_a_polling_shell_without_meta_refresh(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<title>Plant 7</title>" in html
    assert 'http-equiv="refresh"' not in html.lower()
    assert 'data-api="/api/overview"' in html
    assert 'data-poll-ms="2000"' in html
    assert "No inspections yet" in html
    assert "Content-Security-Policy" in response.headers
    assert "https://" not in html  # everything, plotly.js included, is served from here
    for asset in ("/static/overview.js", "/static/dashboard.css", "/vendor/plotly.min.js"):
        assert asset in html
        assert client.get(asset).status_code == 200


def test_page_script_polls_with_fetch_and_shows_local_time(client: FlaskClient) -> None:
    script = client.get("/static/overview.js").get_data(as_text=True)
    assert "fetch(" in client.get("/static/common.js").get_data(as_text=True)
    assert "getJSON(" in script
    assert "toLocaleString" in script
    assert "innerHTML" not in script


def test_image_is_served_with_type_and_cache_headers(
    client: FlaskClient, jpeg_bytes: bytes
) -> None:
    response = client.get("/images/cam1-new-annotated.jpg")
    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert response.data == jpeg_bytes
    assert "max-age=86400" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get(
        "/images/cam1-new-annotated.jpg", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304


def test_image_symlink_inside_the_folder_is_served(
    client: FlaskClient, images_dir: Path, jpeg_bytes: bytes
) -> None:
    (images_dir / "alias.jpg").symlink_to(images_dir / "cam1-new-annotated.jpg")
    assert client.get("/images/alias.jpg").data == jpeg_bytes


@pytest.mark.parametrize(
    "url",
    [
        "/images/..%2f..%2fsecret.jpg",
        "/images/..%2Fsecret.jpg",
        "/images/%2e%2e%2fsecret.jpg",
        "/images/..",
        "/images/..jpg",
        "/images/%2Fetc%2Fpasswd",
        "/images//etc/passwd",
        "/images/%2F{outside}",
        "/images/a%00.jpg",
        "/images/cam1-new-annotated.jpg%00.txt",
        "/images/" + "a" * 5000 + ".jpg",
        "/images/" + "a" * 252 + ".jpg",
        "/images/.hidden.jpg",
        "/images/notes.txt",
        "/images/missing.jpg",
        "/images/escape.jpg",
        "/images/folder.jpg",
        "/images/sub%2Fcam1-new-annotated.jpg",
        "/images/cam1 new.jpg",
    ],
)
def test_image_route_rejects_probes(
    client: FlaskClient, images_dir: Path, tmp_path: Path, url: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"SECRET")
    (tmp_path / "secret.jpg").write_bytes(b"SECRET")
    (images_dir / "escape.jpg").symlink_to(outside / "secret.jpg")
    (images_dir / ".hidden.jpg").write_bytes(b"SECRET")
    (images_dir / "notes.txt").write_bytes(b"SECRET")
    (images_dir / "folder.jpg").mkdir()
    (images_dir / "sub").mkdir()
    (images_dir / "sub" / "cam1-new-annotated.jpg").write_bytes(b"SECRET")

    response = client.get(url.format(outside=outside / "secret.jpg"))
    assert response.status_code in (400, 404)
    assert b"SECRET" not in response.data


def test_image_name_errors_are_400_and_missing_files_404(client: FlaskClient) -> None:
    assert client.get("/images/a%00.jpg").status_code == 400
    assert client.get("/images/..").status_code == 400
    assert client.get("/images/" + "a" * 300 + ".jpg").status_code == 400
    assert client.get("/images/missing.jpg").status_code == 404


def test_healthz_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "db": "ok"}


def test_healthz_and_api_503_when_database_server_is_absent(images_dir: Path) -> None:
    db = Database(f"mysql+mysqlconnector://edge:pw@127.0.0.1:{closed_port()}/edge")
    try:
        client = create_app(db, images_dir, auth=AuthConfig()).test_client()
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json()["status"] == "error"
        overview = client.get("/api/overview")
        assert overview.status_code == 503
        assert overview.get_json() == {"error": "database unavailable"}
        assert client.get("/").status_code == 200
    finally:
        db.close()


def test_images_dir_is_resolved(db: Database, images_dir: Path) -> None:
    relative = Path(os.path.relpath(images_dir))
    client = create_app(db, relative, auth=AuthConfig()).test_client()
    assert client.get("/images/cam1-new-annotated.jpg").status_code == 200
