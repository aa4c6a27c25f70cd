"""Statistics, history, detail, thumbnails and camera status of the dashboard API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

from mfgvision.dashboard.stats import MINUTE, Rollup, Window, parse_window
from mfgvision.store.database import Database
from mfgvision.store.records import FiredRule, InferenceRecord
from mfgvision.store.status import read_statuses, write_status
from tests.dashboard.conftest import detection, record


def test_stats_counts_defects_and_latency(
    client: FlaskClient, seeded: list[InferenceRecord]
) -> None:
    data = client.get("/api/stats?window=day").get_json()
    assert data["window"]["name"] == "day"
    assert data["totals"] == {"total": 6, "ok": 3, "ng": 3, "yield_pct": 50.0}
    assert data["cameras"]["cam1"] == {"total": 3, "ok": 1, "ng": 2, "yield_pct": 33.3}
    defects = data["defects"]
    assert defects["bucket_s"] == 3600
    assert defects["labels"] == ["hole", "scratch", "spot"]
    assert defects["totals"] == {"hole": 1, "scratch": 2, "spot": 1}
    assert sum(sum(b["counts"].values()) for b in defects["buckets"]) == 4
    series = data["latency"]["series"]
    assert set(series) == {"cam1", "cam2", "cam3"}
    assert all(p["mean_ms"] == pytest.approx(12.35, abs=0.01) for p in series["cam1"])
    assert sum(p["count"] for p in series["cam1"]) == 3
    one = client.get("/api/stats?window=day&camera=cam2").get_json()
    assert list(one["cameras"]) == ["cam2"] and one["defects"]["totals"] == {"spot": 1}


def test_label_colours_follow_each_class_index_in_the_model(
    client: FlaskClient, seeded: list[InferenceRecord]
) -> None:
    colours = client.get("/api/label-colours").get_json()
    assert colours == {"scratch": "#E69F00", "hole": "#56B4E9", "spot": "#009E73"}
    page = client.get("/").get_data(as_text=True)
    assert 'name="class-colours"' in page and "#E69F00" in page


@pytest.mark.parametrize(
    "query",
    [
        "window=week",
        "window=custom",
        "window=hour&from=2024-01-01T00:00:00Z",
        "window=custom&from=2024-01-01T00:00:00",
        "window=custom&from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z",
        "window=custom&from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z",
        "window=custom&from=yesterday",
        "window=hour&window=day",
        "window=",
        "colour=red",
        "camera=../etc",
    ],
)
def test_stats_rejects_bad_parameters(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/stats?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_rollup_equals_direct_aggregation(db: Database) -> None:
    """Settled minutes from the rollup plus live edges give exactly the database's numbers."""
    now = datetime(2024, 5, 1, 12, 0, 30, tzinfo=timezone.utc)
    rows = [
        record(
            f"cam{i % 2}",
            now - timedelta(seconds=37 * i + 5),
            *([detection(i % 3, ["scratch", "hole", "spot"][i % 3], 0.9)] if i % 4 == 0 else []),
        )
        for i in range(200)
    ]
    db.write(rows)
    clock = now.timestamp()
    cached = Rollup(db.engine, horizon_s=3 * 3600, settle_s=120, clock=lambda: clock)
    direct = Rollup(db.engine, horizon_s=60, settle_s=120, clock=lambda: clock)
    for start in (now - timedelta(hours=1, seconds=13), now - timedelta(minutes=30)):
        window = Window("custom", start, now - timedelta(seconds=7))
        a, b = cached.stats(window), direct.stats(window)
        assert a.source == "rollup" and b.source == "database"
        assert a.counts == b.counts
        assert a.defects == b.defects and a.defects
        for rollup in (cached, direct):  # counts alone: the same numbers, no per-class work
            counts_only = rollup.stats(window, labels=False)
            assert counts_only.counts == a.counts and counts_only.latency == a.latency
            assert counts_only.defects == {}
        expected = sum(1 for r in rows if start <= r.created < window.end)
        assert sum(t for t, _ in a.counts.values()) == expected
    # New rows in settled minutes are picked up as time moves on.
    db.write([record("cam0", now + timedelta(seconds=10), detection(0, "scratch", 0.8))])
    clock = (now + timedelta(minutes=5)).timestamp()
    window = Window("custom", now - timedelta(minutes=50), now + timedelta(minutes=5))
    assert cached.stats(window).counts == direct.stats(window).counts


