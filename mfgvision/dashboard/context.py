"""What every dashboard view needs, kept on the Flask app instead of in globals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flask import current_app

from mfgvision.store.database import Database

if TYPE_CHECKING:
    from mfgvision.dashboard.live import LiveView
    from mfgvision.dashboard.stats import Rollup
    from mfgvision.dashboard.thumbnails import ThumbnailCache

EXTENSION_KEY = "mfgvision.dashboard"


@dataclass(frozen=True)
class DashboardContext:
    """The database, the image, status and drift folders (resolved), the page title, the
    statistics rollup, the thumbnail cache and the live streams of one dashboard app."""

    db: Database
    images_dir: Path
    title: str
    status_dir: Path
    drift_dir: Path
    rollup: Rollup
    thumbnails: ThumbnailCache
    live: LiveView


def dashboard_context() -> DashboardContext:
    """The context of the app handling the current request."""
    context: DashboardContext = current_app.extensions[EXTENSION_KEY]
    return context
