"""Zones and rules in the browser: the camera's zones drawn over an inspection's frame, the zone of
the rule that fired highlighted, and the history narrowed to the inspections a rule fired on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mfgvision.dashboard.server import DashboardServer
from mfgvision.store.database import Database
from mfgvision.store.images import image_name
from mfgvision.store.records import FiredRule, InferenceRecord
from mfgvision.store.status import write_status
from mfgvision.web.auth import AuthConfig
from tests.browser.conftest import wait_for
from tests.browser.seed import FRAME_H, FRAME_W, frame_pool
from tests.factories import make_record

pytestmark = pytest.mark.slow

CAMERA = "line3-top"
#: Pixels of the seeded frame size: the page gets them normalised and draws them on the frame.
ZONES = {
    "sealing_face": [[200, 100], [600, 100], [600, 350], [200, 350]],
    "cell": [[0, 0], [800, 0], [800, 60], [0, 60]],
}
SEAL = FiredRule("scratch_on_seal", "defect", "NG", "sealing_face", "scratch", 1, "1 scratch")
HELMET = FiredRule("helmet_in_cell", "required_with", "alarm", "cell", "person", 1, "1 person")


@dataclass
class Line:
    url: str
    rows: dict[str, InferenceRecord]


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    """A dashboard over inspections of one camera judged by its rules, and its status file with
    the zones in pixels of its frames."""
    data = tmp_path_factory.mktemp("zones")
    images = data / "images"
    images.mkdir()
    frame = frame_pool(1)[0]
    now = datetime.now(timezone.utc)
    fired = {
        "seal": (CAMERA, "NG", (SEAL,)),
        "helmet": (CAMERA, "OK", (HELMET,)),
        "seal_and_helmet": (CAMERA, "NG", (SEAL, HELMET)),
        "passed": (CAMERA, "OK", ()),
        "elsewhere": ("line4-top", "OK", None),  # no status file: its zones are not known
    }
    rows = {}
    for i, (name, (camera, verdict, rules)) in enumerate(fired.items()):
        created = now - timedelta(minutes=5 - i)
        raw = image_name(*camera.split("-"), created, "raw")
        (images / raw).write_bytes(frame.jpeg)
        rows[name] = make_record(
            created=created,
            camera_id=camera,
            camera_name=camera,
            frame_width=FRAME_W,
            frame_height=FRAME_H,
            raw_image_name=raw,
            given_verdict=verdict,
            fired_rules=rules,
            settings_version=7,
        )
    db = Database(f"sqlite:///{data / 'mfgvision.db'}")
    db.create_schema()
    db.write(list(rows.values()))
    settings = {
        "zones_frame": [FRAME_W, FRAME_H],
        "zones": ZONES,
        "rules": {"scratch_on_seal": {}, "helmet_in_cell": {}, "twelve_screws": {}},
    }
    write_status(
        data / "status",
        CAMERA,
        "CIS3",
        {"status": {"state": "running"}, "config": {"applied_version": 9, "settings": settings}},
    )
    dashboard = DashboardServer(db, images, port=0, title="Plant 7", auth=AuthConfig())
    dashboard.start()
    try:
        yield Line(dashboard.url, rows)
    finally:
        dashboard.stop()


def polygon(page: Any, zone: str) -> list[tuple[float, float]]:
    text = page.locator(f'#detail svg.zones g[data-zone="{zone}"] polygon').get_attribute("points")
    return [(float(x), float(y)) for x, y in (p.split(",") for p in text.split())]


def test_the_detail_draws_the_zones_and_highlights_the_one_a_rule_fired_in(
    page: Any, line: Line
) -> None:
    page.goto(f"{line.url}inferences/{line.rows['seal'].unique_id}")
    page.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)
    zones = page.locator("#detail svg.zones g.zone")
    assert zones.count() == 2
    assert polygon(page, "sealing_face") == [tuple(p) for p in ZONES["sealing_face"]]
    seal = page.locator('#detail g.zone[data-zone="sealing_face"]')
    cell = page.locator('#detail g.zone[data-zone="cell"]')
    assert seal.locator("text").text_content() == "sealing_face"
    assert cell.locator("text").text_content() == "cell"
    assert "fired" in (seal.get_attribute("class") or "")
    assert "fired" not in (cell.get_attribute("class") or "")
    width = seal.locator("polygon").evaluate("p => getComputedStyle(p).strokeWidth")
    faint = cell.locator("polygon").evaluate("p => getComputedStyle(p).strokeWidth")
    assert float(width.removesuffix("px")) > float(faint.removesuffix("px"))
    svg = page.locator("#detail svg.zones").bounding_box()
    image = page.locator('#detail img[data-ref="image"]').bounding_box()
    assert svg is not None and image is not None
    assert abs(svg["width"] - image["width"]) < 1 and abs(svg["height"] - image["height"]) < 1
    note = page.locator('#detail [data-ref="zonesNote"]').inner_text()
    assert "current settings" in note and "version 9" in note and "version 7" in note

    page.locator('#detail [data-ref="zonesToggle"]').uncheck()
    assert page.locator("#detail svg.zones").is_hidden()
    page.locator('#detail [data-ref="zonesToggle"]').check()
    assert page.locator("#detail svg.zones").is_visible()


def test_an_alarm_zone_is_highlighted_apart_from_an_ng_one(page: Any, line: Line) -> None:
    page.goto(f"{line.url}inferences/{line.rows['helmet'].unique_id}")
    page.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)
    cell = page.locator('#detail g.zone[data-zone="cell"]')
    assert cell.get_attribute("data-yields") == "alarm"
    seal = page.locator('#detail g.zone[data-zone="sealing_face"]')
    assert "fired" not in (seal.get_attribute("class") or "")


def test_history_filtered_by_a_rule_shows_only_the_inspections_it_fired_on(
    page: Any, line: Line
) -> None:
    page.goto(line.url + "history")
    page.locator("#history[data-loaded]").wait_for(state="attached", timeout=30000)
    rows = page.locator("#rows tr")
    assert rows.count() == 5
    rule = page.locator("select[name=rule]")
    known = {"", "*", "helmet_in_cell", "scratch_on_seal", "twelve_screws"}
    assert wait_for(
        lambda: (
            set(rule.locator("option").evaluate_all("options => options.map(o => o.value)"))
            == known
        )
    )

    def shown() -> set[str]:
        return set(rows.evaluate_all("trs => trs.map(tr => tr.dataset.id)"))

    def ids(*names: str) -> set[str]:
        return {line.rows[name].unique_id for name in names}

    rule.select_option("helmet_in_cell")
    page.wait_for_url(re.compile(r"rule=helmet_in_cell"))
    assert wait_for(lambda: shown() == ids("helmet", "seal_and_helmet"))
    for tr in rows.all():
        assert "helmet_in_cell" in tr.locator(".chip.rule").all_inner_texts()
    assert page.locator("#summary b").inner_text() == "2"
    rule.select_option("*")
    assert wait_for(lambda: shown() == ids("seal", "helmet", "seal_and_helmet"))
    page.locator("select[name=verdict]").select_option("NG")
    assert wait_for(lambda: shown() == ids("seal", "seal_and_helmet"))
    chip = rows.first.locator('.chip.rule[data-rule="helmet_in_cell"]')
    assert chip.get_attribute("data-yields") == "alarm"
    chip = rows.first.locator('.chip.rule[data-rule="scratch_on_seal"]')
    assert chip.get_attribute("data-yields") == "NG"


def test_a_camera_without_zones_gets_nothing_drawn(page: Any, line: Line) -> None:
    page.goto(f"{line.url}inferences/{line.rows['elsewhere'].unique_id}")
    page.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)
    assert page.locator('#detail img[data-ref="image"]').is_visible()
    assert page.locator("#detail svg.zones g.zone").count() == 0
    assert page.locator('#detail [data-ref="zonesToggle"]').is_disabled()
    assert page.locator('#detail [data-ref="zonesNote"]').is_hidden()


def test_the_overview_card_draws_the_zones_over_the_latest_frame(page: Any, line: Line) -> None:
    page.goto(line.url)
    card = page.locator(f'.card[data-camera="{CAMERA}"]')
    card.locator("svg.zones g.zone").first.wait_for()
    zones = card.locator("svg.zones g.zone")
    assert zones.evaluate_all("gs => gs.map(g => g.dataset.zone)") == ["sealing_face", "cell"]
    # The latest inspection passed: no zone is highlighted.
    assert card.locator("svg.zones g.zone.fired").count() == 0
    other = page.locator('.card[data-camera="line4-top"]')
    other.locator("img").wait_for()
    assert other.locator("svg.zones").is_hidden()
