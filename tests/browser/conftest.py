"""Headless Chromium (Debian's, through Playwright) against the services running in this process:
a CIS module on a folder camera with a constant-output model, the dashboard, and the twin
configuration tool over the in-process broker, as ``mfgvision demo`` wires them.

The tests skip when Chromium or Playwright is missing, unless ``MFGVISION_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from mfgvision.cis.service import CisService
from mfgvision.dashboard.live import LiveConfig
from mfgvision.dashboard.server import DashboardServer
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.twin_config.registry import LocalRegistry
from mfgvision.twin_config.server import TwinConfigServer
from mfgvision.web.auth import AuthConfig
from tests.browser.seed import frame_pool, seed_cameras
from tests.cis.conftest import LABELS, yolo_model_bytes
from tests.inference.graphs import write_model_dir
from tests.services import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
USER, PASSWORD = "engineer", "line-7-password"
SECRET = b"SECRET-OUTSIDE-THE-IMAGE-FOLDER"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from /usr/bin/chromium."""
    if not CHROMIUM.exists():
        unavailable("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@dataclass
class Stack:
    data: Path
    broker: InProcessBroker
    cis: CisService
    dashboard: DashboardServer
    secured: DashboardServer
    twin: TwinConfigServer

    @property
    def dashboard_url(self) -> str:
        return self.dashboard.url

    @property
    def twin_url(self) -> str:
        return self.twin.url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Stack]:
    """The running services, with an hour of history seeded for a second camera."""
    root = tmp_path_factory.mktemp("stack")
    data = root / "data"
    models = root / "models"
    write_model_dir(models, yolo_model_bytes(), LABELS, name="const", version="1")
    frames = root / "assets" / "frames"
    frames.mkdir(parents=True)
    pool = frame_pool(4)
    for i, frame in enumerate(pool):
        (frames / f"part{i}.jpg").write_bytes(frame.jpeg)
    db_url = f"sqlite:///{data / 'mfgvision.db'}"
    data.mkdir()
    seed_db = Database(db_url)
    seed_db.create_schema()
    seed_cameras(
        seed_db,
        data / "images",
        data / "status",
        [("line2-top", "line2", "top")],
        pool,
        hours=1.0,
        per_minute=2.0,
        with_images=20,
    )
    seed_db.close()
    # The seeded camera's status file goes stale; the test CIS reports for line1-top.
    desired = {
        "camera_type": "folder",
        "camera_uri": "frames",
        "camera_id": "line1-top",
        "camera_location": "line1",
        "camera_position": "top",
        "camera_fps": 4,
        "inference_fps": 2,
        "model_name": "const",
        "model_version": "1",
        "prob_threshold": 0.5,
    }
    broker = InProcessBroker([])
    paths = Paths(assets=root / "assets", models=models, data=data)
    cis = CisService(broker.hub("CIS1", desired), paths, Database(db_url), report_every_s=1.0)
    auth = AuthConfig(USER, generate_password_hash(PASSWORD))
    dashboard = DashboardServer(
        Database(db_url),
        data / "images",
        port=0,
        title="Plant 7",
        auth=AuthConfig(),
        live=LiveConfig(enabled=True),
    )
    secured = DashboardServer(Database(db_url), data / "images", port=0, auth=auth)
    manifest = {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "modules": {
                        "CIS1": {"settings": {"image": "cis", "createOptions": '{"Cmd":["cis"]}'}}
                    }
                }
            },
            "$edgeHub": {"properties.desired": {"routes": {}}},
            "CIS1": {"properties.desired": desired},
        }
    }
    registry = LocalRegistry(broker, manifest, {"CIS1": ["cis"]}, images=paths.images)
    twin = TwinConfigServer(registry, auth, port=0)
    (data / SECRET_NAME).write_bytes(SECRET)
    (root / SECRET_NAME).write_bytes(SECRET)
    services = [cis, dashboard, secured, twin]
    for service in services:
        service.start()
    try:
        assert wait_for(lambda: any((data / "images").glob("line1-top-*-annotated.jpg")))
        yield Stack(data, broker, cis, dashboard, secured, twin)
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)


SECRET_NAME = "secret.jpg"


def sign_in(page: Any, url: str) -> None:
    """Open ``url`` of the twin tool, signing in first when it asks."""
    page.goto(url)
    if "/login" in page.url:
        page.fill("input[name=user]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page; a script error on it fails the test."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors
