"""Security headers on every response of the web apps, and no caching of dynamic data."""

from __future__ import annotations

from collections.abc import Collection

from flask import Flask, Response, request


def install_security_headers(
    app: Flask, content_security_policy: str, cacheable: Collection[str] = ("static",)
) -> None:
    """Every response of ``app`` gets nosniff, the given content security policy, no referrer and no
    framing; responses of endpoints not in ``cacheable``, and every error, are marked ``no-store``."""

    def add_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", content_security_policy)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.endpoint not in cacheable or response.status_code >= 400:
            response.headers["Cache-Control"] = "no-store"
        return response

    app.after_request(add_headers)
