"""What an engineer sees in the browser: live overview, history filters, detail, the twin tool
changing a running camera, strict file serving and login."""

from __future__ import annotations

import http.client
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from mfgvision.dashboard.live import LiveConfig
from mfgvision.store.live import LIVE_FOLDER, live_frame_path
from tests.browser.conftest import PASSWORD, SECRET, SECRET_NAME, USER, Stack, sign_in, wait_for
from tests.browser.seed import write_running_status

pytestmark = pytest.mark.slow


def test_overview_shows_images_and_charts(page: Any, stack: Stack) -> None:
    page.goto(stack.dashboard_url + "?window=hour")
    card = page.locator('.card[data-camera="line1-top"]')
    card.wait_for(timeout=30000)
    image = card.locator('img[data-ref="image"]:not([hidden])')
    image.wait_for(timeout=30000)
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0
    page.locator("#overview[data-charts-ready]").wait_for(state="attached", timeout=30000)
    assert page.locator("#chart-defects .main-svg").count() > 0
    assert page.locator("#chart-latency .scatterlayer .trace").count() >= 1
    assert page.locator("#chart-defects .barlayer .trace").count() >= 1
    card.locator(".status[data-level='ok']").wait_for(timeout=30000)
    assert "fps" in card.locator('[data-ref="fps"]').inner_text()
    assert page.locator(".card").count() == 2  # the live camera and the seeded one
    # Live: a newer inference replaces the card's image without a reload.
    first = image.get_attribute("src")
    assert wait_for(lambda: image.get_attribute("src") != first, 30)
    page.locator(".window-picker [data-window='day']").click()
    page.locator("#kpis [data-ref='windowLabel']").filter(has_text="Day").wait_for()


def test_the_live_toggle_streams_a_camera_and_gives_the_still_back(page: Any, stack: Stack) -> None:
    page.goto(stack.dashboard_url + "?window=hour")
    card = page.locator('.card[data-camera="line1-top"]')
    toggle = card.locator('button[data-ref="live"]')
    toggle.wait_for(timeout=30000)
    image = card.locator('img[data-ref="image"]')
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    shown = (
        "img => img.currentSrc.endsWith('/api/cameras/line1-top/live.mjpeg') && img.naturalWidth"
    )
    assert wait_for(lambda: image.evaluate(shown) > 0)
    assert image.evaluate("img => img.naturalWidth") <= LiveConfig().max_width
    assert stack.dashboard.live_view is not None
    assert stack.dashboard.live_view.clients == 1
    assert live_frame_path(stack.data / LIVE_FOLDER, "line1-top").is_file()
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false"
    assert wait_for(lambda: "/images/" in (image.get_attribute("src") or ""))
    assert wait_for(lambda: stack.dashboard.live_view.clients == 0)


def test_a_camera_fault_is_shown_and_its_last_verdict_greyed(page: Any, stack: Stack) -> None:
    write_running_status(
        stack.data / "status", "line2-top", "CIS2", 0.0, "camera_error", "no frame for 10 s"
    )
    page.goto(stack.dashboard_url + "?window=hour")
    faulty = page.locator('.card[data-camera="line2-top"]')
    banner = faulty.locator('.status-error[data-level="error"]:not([hidden])')
    banner.wait_for(timeout=30000)
    assert banner.inner_text() == "Camera error: no frame for 10 s"
    assert "stale" in (faulty.get_attribute("class") or "")
    assert "not live" in faulty.locator('[data-ref="age"]').inner_text()
    grey = faulty.locator('[data-ref="verdict"]').evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert grey == "rgb(75, 85, 99)"
    live = page.locator('.card[data-camera="line1-top"]')
    live.locator(".status[data-level='ok']").wait_for(timeout=30000)
    assert "stale" not in (live.get_attribute("class") or "")
    assert live.locator(".status-error").is_hidden()


