"""Running the dashboard: the ``mfgvision dashboard`` command and the dashboard service."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from mfgvision.dashboard.app import create_app
from mfgvision.dashboard.context import EXTENSION_KEY, DashboardContext
from mfgvision.dashboard.live import LiveConfig, LiveView
from mfgvision.dashboard.stats import Rollup
from mfgvision.logs import configure_logging
from mfgvision.metrics.server import MetricsServer, ModuleWatch, served
from mfgvision.runtime import Paths, run_until_signalled
from mfgvision.store.database import Database, database_url_from_env
from mfgvision.web.auth import AuthConfig
from mfgvision.web.server import SERVER_THREADS, WsgiService

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 23000


def add_dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mfgvision dashboard``."""
    parser.add_argument(
        "--db-url",
        default=None,
        help="database URL (default: $MFGVISION_DB_URL, else SQLite in $MFGVISION_DATA)",
    )
    parser.add_argument(
        "--images-dir",
        type=Path,
        default=None,
        help="folder holding the stored images (default: $MFGVISION_DATA/images)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)"
    )
    parser.add_argument("--title", default="mfgvision", help="page title (default: %(default)s)")
    parser.add_argument(
        "--status-dir",
        type=Path,
        default=None,
        help="folder of the camera status files (default: $MFGVISION_DATA/status)",
    )


def dashboard_main(args: argparse.Namespace) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; returns the process exit code (2 when the
    live-view or metrics variables are malformed)."""
    if not logging.getLogger().handlers:
        configure_logging("dashboard")
    try:
        live = LiveConfig.from_env()
        metrics = MetricsServer.from_env()
    except ValueError as exc:  # LiveConfigError is one
        print(f"mfgvision dashboard: {exc}", file=sys.stderr)
        return 2
    paths = Paths.from_env()
    db = Database(args.db_url or database_url_from_env(paths.default_db_path))
    server = DashboardServer(
        db,
        args.images_dir or paths.images,
        args.host,
        args.port,
        args.title,
        status_dir=args.status_dir,
        live=live,
    )
    from mfgvision.edge.iotedge import module_id_from_environment

    watch = ModuleWatch(module_id_from_environment("dashboard"), "dashboard")
    return run_until_signalled(
        served(metrics, [server], watch),
        on_started=lambda: print(f"mfgvision dashboard on {server.url}", flush=True),
    )


class DashboardServer(WsgiService):
    """The dashboard as a service: waitress on its own thread; ``port=0`` picks a free port.

    With the live view on, the server has one more thread per live viewer allowed, so streams
    never hold up the pages and the API; stopping ends the streams first.
    """

    def __init__(
        self,
        db: Database,
        images_dir: Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        title: str = "mfgvision",
        threads: int = SERVER_THREADS,
        status_dir: Path | None = None,
        auth: AuthConfig | None = None,
        live: LiveConfig | None = None,
    ) -> None:
        self.live = live if live is not None else LiveConfig.from_env()
        if self.live.enabled:
            threads += self.live.max_clients
        super().__init__("dashboard", host, port, threads)
        self.live_view: LiveView | None = None
        self.db = db
        self.images_dir = images_dir
        self.status_dir = status_dir
        self.auth = auth
        self.title = title

    def build_app(self) -> Any:
        _prepare_schema(self.db)
        rollup = Rollup(self.db.engine)
        app = create_app(
            self.db,
            self.images_dir,
            title=self.title,
            status_dir=self.status_dir,
            auth=self.auth,
            rollup=rollup,
            live=self.live,
        )
        context: DashboardContext = app.extensions[EXTENSION_KEY]
        self.live_view = context.live
        rollup.warm_up()
        return app

    def start(self) -> None:
        super().start()
        logger.info("dashboard serving", extra={"url": self.url, "threads": self.threads})

    def stop(self) -> None:
        if self.live_view is not None:
            self.live_view.close()
        super().stop()
        self.db.close()
        logger.info("dashboard stopped")


def _prepare_schema(db: Database) -> None:
    """Create missing tables so a fresh install shows its empty state; an unreachable database
    is logged and left to ``/healthz`` so the page still comes up."""
    try:
        db.create_schema()
    except SQLAlchemyError as exc:
        logger.warning("database not ready at start", extra={"error": type(exc).__name__})