def test_window_buckets() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    hour = parse_window("hour", None, None, now)
    assert (hour.defect_bucket_s, hour.latency_bucket_s) == (300, MINUTE)
    day = parse_window("day", None, None, now)
    assert (day.defect_bucket_s, day.latency_bucket_s) == (3600, 720)
    custom = parse_window(None, "2024-05-01T10:00:00+02:00", None, now)
    assert custom.name == "custom" and custom.start == datetime(2024, 5, 1, 8, tzinfo=timezone.utc)


def test_history_filters_and_pages(client: FlaskClient, seeded: list[InferenceRecord]) -> None:
    everything = client.get("/api/inferences").get_json()
    assert everything["total"] == 6 and not everything["total_capped"]
    created = [item["created"] for item in everything["items"]]
    assert created == sorted(created, reverse=True)
    assert everything["items"][0]["detail_url"] == f"/inferences/{seeded[5].unique_id}"

    def ids(query: str) -> list[str]:
        return [i["unique_id"] for i in client.get(f"/api/inferences?{query}").get_json()["items"]]

    assert set(ids("camera=cam1")) == {r.unique_id for r in seeded if r.camera_id == "cam1"}
    assert set(ids("verdict=NG")) == {r.unique_id for r in seeded if r.object_detected}
    assert set(ids("label=scratch")) == {seeded[0].unique_id, seeded[2].unique_id}
    assert ids("label=scratch&camera=cam2") == []
    since = (seeded[5].created - timedelta(seconds=10)).isoformat()
    assert set(ids(f"from={since.replace('+00:00', 'Z')}")) == {
        r.unique_id for r in seeded if r.created >= seeded[5].created - timedelta(seconds=10)
    }
    first = client.get("/api/inferences?limit=4").get_json()
    assert len(first["items"]) == 4 and first["next_cursor"]
    second = client.get(f"/api/inferences?limit=4&cursor={first['next_cursor']}").get_json()
    assert len(second["items"]) == 2 and second["next_cursor"] is None
    paged = [i["unique_id"] for i in first["items"] + second["items"]]
    assert paged == [i["unique_id"] for i in everything["items"]]


@pytest.mark.parametrize(
    "query",
    [
        "verdict=maybe",
        "limit=0",
        "limit=201",
        "limit=-5",
        "limit=ten",
        "cursor=abc",
        "cursor=1_2_3",
        "cursor=99999999999999999999_1",
        "camera=a/b",
        "camera=" + "x" * 200,
        "label=%00",
        "from=2024-13-01T00:00:00Z",
        "page=2",
        "camera=cam1&camera=cam2",
    ],
)
def test_history_rejects_bad_parameters(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/inferences?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)


def test_detail(client: FlaskClient, seeded: list[InferenceRecord]) -> None:
    target = seeded[2]
    data = client.get(f"/api/inferences/{target.unique_id}").get_json()
    assert data["unique_id"] == target.unique_id
    assert data["frame"] == {"width": 640, "height": 480}
    assert data["detections"][0]["box"] == [10.0, 20.0, 110.0, 220.0]
    assert data["images"]["annotated"] == "/images/cam1-new-annotated.jpg"
    assert data["images"]["raw"] is None  # named in the row, but not on disk
    assert client.get(f"/inferences/{target.unique_id}").status_code == 200
    assert client.get("/api/inferences/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/api/inferences/bad%20id").status_code == 400
    assert client.get("/inferences/bad%20id").status_code == 400
    assert client.get("/api/nothing").status_code == 404


def test_detail_names_the_settings_in_force_and_the_verdict_rule(
    client: FlaskClient, db: Database
) -> None:
    now = datetime.now(timezone.utc)
    recorded = record("cam1", now, detection(0, "scratch", 0.93))
    recorded.prob_threshold, recorded.settings_version = 0.9, 12
    older = record("cam1", now - timedelta(days=1))  # stored before thresholds were recorded
    precise = record("cam1", now - timedelta(hours=1))
    precise.prob_threshold = 0.1234567
    db.write([recorded, older, precise])

    data = client.get(f"/api/inferences/{recorded.unique_id}").get_json()
    assert (data["verdict"], data["prob_threshold"], data["settings_version"]) == ("NG", 0.9, 12)
    assert (data["model_name"], data["model_version"]) == ("defects", "7")
    assert "at least one detection" in data["verdict_rule"]
    assert "above 0.9 (prob_threshold)" in data["verdict_rule"]
    data = client.get(f"/api/inferences/{older.unique_id}").get_json()
    assert (data["verdict"], data["prob_threshold"], data["settings_version"]) == ("OK", None, None)
    assert "not recorded" in data["verdict_rule"]
    data = client.get(f"/api/inferences/{precise.unique_id}").get_json()
    assert "above 0.1234567 (prob_threshold)" in data["verdict_rule"]  # never rounded

    page = client.get(f"/inferences/{recorded.unique_id}").get_data(as_text=True)
    assert 'data-ref="rule"' in page
    script = client.get("/static/detail.js").get_data(as_text=True)
    for field in ("verdict_rule", "prob_threshold", "settings_version"):
        assert f"item.{field}" in script