def test_history_filter_narrows_and_detail_opens(page: Any, stack: Stack) -> None:
    page.goto(stack.dashboard_url + "history")
    page.locator("#history[data-loaded]").wait_for(state="attached", timeout=30000)
    rows = page.locator("#rows tr")
    assert rows.count() == 50
    cameras = set(rows.locator("td:nth-child(3)").all_inner_texts())
    assert any("line1-top" in c for c in cameras) and any("line2-top" in c for c in cameras)
    page.locator("select[name=camera]").select_option("line2-top")
    page.wait_for_url(re.compile(r"camera=line2-top"))
    assert wait_for(
        lambda: all("line2-top" in c for c in rows.locator("td:nth-child(3)").all_inner_texts())
    )
    total = page.locator("#summary b").inner_text()
    assert total == "120"
    page.locator("select[name=verdict]").select_option("NG")
    assert wait_for(lambda: set(rows.locator(".pill").all_inner_texts()) == {"NG"})
    assert int(page.locator("#summary b").inner_text()) < 120
    thumb = rows.first.locator("img.thumb")
    thumb.wait_for()
    assert wait_for(lambda: thumb.evaluate("i => i.complete && i.naturalWidth") > 0)
    assert "size=160" in (thumb.get_attribute("src") or "")
    rows.first.locator("a").click()
    page.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)
    image = page.locator('#detail img[data-ref="image"]')
    assert wait_for(lambda: image.evaluate("i => i.complete && i.naturalWidth") > 0)
    assert page.locator("#detail .box").count() >= 1
    assert '"unique_id"' in page.locator("#detail pre").inner_text()


def test_detail_names_the_settings_the_verdict_was_made_with(page: Any, stack: Stack) -> None:
    api = page.request.get(stack.dashboard_url + "api/inferences?camera=line1-top&limit=1")
    (latest,) = api.json()["items"]
    uid = latest["unique_id"]
    item = page.request.get(f"{stack.dashboard_url}api/inferences/{uid}").json()
    assert item["prob_threshold"] is not None and item["settings_version"] is not None
    page.goto(f"{stack.dashboard_url}inferences/{uid}")
    page.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)
    assert page.locator('#detail [data-ref="rule"]').inner_text() == item["verdict_rule"]
    facts = dict(
        zip(
            page.locator("#detail .facts dt").all_text_contents(),
            page.locator("#detail .facts dd").all_text_contents(),
            strict=True,
        )
    )
    assert facts["Threshold"].startswith(f"{item['prob_threshold']} ")
    assert facts["Settings version"].startswith(f"{item['settings_version']} ")
    assert facts["Model"] == f"{item['model_name']} v{item['model_version']}"


def test_twin_tool_changes_a_running_camera(page: Any, stack: Stack) -> None:
    page.goto(stack.twin_url)
    assert "/login" in page.url
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.locator("a", has_text="CIS1").first.click()
    # The camera's current frame and its own state are beside the form.
    frame = page.locator("#frame-image")
    assert wait_for(lambda: frame.evaluate("i => i.complete && i.naturalWidth") > 0)
    page.locator("#module-state", has_text="Module: Running").wait_for()
    # Settings of other camera types show only when that type is chosen.
    assert page.locator("#f-camera_fps").is_visible()
    assert not page.locator("#f-camera_exposure_us").is_visible()
    page.select_option("#f-camera_type", "basler")
    assert page.locator("#f-camera_exposure_us").is_visible()
    assert not page.locator("#f-camera_fps").is_visible()
    page.select_option("#f-camera_type", "folder")
    assert page.locator("#f-camera_exposure_us").is_disabled()
    assert page.locator("legend").all_text_contents()[:2] == ["Inspection", "Camera"]
    page.fill("#f-prob_threshold", "0.37")
    page.click("text=Review changes")
    diff = page.locator("#diff")
    diff.wait_for()
    assert "Probability threshold" in diff.inner_text() and "0.37" in diff.inner_text()
    patch = page.locator("input[name=patch]").get_attribute("value")
    assert json.loads(patch or "") == {"prob_threshold": 0.37}
    page.click("text=Apply to the module")
    page.locator("#module[data-outcome='applied']").wait_for(state="attached", timeout=30000)
    assert stack.cis.pipeline is not None
    assert stack.cis.pipeline.settings.prob_threshold == 0.37
    reported = stack.broker.hub("CIS1").get_twin()["reported"]
    assert reported["config"]["settings"]["prob_threshold"] == 0.37
    # A value the module would refuse is stopped by the form, and nothing is sent.
    version = stack.broker.hub("CIS1").get_twin()["desired"]["$version"]
    page.fill("#f-prob_threshold", "3")
    page.click("text=Review changes")
    page.locator(".form-error").first.wait_for()
    assert stack.broker.hub("CIS1").get_twin()["desired"]["$version"] == version


