"""Running the twin configuration tool: ``mfgvision twin-config`` and the service the demo starts."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from mfgvision.logs import configure_logging
from mfgvision.runtime import run_until_signalled
from mfgvision.twin_config.app import create_app
from mfgvision.twin_config.registry import CloudRegistry, RegistryError, TwinRegistry
from mfgvision.web.auth import AuthConfig, AuthConfigError, require_login_configured
from mfgvision.web.server import SERVER_THREADS, WsgiService

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
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data folder of the stand-in's modules, for each camera's current frame beside its "
        "form (default: the folder above --edgehub-state, as `demo --edge` lays it out)",
    )


def twin_config_main(args: argparse.Namespace, registry: TwinRegistry | None = None) -> int:
    """Serve the tool over ``registry`` (default: IoT Hub) until SIGINT or SIGTERM; exit 2 when
    login or the registry is not set up."""
    if not logging.getLogger().handlers:
        configure_logging("twin-config")
    try:
        auth = AuthConfig.from_env()
        require_login_configured(auth, "mfgvision twin-config")
        registry = registry or CloudRegistry.from_env()
    except (AuthConfigError, RegistryError) as exc:
        print(f"mfgvision twin-config: {exc}", file=sys.stderr)
        return 2
    server = TwinConfigServer(registry, auth, args.host, args.port)
    return run_until_signalled(
        [server], on_started=lambda: print(f"mfgvision twin-config on {server.url}", flush=True)
    )


class TwinConfigServer(WsgiService):
    """The tool as a service: waitress on its own thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        registry: TwinRegistry,
        auth: AuthConfig,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        threads: int = SERVER_THREADS,
    ) -> None:
        super().__init__("twin-config", host, port, threads)
        self.registry = registry
        self.auth = auth

    def build_app(self) -> Any:
        return create_app(self.registry, self.auth)

    def start(self) -> None:
        super().start()
        log.info("twin configuration tool serving", extra={"url": self.url})

    def stop(self) -> None:
        super().stop()
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
