"""What every dashboard view needs, kept on the Flask app instead of in globals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from mfgvision.store.database import Database

EXTENSION_KEY = "mfgvision.dashboard"


@dataclass(frozen=True)
class DashboardContext:
    """The database, the image folder (resolved) and the page title of one dashboard app."""

    db: Database
    images_dir: Path
    title: str


def dashboard_context() -> DashboardContext:
    """The context of the app handling the current request."""
    context: DashboardContext = current_app.extensions[EXTENSION_KEY]
    return context
