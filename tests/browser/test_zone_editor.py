"""Drawing a camera's zones in the twin configuration tool, on its current frame, through to the
running CIS module: the zone editor keeps the form's ``zones`` setting in step with what is drawn."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.browser.conftest import Stack, sign_in, wait_for
from tests.cis.conftest import LABELS


def zones_of(page: Any) -> dict[str, list[list[float]]]:
    return json.loads(page.input_value("#f-zones") or "{}")


def near(
    points: list[list[float]], expected: list[tuple[float, float]], within: float = 0.01
) -> bool:
    """Whether ``points`` are ``expected``, each coordinate within ``within``."""
    return len(points) == len(expected) and all(
        abs(x - ex) <= within and abs(y - ey) <= within
        for (x, y), (ex, ey) in zip(points, expected, strict=True)
    )


def test_an_engineer_draws_a_zone_on_the_frame_and_the_module_applies_it(
    page: Any, stack: Stack
) -> None:
    sign_in(page, stack.twin_url)
    page.locator("a", has_text="CIS1").first.click()
    image = page.locator("#frame-image")
    assert wait_for(lambda: image.evaluate("i => i.complete && i.naturalWidth") > 0)
    stage = page.locator("#frame .frame-stage")

    def at(fx: float, fy: float) -> tuple[float, float]:
        """A point of the frame on the screen, as the page is scrolled now."""
        stage.scroll_into_view_if_needed()
        box = stage.bounding_box()
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    editor = page.locator("#frame .zone-editor")
    name = editor.locator("[data-ref=name]")
    editor.get_by_role("button", name="New zone").click()
    name.fill("seal")
    square = [(0.1, 0.2), (0.6, 0.2), (0.6, 0.7), (0.1, 0.7)]
    for point in square:
        page.mouse.click(*at(*point))
    editor.get_by_role("button", name="Finish").click()
    assert list(zones_of(page)) == ["seal"]
    assert near(zones_of(page)["seal"], square)
    assert page.locator("#frame .zone-layer polygon.zone").count() == 1

    # A point dragged moves; the zone's other points stay.
    page.mouse.move(*at(0.6, 0.7))
    page.mouse.down()
    page.mouse.move(*at(0.8, 0.9), steps=6)
    page.mouse.up()
    moved = [(0.1, 0.2), (0.6, 0.2), (0.8, 0.9), (0.1, 0.7)]
    assert near(zones_of(page)["seal"], moved)

    # Renamed, the zone takes the rules that name it along.
    rule = {"kind": "defect", "classes": [LABELS[0]], "zones": ["seal"]}
    page.fill("#f-rules", json.dumps({"seal-defect": rule}))
    name.fill("sealing-face")
    assert list(zones_of(page)) == ["sealing-face"]
    assert json.loads(page.input_value("#f-rules"))["seal-defect"]["zones"] == ["sealing-face"]
    name.fill("bad name!")
    assert name.get_attribute("aria-invalid") == "true"
    assert list(zones_of(page)) == ["sealing-face"]

    # A second zone: a double-clicked point goes, then the whole zone is deleted.
    editor.get_by_role("button", name="New zone").click()
    for point in [(0.7, 0.05), (0.95, 0.05), (0.95, 0.15), (0.7, 0.15)]:
        page.mouse.click(*at(*point))
    page.keyboard.press("Enter")
    assert len(zones_of(page)["zone2"]) == 4
    page.mouse.dblclick(*at(0.95, 0.15))
    assert near(zones_of(page)["zone2"], [(0.7, 0.05), (0.95, 0.05), (0.7, 0.15)])
    editor.get_by_role("button", name="Delete zone").click()
    assert list(zones_of(page)) == ["sealing-face"]
    drawn = zones_of(page)

    if os.environ.get("MFGVISION_ZONE_SHOT"):
        page.screenshot(path=os.environ["MFGVISION_ZONE_SHOT"], full_page=True)

    try:
        page.click("text=Review changes")
        page.locator("#diff").wait_for()
        patch = json.loads(page.locator("input[name=patch]").get_attribute("value") or "")
        assert patch["zones"] == drawn
        page.click("text=Apply to the module")
        page.locator("#module[data-outcome='applied']").wait_for(state="attached", timeout=30000)
        assert stack.cis.pipeline is not None
        assert stack.cis.pipeline.settings.zones == drawn
        assert list(stack.cis.pipeline.settings.rules) == ["seal-defect"]
        # Saved, the zone is drawn again from the twin.
        page.reload()
        editor.locator(".zone-chip", has_text="sealing-face").wait_for()
        assert page.locator("#frame .zone-layer polygon.zone").count() == 1
    finally:
        stack.broker.patch_desired("CIS1", {"zones": None, "rules": None})
        assert wait_for(
            lambda: stack.cis.pipeline is not None and not stack.cis.pipeline.settings.zones
        )


def test_zones_in_pixels_of_the_zones_frame(page: Any, stack: Stack) -> None:
    sign_in(page, stack.twin_url)
    page.locator("a", has_text="CIS1").first.click()
    page.fill("#f-zones_frame", "1920, 1080")
    page.dispatch_event("#f-zones_frame", "change")
    stage = page.locator("#frame .frame-stage")
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    page.locator("#frame .zone-editor").get_by_role("button", name="New zone").click()
    for fx, fy in [(0.25, 0.25), (0.75, 0.25), (0.5, 0.75)]:
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.keyboard.press("Enter")
    assert near(zones_of(page)["zone1"], [(480, 270), (1440, 270), (960, 810)], within=3)


def test_a_camera_of_a_module_starts_from_the_modules_zones(page: Any, stack: Stack) -> None:
    module_zones = {"cell": [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]}
    cameras = [{"camera_id": "line1-top"}, {"camera_id": "line1-top-2"}]
    stack.broker.patch_desired("CIS1", {"zones": module_zones, "cameras": cameras})
    try:
        sign_in(page, stack.twin_url)
        page.locator("a", has_text="CIS1").first.click()
        panels = page.locator("[data-camera-frame]")
        assert panels.count() == 2
        # Both cameras show the module's zone as theirs until one is given its own.
        for i in range(2):
            panels.nth(i).locator("polygon.zone.inherited").wait_for()
        second = panels.nth(1)
        stage = second.locator(".frame-stage")
        second.get_by_role("button", name="New zone").click()
        second.locator("[data-ref=name]").fill("conveyor")
        for fx, fy in [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9)]:
            stage.scroll_into_view_if_needed()
            box = stage.bounding_box()
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        second.get_by_role("button", name="Finish").click()
        own = json.loads(page.input_value('[name="cam1.zones"]'))
        assert list(own) == ["cell", "conveyor"] and own["cell"] == module_zones["cell"]
        assert near(own["conveyor"], [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9)])
        assert page.input_value('[name="cam0.zones"]') == ""
        assert second.locator("polygon.zone.inherited").count() == 0
        page.click("text=Review changes")
        page.locator("#diff").wait_for()
        patch = json.loads(page.locator("input[name=patch]").get_attribute("value") or "")
        assert patch == {"cameras": [cameras[0], {**cameras[1], "zones": own}]}
    finally:
        stack.broker.patch_desired("CIS1", {"zones": None, "cameras": None})
        assert wait_for(lambda: set(stack.cis.pipelines) == {"line1-top"})
