"""Running the twin configuration tool: ``mfgvision twin-config`` and the service the demo starts."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from waitress import create_server
from waitress.server import BaseWSGIServer, MultiSocketServer

from mfgvision.logs import configure_logging
from mfgvision.runtime import run_until_signalled
from mfgvision.twin_config.app import create_app
from mfgvision.twin_config.registry import (
    CloudRegistry,
    RegistryError,
    StandInRegistry,
    TwinRegistry,
)
from mfgvision.web.auth import AuthConfig, AuthConfigError, require_login_configured

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 22000


def add_twin_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mfgvision twin-config``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)"
    )
    parser.add_argument(
        "--edgehub-state",
        type=Path,
        default=None,
        help="edit the twins of the local edgeHub stand-in kept in this folder "
        "(default: IoT Hub via $MFGVISION_IOTHUB_CONNECTION_STRING)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=Path("deployment.template.json"),
        help="deployment manifest of the stand-in (default: %(default)s)",
    )


def twin_config_main(args: argparse.Namespace) -> int:
    """Serve the tool until SIGINT or SIGTERM; exit 2 when login or the registry is not set up."""
    if not logging.getLogger().handlers:
        configure_logging("twin-config")
    try:
        auth = AuthConfig.from_env()
        require_login_configured(auth, "mfgvision twin-config")
        registry: TwinRegistry = (
            StandInRegistry(args.edgehub_state, args.manifest)
            if args.edgehub_state
            else CloudRegistry.from_env()
        )
    except (AuthConfigError, RegistryError) as exc:
        print(f"mfgvision twin-config: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled([TwinConfigServer(registry, auth, args.host, args.port)])


class TwinConfigServer:
    """The tool as a service: waitress on its own thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        registry: TwinRegistry,
        auth: AuthConfig,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        threads: int = 4,
    ) -> None:
        self.registry = registry
        self.auth = auth
        self.host = host
        self.port = port
        self.threads = threads
        self._server: BaseWSGIServer | MultiSocketServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        app = create_app(self.registry, self.auth)
        self._server = create_server(app, host=self.host, port=self.port, threads=self.threads)
        if isinstance(self._server, BaseWSGIServer):
            self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="twin-config", daemon=True)
        self._thread.start()
        print(f"mfgvision twin-config on {self.url}", flush=True)
        log.info("twin configuration tool serving", extra={"url": self.url})

    def stop(self) -> None:
        if self._server is not None:
            self._server.task_dispatcher.shutdown(timeout=5)
            self._server.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        log.info("twin configuration tool stopped")


DEMO_USER = "demo"


def demo_auth() -> AuthConfig:
    """The login from the environment, else a one-off ``demo`` user whose password is printed.

    Only the single-process demo uses this: ``mfgvision twin-config`` itself refuses to start
    without a configured login.
    """
    import secrets

    from werkzeug.security import generate_password_hash

    try:
        auth = AuthConfig.from_env()
    except AuthConfigError as exc:
        raise SystemExit(f"twin configuration: {exc}") from None
    if auth.user:
        return auth
    password = secrets.token_urlsafe(9)
    print(
        f"Twin configuration login (demo only): user '{DEMO_USER}', password '{password}'",
        flush=True,
    )
    return AuthConfig(DEMO_USER, generate_password_hash(password), auth.token)
