"""The camera's zones on the detail API, normalised 0..1, and the history filtered by a rule that
fired, matched exactly on SQLite and on MariaDB."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mfgvision.store.database import Database
from mfgvision.store.records import FiredRule, InferenceRecord
from mfgvision.store.status import write_status
from tests.dashboard.conftest import detection, record
from tests.services import database_on_each_backend, mariadb_url  # noqa: F401  (fixtures)


def fired(rule: str, yields: str = "NG", zone: str | None = "board", detail: str = "") -> FiredRule:
    return FiredRule(rule, "defect", yields, zone, "scratch", 1, detail or f"1 scratch in {zone}")


def judged(
    created: datetime, verdict: str, rules: tuple[FiredRule, ...] | None, camera: str = "cam1"
) -> InferenceRecord:
    """An inference of ``camera`` judged ``verdict`` with ``rules`` fired (None: no rules)."""
    item = record(camera, created, detection(0, "scratch", 0.9))
    item.given_verdict, item.fired_rules = verdict, rules
    return item


@pytest.fixture
def judged_rows(db: Database) -> dict[str, InferenceRecord]:
    """Rows whose rule names differ only by case, by a ``_`` where another has a letter, or by a
    suffix; a rule's name quoted in another's detail; no rule fired; no rules in force."""
    now = datetime.now(timezone.utc)
    rows = {
        "screws": judged(now - timedelta(seconds=9), "NG", (fired("screws"),)),
        "Screws": judged(now - timedelta(seconds=8), "OK", (fired("Screws", "alarm"),)),
        "screws_x": judged(now - timedelta(seconds=7), "NG", (fired("screws_x"),)),
        "screw_a": judged(now - timedelta(seconds=6), "NG", (fired("screw_a"),)),
        "screwXa": judged(now - timedelta(seconds=5), "NG", (fired("screwXa"),)),
        "quoted": judged(
            now - timedelta(seconds=4),
            "OK",
            (fired("seal", "alarm", None, '"rule":"screws" looks like one'),),
        ),
        "both": judged(
            now - timedelta(seconds=3),
            "NG",
            (fired("seal", zone="face"), fired("screws", zone="tray")),
            camera="cam2",
        ),
        "none_fired": judged(now - timedelta(seconds=2), "OK", ()),
        "no_rules": judged(now - timedelta(seconds=1), "NG", None),
    }
    db.write(list(rows.values()))
    return rows


def test_history_is_filtered_by_the_exact_name_of_a_rule_that_fired(
    client: FlaskClient, judged_rows: dict[str, InferenceRecord]
) -> None:
    def found(query: str) -> set[str]:
        page = client.get(f"/api/inferences?{query}").get_json()
        names = {r.unique_id: name for name, r in judged_rows.items()}
        assert page["total"] == len(page["items"])
        return {names[item["unique_id"]] for item in page["items"]}

    assert found("rule=screws") == {"screws", "both"}
    assert found("rule=Screws") == {"Screws"}
    assert found("rule=screws_x") == {"screws_x"}
    assert found("rule=screw_a") == {"screw_a"}
    assert found("rule=seal") == {"quoted", "both"}
    assert found("rule=nothing") == set()
    assert found("rule=*") == set(judged_rows) - {"none_fired", "no_rules"}
    assert found("rule=*&verdict=OK") == {"Screws", "quoted"}
    assert found("rule=screws&camera=cam2") == {"both"}
    first = client.get("/api/inferences?rule=*&limit=4").get_json()
    rest = client.get(f"/api/inferences?rule=*&limit=4&cursor={first['next_cursor']}").get_json()
    assert len(first["items"]) + len(rest["items"]) == 7 and rest["next_cursor"] is None
    both = client.get(f"/api/inferences/{judged_rows['both'].unique_id}").get_json()
    assert [r["rule"] for r in both["rules"]] == ["seal", "screws"]


@pytest.mark.parametrize(
    "value", ["", "-screws", "a%20b", "x" * 41, "%22screws%22", "**", "screws%25", "sc%0A"]
)
def test_a_rule_filter_that_is_no_rule_name_is_refused(client: FlaskClient, value: str) -> None:
    response = client.get(f"/api/inferences?rule={value}")
    assert response.status_code == 400, response.get_data(as_text=True)


def write_camera_status(folder: Path, camera: str, settings: dict, version: int = 14) -> None:
    """A status file as the CIS writes it, with ``settings`` in force at ``version``."""
    body = {
        "status": {"state": "running", "fps": 2.0},
        "config": {"applied_version": version, "settings": settings, "error": None},
    }
    assert write_status(folder, camera, "CIS1", body)


def test_the_detail_has_the_camera_zones_normalised_and_the_rules_list_its_rules(
    client: FlaskClient, db: Database, images_dir: Path
) -> None:
    status_dir = images_dir.parent / "status"
    inspected = judged(datetime.now(timezone.utc), "NG", (fired("seal", zone="face"),))
    db.write([inspected])
    pixels = {
        "zones_frame": [1280, 720],
        "zones": {
            "face": [[480, 200], [800, 200], [800, 520], [480, 520]],
            "cell": [[0, 0], [1280, 0], [1280, 100], [0, 720]],
        },
        "rules": {"seal": {"kind": "defect"}, "helmet": {"kind": "required_with"}},
    }
    write_camera_status(status_dir, "cam1", pixels)
    data = client.get(f"/api/inferences/{inspected.unique_id}").get_json()
    assert data["zones"] == {
        "settings_version": 14,
        "items": [
            {
                "name": "face",
                "points": [
                    [0.375, 0.277778],
                    [0.625, 0.277778],
                    [0.625, 0.722222],
                    [0.375, 0.722222],
                ],
            },
            {"name": "cell", "points": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.138889], [0.0, 1.0]]},
        ],
    }

    # The overview's camera card has them too.
    cards = client.get("/api/overview?window=hour").get_json()["cameras"]
    assert next(c for c in cards if c["camera_id"] == "cam1")["zones"] == data["zones"]

    normalised = {"zones": {"face": [[0.1, 0.2], [0.5, 0.2], [0.3, 0.9]]}, "rules": {"x.y-1": {}}}
    write_camera_status(status_dir, "cam1", normalised, version=15)
    data = client.get(f"/api/inferences/{inspected.unique_id}").get_json()
    assert data["zones"] == {
        "settings_version": 15,
        "items": [{"name": "face", "points": [[0.1, 0.2], [0.5, 0.2], [0.3, 0.9]]}],
    }

    write_camera_status(status_dir, "cam2", pixels)
    assert client.get("/api/rules").get_json() == ["helmet", "seal", "x.y-1"]
    (status_dir / "cam1.json").unlink()
    data = client.get(f"/api/inferences/{inspected.unique_id}").get_json()
    assert data["zones"] == {"settings_version": None, "items": []}
    assert client.get("/api/rules?camera=cam2").status_code == 400