def test_twin_tool_adds_a_second_camera_to_a_module(page: Any, stack: Stack) -> None:
    sign_in(page, stack.twin_url)
    page.locator("a", has_text="CIS1").first.click()
    page.click("text=Add a camera to this module")
    second = page.locator('fieldset[data-camera="line1-top-2"]')
    second.wait_for()
    assert page.locator("fieldset.camera-section legend").all_text_contents() == [
        "Camera line1-top",
        "Camera line1-top-2",
    ]
    page.fill('[name="cam1.camera_position"]', "side")
    page.click("text=Review changes")
    page.locator("#diff").wait_for()
    assert "cameras[1]" in page.locator("#diff").inner_text()
    page.click("text=Apply to the module")
    page.locator("#module[data-outcome='applied']").wait_for(state="attached", timeout=30000)
    try:
        desired = stack.broker.hub("CIS1").get_twin()["desired"]
        assert desired["cameras"] == [
            {"camera_id": "line1-top"},
            {"camera_id": "line1-top-2", "camera_type": "folder", "camera_position": "side"},
        ]
        assert wait_for(lambda: set(stack.cis.pipelines) == {"line1-top", "line1-top-2"})
        # The saved module shows both cameras, each with its own section and frame panel.
        page.reload()
        assert page.locator("[data-camera-frame]").count() == 2
        assert page.locator('[name="cam1.camera_position"]').input_value() == "side"
    finally:
        stack.broker.patch_desired("CIS1", {"cameras": None})
        assert wait_for(lambda: set(stack.cis.pipelines) == {"line1-top"})


PROBES = [
    "/images/../secret.jpg",
    "/images/..%2fsecret.jpg",
    "/images/..%2Fsecret.jpg",
    "/images/%2e%2e%2fsecret.jpg",
    "/images/%2e%2e/secret.jpg",
    "/images/..%5csecret.jpg",
    "/images/....//secret.jpg",
    "/images/%252e%252e%252fsecret.jpg",
    "/images/..",
    "/images/.",
    "/images/%00",
    "/images/secret.jpg%00.jpg",
    "/images//etc/passwd",
    "/images/%2fetc%2fpasswd",
    "/images/..%2f..%2f..%2fetc%2fpasswd",
    "/images/~root",
    "/images/.secret.jpg",
    "/images/" + "a" * 300 + ".jpg",
    "/images/a.jpg?size=-1",
    "/images/a.jpg?size=0x10",
    "/images/a.jpg?size=99999",
    "/images/a.jpg?size=160&size=320",
    "/images/a.jpg?size=%00",
    "/images/a.jpg?path=../secret.jpg",
    "/images/secret.jpg",
    "/images/mfgvision.db",
    "/images/..%c0%afsecret.jpg",
    "/images/%c0%ae%c0%ae/secret.jpg",
    "/static/../secret.jpg",
    "/static/..%2f..%2fsecret.jpg",
    "/static/%2e%2e/%2e%2e/secret.jpg",
    "/vendor/../secret.jpg",
    "/api/inferences/..%2f..%2fsecret.jpg",
    "/api/inferences/%00",
    "/inferences/..%2fsecret",
    "/api/inferences?limit=100000",
    "/api/inferences?limit=1;DROP%20TABLE%20inference_data",
    "/api/inferences?camera=%27%20OR%201=1%20--",
    "/api/inferences?verdict=1",
    "/api/inferences?cursor=../../etc",
    "/api/inferences?from=../../etc",
    "/api/inferences?to=2024-99-99",
    "/api/inferences?label=%0a",
    "/api/stats?window=../../etc",
    "/api/stats?window=custom&from=0",
    "/api/stats?camera=../secret",
    "/api/overview?window=forever",
    "/api/overview?x=1",
    "/api/labels?camera=1",
    "/api/cameras?limit=1",
]


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_probes_get_400_or_404_and_never_a_file_outside(stack: Stack) -> None:
    assert len(PROBES) == 50
    (stack.data / "images" / ".secret.jpg").write_bytes(SECRET)
    assert (stack.data / SECRET_NAME).read_bytes() == SECRET
    for path in PROBES:
        status, body = _raw_get(stack.dashboard_url, path)
        assert status in (400, 404), (path, status)
        assert SECRET not in body, path
        assert b"root:" not in body, path


