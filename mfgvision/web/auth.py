"""Login, API tokens and CSRF protection shared by the web apps (dashboard, twin configuration).

Configuration comes from the environment only:

* ``MFGVISION_DASHBOARD_USER`` + ``MFGVISION_DASHBOARD_PASSWORD_HASH``: one user who signs in on the
  login page; the hash is werkzeug's ``generate_password_hash`` format (``scrypt:...``/``pbkdf2:...``).
* ``MFGVISION_DASHBOARD_TOKEN``: a bearer token for API clients (``Authorization: Bearer <token>``);
  when no user is set, the login page accepts the token instead of a password.
* ``MFGVISION_SECRET_KEY``: signs the session cookie; without it a random key is made at start, so
  sessions end when the process restarts.

When none of the first three is set, login is off (the dashboard is then open, as on a closed plant
network: anyone on it can read and give operator feedback, nothing else); apps that must not run open call :func:`require_login_configured`.
Every form that changes something carries a CSRF token, checked for every unsafe method whether
login is on or not.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash

log = logging.getLogger(__name__)

USER_ENV = "MFGVISION_DASHBOARD_USER"
PASSWORD_HASH_ENV = "MFGVISION_DASHBOARD_PASSWORD_HASH"
TOKEN_ENV = "MFGVISION_DASHBOARD_TOKEN"
SECRET_KEY_ENV = "MFGVISION_SECRET_KEY"
MIN_TOKEN_LENGTH = 16
SESSION_HOURS = 12
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
_HASH_FORMAT = re.compile(r"(scrypt|pbkdf2):[^$]+\$[^$]+\$[0-9a-f]+")
_EXTENSION_KEY = "mfgvision.web.auth"


class AuthConfigError(ValueError):
    """The login environment variables are incomplete or malformed."""


@dataclass(frozen=True)
class AuthConfig:
    """Who may sign in: a user with a password hash, and/or an API token."""

    user: str | None = None
    password_hash: str | None = None
    token: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.user or self.token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        """Read and check the variables; raises AuthConfigError with what to fix."""
        env = os.environ if env is None else env
        user = env.get(USER_ENV, "").strip() or None
        password_hash = env.get(PASSWORD_HASH_ENV, "").strip() or None
        token = env.get(TOKEN_ENV, "").strip() or None
        if bool(user) != bool(password_hash):
            raise AuthConfigError(f"set both {USER_ENV} and {PASSWORD_HASH_ENV}, or neither")
        if password_hash and not _HASH_FORMAT.fullmatch(password_hash):
            raise AuthConfigError(
                f"{PASSWORD_HASH_ENV} is not a werkzeug password hash; make one with "
                "python -c 'from werkzeug.security import generate_password_hash as g; "
                "print(g(input()))'"
            )
        if token and len(token) < MIN_TOKEN_LENGTH:
            raise AuthConfigError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters")
        return cls(user, password_hash, token)

    def check_password(self, user: str, password: str) -> bool:
        """True for the configured user and password (constant time for the user name)."""
        if not self.user or not self.password_hash:
            return False
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        password_ok = check_password_hash(self.password_hash, password)
        return user_ok and password_ok

    def check_token(self, token: str) -> bool:
        """True for the configured API token."""
        return bool(self.token) and hmac.compare_digest(token.encode(), str(self.token).encode())


def require_login_configured(config: AuthConfig, app_name: str) -> None:
    """Raise AuthConfigError when an app that must not run open has no login configured."""
    if not config.user:
        raise AuthConfigError(
            f"{app_name} requires a login: set {USER_ENV} and {PASSWORD_HASH_ENV} "
            "(see .env.template)"
        )


class _FailureLog:
    """Failed sign-ins per client address; more than MAX_FAILURES in the window blocks it."""

    def __init__(self) -> None:
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        with self._lock:
            events = self._recent(client)
            return len(events) >= MAX_FAILURES

    def add(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(time.monotonic())

    def clear(self, client: str) -> None:
        with self._lock:
            self._events.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        events = self._events.setdefault(client, deque(maxlen=MAX_FAILURES * 2))
        cutoff = time.monotonic() - FAILURE_WINDOW_S
        while events and events[0] < cutoff:
            events.popleft()
        return events


@dataclass
class _AuthState:
    config: AuthConfig
    public_endpoints: frozenset[str]
    token_prefixes: tuple[str, ...]
    failures: _FailureLog


bp = Blueprint("auth", __name__, template_folder="templates")


def install_auth(
    app: Flask,
    config: AuthConfig,
    *,
    cookie_name: str,
    public_endpoints: Iterable[str] = (),
    token_prefixes: Iterable[str] = ("/api/",),
) -> None:
    """Protect every route of ``app`` except ``public_endpoints``, the login page and static files.

    Browsers sign in on ``/login`` (a session cookie named ``cookie_name``); requests under
    ``token_prefixes`` may instead send the API token. Unauthenticated page requests are redirected
    to the login page; other requests get 401 JSON. CSRF tokens are checked on every unsafe method.
    """
    app.secret_key = os.environ.get(SECRET_KEY_ENV) or secrets.token_bytes(32)
    app.config.update(
        SESSION_COOKIE_NAME=cookie_name,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.extensions[_EXTENSION_KEY] = _AuthState(
        config, frozenset(public_endpoints), tuple(token_prefixes), _FailureLog()
    )
    app.register_blueprint(bp)
    app.before_request(_guard)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["auth_user"] = current_user
    app.jinja_env.globals["auth_enabled"] = lambda: config.enabled


def _state() -> _AuthState:
    from flask import current_app

    state: _AuthState = current_app.extensions[_EXTENSION_KEY]
    return state


def current_user() -> str | None:
    """The signed-in user of this request's session, if any."""
    user = session.get("user")
    return user if isinstance(user, str) else None


