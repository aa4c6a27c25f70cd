"""Login, API token and CSRF protection of the dashboard (mfgvision/web/auth.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from mfgvision.dashboard.app import create_app
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord
from mfgvision.web.auth import AuthConfig, AuthConfigError, safe_next

TOKEN = "t0ken-for-the-api-clients"
HASH = generate_password_hash("s3cret")


@pytest.fixture
def secured(db: Database, images_dir: Path) -> FlaskClient:
    app = create_app(db, images_dir, auth=AuthConfig("plant", HASH, TOKEN))
    return app.test_client()


def login(client: FlaskClient, user: str, password: str, next_url: str = "/") -> object:
    page = client.get(f"/login?next={next_url}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    return client.post(
        "/login",
        data={"user": user, "password": password, "next": next_url, "csrf_token": token.group(1)},
    )


def test_everything_but_healthz_needs_login(secured: FlaskClient, seeded: list[InferenceRecord]):
    assert secured.get("/healthz").status_code == 200
    for page in ("/", "/history", f"/inferences/{seeded[0].unique_id}"):
        response = secured.get(page)
        assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    for url in ("/api/overview", "/api/stats", "/api/inferences", "/images/cam1-new-annotated.jpg"):
        response = secured.get(url)
        assert response.status_code == 401, url
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_opens_the_api_but_not_the_pages(secured: FlaskClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.get("/api/overview", headers=headers).status_code == 200
    assert secured.get("/images/cam1-new-annotated.jpg", headers=headers).status_code == 200
    assert secured.get("/", headers=headers).status_code == 302
    wrong = {"Authorization": "Bearer nope-nope-nope-nope"}
    assert secured.get("/api/overview", headers=wrong).status_code == 401


def test_login_and_logout(secured: FlaskClient) -> None:
    assert login(secured, "plant", "wrong").status_code == 401
    response = login(secured, "plant", "s3cret", "/history")
    assert response.status_code == 302 and response.headers["Location"] == "/history"
    assert secured.get("/api/overview").status_code == 200
    page = secured.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token and "Sign out" in page
    assert secured.post("/logout").status_code == 400  # no CSRF token
    assert secured.post("/logout", data={"csrf_token": token.group(1)}).status_code == 302
    assert secured.get("/api/overview").status_code == 401


def test_repeated_failures_are_throttled(secured: FlaskClient) -> None:
    codes = [login(secured, "plant", f"guess{i}").status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert login(secured, "plant", "s3cret").status_code == 429


def test_login_without_csrf_token_is_refused(secured: FlaskClient) -> None:
    response = secured.post("/login", data={"user": "plant", "password": "s3cret"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example", "/\\evil", "javascript:alert(1)", ""]
)
def test_no_open_redirect(target: str) -> None:
    assert safe_next(target) == "/"
    assert safe_next("/history?camera=a") == "/history?camera=a"


def test_config_from_env() -> None:
    assert not AuthConfig.from_env({}).enabled
    config = AuthConfig.from_env(
        {"MFGVISION_DASHBOARD_USER": "u", "MFGVISION_DASHBOARD_PASSWORD_HASH": HASH}
    )
    assert config.enabled and config.check_password("u", "s3cret")
    assert not config.check_password("u", "nope") and not config.check_password("x", "s3cret")
    for bad in (
        {"MFGVISION_DASHBOARD_USER": "u"},
        {"MFGVISION_DASHBOARD_USER": "u", "MFGVISION_DASHBOARD_PASSWORD_HASH": "plain"},
        {"MFGVISION_DASHBOARD_TOKEN": "short"},
    ):
        with pytest.raises(AuthConfigError):
            AuthConfig.from_env(bad)


def test_open_dashboard_when_nothing_is_configured(client: FlaskClient) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/login").status_code == 302
