"""The camera health panel in the browser: from the overview card to a camera without a reference,
the reference set by direct method, then the drift figures and both frames on the page."""

from __future__ import annotations

from typing import Any

import pytest

from mfgvision.store.drift import read_view
from tests.browser.conftest import Stack, wait_for

pytestmark = pytest.mark.slow

IMAGE_SHOWN = "img => !img.hidden && img.complete && img.naturalWidth > 0"


def test_the_health_panel_shows_the_drift_figures_and_both_frames(page: Any, stack: Stack) -> None:
    page.goto(stack.dashboard_url + "?window=hour")
    link = page.locator('.card[data-camera="line1-top"] a.health')
    link.filter(has_text="no reference").wait_for(timeout=30000)
    link.click()
    page.wait_for_url("**/cameras/line1-top?window=hour")
    panel = page.locator("#drift-panel")
    setup = panel.locator('[data-ref="setup"]')
    setup.wait_for(timeout=30000)
    assert "set_reference" in setup.inner_text() and "CIS1" in setup.inner_text()
    assert panel.locator('img[data-ref="reference"]').is_hidden()

    code, answer = stack.broker.hub("CIS1").call_method("set_reference", {"timeout_s": 10})
    assert code == 200, answer

    def checked_since_set_up() -> bool:
        view = read_view(stack.data / "drift", "line1-top") or {}
        current = view.get("current") or {}
        return (view.get("reference") or {}).get("taken_at") == answer["taken_at"] and str(
            current.get("checked_at", "")
        ) > answer["taken_at"]

    assert wait_for(checked_since_set_up, 30)
    page.reload()
    reference = panel.locator('img[data-ref="reference"]')
    current = panel.locator('img[data-ref="current"]')
    assert wait_for(lambda: reference.evaluate(IMAGE_SHOWN) and current.evaluate(IMAGE_SHOWN), 30)
    assert reference.get_attribute("src") == f"/images/drift/line1-top/{answer['image']}"
    assert "/current-" in (current.get_attribute("src") or "")
    assert setup.is_hidden()
    assert "taken" in panel.locator('[data-ref="referenceTime"]').inner_text()
    figures = panel.locator('[data-ref="figures"] tr[data-figure]')
    assert figures.count() >= 4
    brightness = panel.locator('tr[data-figure="brightness_change"] td').nth(1).inner_text()
    assert brightness.endswith("%")
    page.locator("#camera[data-charts-ready]").wait_for(state="attached", timeout=30000)
    assert page.locator("#chart-drift .scatterlayer .trace").count() >= 4
    state = page.locator(".drift-state").inner_text()
    assert state == "Steady" or state.startswith("Drifting: "), state