def test_an_inspection_judged_by_rules_names_them_and_counts_by_its_verdict(
    client: FlaskClient, db: Database
) -> None:
    now = datetime.now(timezone.utc)
    short = FiredRule(
        "screws", "count", "NG", "board", "screw", 11, "11 screw in board, expected 12"
    )
    passed = record("cam1", now - timedelta(seconds=2), detection(0, "scratch", 0.93))
    passed.given_verdict, passed.fired_rules, passed.prob_threshold = "OK", (), 0.5
    failed = record("cam1", now - timedelta(seconds=1))
    failed.given_verdict, failed.fired_rules = "NG", (short,)
    db.write([passed, failed])

    data = client.get(f"/api/inferences/{passed.unique_id}").get_json()
    assert (data["verdict"], data["rules"]) == ("OK", [])
    assert "rules that yields NG fires" in data["verdict_rule"]
    assert "above 0.5 (prob_threshold)" in data["verdict_rule"]
    assert data["verdict_rule"].endswith("No rule fired.")
    data = client.get(f"/api/inferences/{failed.unique_id}").get_json()
    assert (data["verdict"], data["rules"]) == ("NG", [short.to_dict()])
    assert "Fired: screws (count, NG): 11 screw in board, expected 12." in data["verdict_rule"]
    ng_only = client.get("/api/inferences?verdict=NG").get_json()["items"]
    assert [item["unique_id"] for item in ng_only] == [failed.unique_id]
    stats = client.get("/api/stats?window=hour").get_json()
    assert (stats["totals"]["ok"], stats["totals"]["ng"]) == (1, 1)


def test_thumbnails_are_resized_and_sizes_checked(client: FlaskClient, images_dir: Path) -> None:
    image = np.full((720, 1280, 3), 90, np.uint8)
    cv2.rectangle(image, (100, 100), (400, 300), (0, 0, 255), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    (images_dir / "big.jpg").write_bytes(data.tobytes())
    response = client.get("/images/big.jpg?size=320")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (180, 320, 3)
    again = client.get(
        "/images/big.jpg?size=320", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304
    for bad in ("0", "321", "-160", "160.0", " 160", "0160", "1e3", "", "99999999999"):
        assert client.get(f"/images/big.jpg?size={bad}").status_code == 400, bad
    assert client.get("/images/big.jpg?size=160&size=320").status_code == 400
    assert client.get("/images/big.jpg?width=160").status_code == 400
    assert client.get("/images/missing.jpg?size=160").status_code == 404
    # Not a JPEG inside: nothing to serve.
    (images_dir / "broken.jpg").write_bytes(b"not a jpeg")
    assert client.get("/images/broken.jpg?size=160").status_code == 404


def test_status_files(tmp_path: Path) -> None:
    folder = tmp_path / "status"
    status = {"status": {"state": "reconnecting", "fps": 1.5, "last_error": "stream lost"}}
    assert write_status(folder, "line1-top", "CIS1", status)
    assert not write_status(folder, "../escape", "CIS1", status)
    (folder / "junk.json").write_text("{not json")
    (folder / ".hidden.json").write_text("{}")
    read = read_statuses(folder)
    assert set(read) == {"line1-top"}
    cam = read["line1-top"]
    assert (cam.state, cam.level, cam.fps, cam.error, cam.module_id) == (
        "reconnecting",
        "warn",
        1.5,
        "stream lost",
        "CIS1",
    )
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert read_statuses(folder, later)["line1-top"].state == "offline"
    assert list(folder.glob(".*.tmp")) == []


def test_overview_shows_status_of_cameras_without_rows(
    client: FlaskClient, images_dir: Path
) -> None:
    write_status(
        images_dir.parent / "status",
        "line9",
        "CIS9",
        {"status": {"state": "model_error", "fps": 0.0, "last_error": "model.onnx missing"}},
    )
    data = client.get("/api/overview").get_json()
    (cam,) = data["cameras"]
    assert cam["camera_id"] == "line9" and cam["latest"] is None
    assert cam["status"]["label"] == "Model error" and cam["status"]["level"] == "error"
    assert cam["status"]["error"] == "model.onnx missing"
