"""Screenshots of every page for docs/screenshots/, taken when MFGVISION_SCREENSHOTS=1.

The dashboards run on seeded data (hours of inspections of synthetic parts, with status files) so
the pages look as they do on a line; the twin tool shows the running test camera's module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfgvision.dashboard.server import DashboardServer
from mfgvision.store.database import Database
from mfgvision.web.auth import AuthConfig
from tests.browser.conftest import PASSWORD, USER, Stack
from tests.browser.seed import frame_pool, seed_cameras, write_running_status

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MFGVISION_SCREENSHOTS") != "1", reason="set MFGVISION_SCREENSHOTS=1"
    ),
]

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1920, "height": 1080}
CAMERAS = [
    ("line1-top", "line1", "top"),
    ("line1-side", "line1", "side"),
    ("line2-top", "line2", "top"),
    ("line3-top", "line3", "top"),
]


@pytest.fixture(scope="module")
def pool() -> list[Any]:
    return frame_pool(10)


def _dashboard(root: Path, cameras: int, pool: list[Any]) -> DashboardServer:
    db = Database(f"sqlite:///{root / 'mfgvision.db'}")
    db.create_schema()
    if cameras:
        seed_cameras(db, root / "images", root / "status", CAMERAS[:cameras], pool, hours=10)
        if cameras >= 3:
            write_running_status(
                root / "status",
                CAMERAS[2][0],
                "CIS3",
                0.0,
                state="reconnecting",
                error="RTSP stream lost: connection refused; retrying in 4 s",
            )
    server = DashboardServer(
        db, root / "images", port=0, title="Plant 7 · Line inspection", auth=AuthConfig()
    )
    server.start()
    return server


@pytest.fixture
def shot(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    OUT.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> None:
        page.wait_for_timeout(800)
        page.screenshot(path=str(OUT / name))

    page.take = take  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.mark.parametrize(
    ("cameras", "name"),
    [(4, "dashboard.png"), (1, "dashboard-1-camera.png"), (0, "dashboard-empty.png")],
)
def test_overview_screenshots(
    shot: Any, tmp_path: Path, pool: list[Any], cameras: int, name: str
) -> None:
    server = _dashboard(tmp_path, cameras, pool)
    try:
        shot.goto(server.url + "?window=shift")
        shot.locator("#overview[data-charts-ready]").wait_for(state="attached", timeout=30000)
        if cameras:
            shot.locator(".card img:not([hidden])").nth(cameras - 1).wait_for(timeout=30000)
        shot.take(name)
        if cameras == 4:
            shot.goto(server.url + "history")
            shot.locator("#history[data-loaded]").wait_for(state="attached", timeout=30000)
            shot.wait_for_function(
                "() => [...document.querySelectorAll('img.thumb')].slice(0, 12)"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            shot.take("history.png")
            ng = shot.locator("#rows tr", has=shot.locator(".pill.NG")).first
            ng.locator("a").click()
            shot.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)
            shot.wait_for_function(
                "() => { const i = document.querySelector('#detail img'); "
                "return i && i.complete && i.naturalWidth > 0; }"
            )
            shot.take("detail.png")
    finally:
        server.stop()


def test_twin_tool_screenshot(shot: Any, stack: Stack) -> None:
    shot.goto(stack.twin_url)
    shot.take("twin-config-login.png")
    shot.fill("input[name=user]", USER)
    shot.fill("input[name=password]", PASSWORD)
    shot.click("button[type=submit]")
    shot.locator("a", has_text="CIS1").first.wait_for()
    shot.take("twin-config.png")
    shot.locator("a", has_text="CIS1").first.click()
    shot.fill("#f-prob_threshold", "0.6")
    shot.fill("#f-inference_fps", "4")
    shot.click("text=Review changes")
    shot.locator("#diff").wait_for()
    shot.take("twin-config-review.png")
    shot.click("text=Apply to the module")
    shot.locator("#module[data-outcome='applied']").wait_for(state="attached", timeout=30000)
    assert re.search(r"Applied version \d+", shot.locator("#ack").inner_text())
    shot.take("twin-config-module.png")
    # A zone drawn on the camera's frame, selected: its points and mid-edge points show.
    stage = shot.locator("#frame .frame-stage")
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    shot.locator("#frame").get_by_role("button", name="New zone").click()
    shot.locator("#frame [data-ref=name]").fill("sealing_face")
    for fx, fy in [(0.3, 0.25), (0.72, 0.2), (0.8, 0.62), (0.55, 0.85), (0.28, 0.7)]:
        shot.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    shot.locator("#frame").get_by_role("button", name="Finish").click()
    shot.take("twin-config-zones.png")