def csrf_token() -> str:
    """This session's CSRF token (made on first use); put it in every form as ``csrf_token``."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and hmac.compare_digest(sent.encode(), expected.encode())


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _guard() -> ResponseReturnValue | None:
    state = _state()
    endpoint = request.endpoint or ""
    token = _bearer()
    by_token = (
        token is not None
        and state.config.check_token(token)
        and request.path.startswith(state.token_prefixes)
    )
    if request.method in UNSAFE_METHODS and not by_token and not _csrf_ok():
        log.warning("request refused: CSRF token missing or wrong", extra={"path": request.path})
        abort(400, description="The form expired or did not come from this site; reload it.")
    if not state.config.enabled:
        return None
    if endpoint in state.public_endpoints or endpoint in ("auth.login", "static"):
        return None
    if by_token or current_user() is not None:
        return None
    if request.path.startswith(state.token_prefixes) or request.method != "GET":
        response = jsonify(error="authentication required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="mfgvision"'
        return response
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirects)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Sign-in form; the user/password pair, or the API token when no user is configured."""
    state = _state()
    config = state.config
    next_url = safe_next(request.values.get("next"))
    if not config.enabled:
        return redirect(next_url)
    error = None
    status = 200
    if request.method == "POST":
        client = request.remote_addr or "unknown"
        user = request.form.get("user", "")[:200]
        secret = request.form.get("password", "")[:1000]
        if state.failures.blocked(client):
            error, status = "Too many failed sign-ins. Wait a few minutes and try again.", 429
        elif (config.user and config.check_password(user, secret)) or (
            not config.user and config.check_token(secret)
        ):
            state.failures.clear(client)
            session.clear()
            session.permanent = True
            session["user"] = config.user or "token"
            log.info("signed in", extra={"user": session["user"], "client": client})
            return redirect(next_url)
        else:
            state.failures.add(client)
            log.warning("sign-in refused", extra={"client": client})
            error, status = "Wrong user name or password.", 401
    return (
        render_template(
            "web_login.html",
            next_url=next_url,
            error=error,
            token_only=not config.user,
            title=_app_title(),
        ),
        status,
    )


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (POST with the CSRF token, so a link elsewhere cannot sign you out)."""
    session.clear()
    return redirect(url_for("auth.login"))


def _app_title() -> str:
    from flask import current_app

    title = current_app.config.get("MFGVISION_TITLE", "mfgvision")
    return str(title)
