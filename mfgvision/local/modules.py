"""Build a module's service from its command line, as its container image would run it."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mfgvision.cis.service import CisService
from mfgvision.dashboard.server import DashboardServer
from mfgvision.edge.hub import Hub
from mfgvision.image_upload.service import ImageUploadService, LocalFolderTarget
from mfgvision.runtime import Paths, Service
from mfgvision.store.database import Database

log = logging.getLogger(__name__)


@dataclass
class ModuleContext:
    """What a module gets from whoever runs it."""

    hub: Hub
    paths: Paths
    db_url: str
    dashboard_host: str | None = None
    dashboard_port: int | None = None


def _cis(ctx: ModuleContext, _args: list[str]) -> Service:
    return CisService(ctx.hub, ctx.paths, Database(ctx.db_url))


def _image_upload(ctx: ModuleContext, _args: list[str]) -> Service:
    return ImageUploadService(ctx.hub, ctx.paths.images, LocalFolderTarget(ctx.paths.blobs))


def _dashboard(ctx: ModuleContext, args: list[str]) -> Service:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23000)
    known, _ = parser.parse_known_args(args)
    host = ctx.dashboard_host or known.host
    port = ctx.dashboard_port if ctx.dashboard_port is not None else known.port
    return DashboardServer(Database(ctx.db_url), ctx.paths.images, host, port)


BUILDERS: dict[str, Callable[[ModuleContext, list[str]], Service]] = {
    "cis": _cis,
    "image-upload": _image_upload,
    "dashboard": _dashboard,
}


def build_module(command: list[str], ctx: ModuleContext) -> Service | None:
    """The service for ``command`` (e.g. ``["cis"]``), or None when it is not one of ours."""
    if not command or command[0] not in BUILDERS:
        return None
    return BUILDERS[command[0]](ctx, command[1:])