def test_login_enforced_when_configured(page: Any, stack: Stack) -> None:
    url = stack.secured.url
    status, _ = _raw_get(url, "/api/overview")
    assert status == 401
    status, _ = _raw_get(url, "/healthz")
    assert status == 200
    images = sorted((stack.data / "images").glob("line1-top-*-annotated.jpg"))
    status, body = _raw_get(url, f"/images/{images[0].name}")
    assert status == 401 and not body.startswith(b"\xff\xd8")
    page.goto(url + "history")
    assert "/login" in page.url
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".form-error").inner_text().startswith("Wrong")
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.locator("#history[data-loaded]").wait_for(state="attached", timeout=30000)
    assert page.url.endswith("/history")


def test_an_operator_corrects_the_boxes_by_drawing_on_the_frame(page: Any, stack: Stack) -> None:
    items = page.request.get(stack.dashboard_url + "api/inferences?limit=50").json()["items"]
    target = next(i for i in items if i["images"]["raw"] and i["verdict"] == "NG")
    uid = target["unique_id"]
    page.goto(f"{stack.dashboard_url}inferences/{uid}")
    page.locator("#detail[data-loaded]").wait_for(state="attached", timeout=30000)

    page.click('[data-ref="editToggle"]')
    kept = page.locator('[data-ref="editList"] li').count()
    assert kept == len(target["detections"])  # the model's boxes are the starting point
    page.locator('[data-ref="editList"] li button').first.click()  # one of them was wrong
    page.fill('[data-ref="editLabel"]', "dent")
    from playwright.sync_api import expect

    # The drawing layer takes its size from the frame: until the image has loaded it has none.
    image = page.locator('#detail [data-ref="image"]')
    expect(image).to_have_js_property("complete", True)
    expect(image).not_to_have_js_property("naturalWidth", 0)
    layer = page.locator('[data-ref="editBoxes"]')
    expect(layer).to_be_visible()
    area = layer.bounding_box()
    assert area is not None and area["height"] > 0
    page.mouse.move(area["x"] + 0.2 * area["width"], area["y"] + 0.3 * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + 0.5 * area["width"], area["y"] + 0.6 * area["height"], steps=5)
    page.mouse.up()
    page.fill('[data-ref="note"]', "dent missed, one box wrong")
    page.click('[data-ref="saveBoxes"]')
    # The hint before any feedback also names the retraining set: wait for the saved state itself.
    expect(page.locator('[data-ref="feedbackState"]')).to_contain_text(
        "Marked verdict right", timeout=10000
    )

    stored = page.request.get(f"{stack.dashboard_url}api/inferences/{uid}").json()["feedback"]
    assert stored["judgement"] == "correct" and stored["note"] == "dent missed, one box wrong"
    assert len(stored["boxes"]) == kept
    drawn = next(b for b in stored["boxes"] if b["label"] == "dent")
    assert drawn["box_norm"] == pytest.approx([0.2, 0.3, 0.5, 0.6], abs=0.01)

    page.click('[data-ref="markFalseNg"]')
    assert wait_for(
        lambda: page.locator('[data-ref="markFalseNg"]').get_attribute("aria-pressed") == "true", 10
    )
    stored = page.request.get(f"{stack.dashboard_url}api/inferences/{uid}").json()["feedback"]
    assert (stored["judgement"], stored["boxes"]) == ("false_ng", [])
