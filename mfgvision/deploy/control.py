"""The control API of a running edgeHub stand-in, as its commands and the twin tool reach it.

The stand-in writes ``<state>/control.json`` (its local URL and a bearer token, readable only by its
user); ``ControlClient`` reads it and reads twins, patches desired properties and calls direct methods.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

METHOD_TIMEOUT_S = 30.0


class StandInError(RuntimeError):
    """The stand-in cannot start or cannot do what was asked."""


class ControlClient:
    """Talks to a running stand-in through its control API."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_state(cls, state: Path) -> ControlClient | None:
        """The client of the stand-in running on ``state``, or None when none is running."""
        try:
            info = json.loads((state / "control.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        client = cls(info["url"], info["token"])
        try:
            client.request("GET", "/modules", timeout=5)
        except OSError:
            return None
        return client

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            except ValueError:
                detail = exc.reason
            raise StandInError(f"{method} {path}: {exc.code} {detail}") from None

    def twin(self, module: str) -> dict[str, Any]:
        return self.request("GET", f"/twins/{urllib.parse.quote(module, safe='')}")

    def patch(self, module: str, patch: Any) -> int:
        answer = self.request(
            "PATCH", f"/twins/{urllib.parse.quote(module, safe='')}/desired", patch
        )
        return int(answer["$version"])

    def call(
        self, module: str, method: str, payload: Any, timeout: float = METHOD_TIMEOUT_S
    ) -> tuple[int, Any]:
        path = (
            f"/methods/{urllib.parse.quote(module, safe='')}/{urllib.parse.quote(method, safe='')}"
            f"?timeout={timeout:g}"
        )
        answer = self.request("POST", path, payload, timeout=timeout + 10)
        return int(answer["status"]), answer["payload"]


def wait_until(check: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``check()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
