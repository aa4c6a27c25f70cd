"""Build a module's service from its command line, as its container image would run it."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mfgvision.cis.messages import OUTPUTS as CIS_OUTPUTS
from mfgvision.cis.service import TRIGGER_INPUT, CisService
from mfgvision.dashboard.server import DashboardServer
from mfgvision.edge.hub import Hub
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.manifest import Manifest
from mfgvision.image_upload.service import UPLOAD_INPUT, ImageUploadService
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
    broker: InProcessBroker | None = None
    manifest: Manifest | None = None
    twin_config_port: int | None = None


def _cis(ctx: ModuleContext, _args: list[str]) -> Service:
    return CisService(ctx.hub, ctx.paths, Database(ctx.db_url))


def _image_upload(ctx: ModuleContext, _args: list[str]) -> Service:
    # Blob Storage when MFGVISION_STORAGE_CONNECTION_STRING is set, else the local blobs folder.
    return ImageUploadService(ctx.hub, ctx.paths.images, blobs_dir=ctx.paths.blobs)


def _file_cleanup(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.file_cleanup.service import FileCleanupService

    return FileCleanupService(ctx.hub, ctx.paths, Database(ctx.db_url))


def _file_upload(ctx: ModuleContext, args: list[str]) -> Service:
    from mfgvision.file_transfer.cli import build_file_upload

    return build_file_upload(ctx.hub, ctx.paths, args)


def _file_download(ctx: ModuleContext, args: list[str]) -> Service:
    from mfgvision.file_transfer.cli import build_file_download

    return build_file_download(ctx.hub, ctx.paths, args)


def _model_repo(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.model_repo.service import ModelRepoService

    return ModelRepoService(ctx.hub, ctx.paths)


def _dashboard(ctx: ModuleContext, args: list[str]) -> Service:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23000)
    known, _ = parser.parse_known_args(args)
    host = ctx.dashboard_host or known.host
    port = ctx.dashboard_port if ctx.dashboard_port is not None else known.port
    return DashboardServer(Database(ctx.db_url), ctx.paths.images, host, port)


def _twin_config(ctx: ModuleContext, args: list[str]) -> Service:
    """The twin configuration tool; over the in-process broker when run by ``mfgvision demo``."""
    from mfgvision.twin_config.registry import CloudRegistry, LocalRegistry, TwinRegistry
    from mfgvision.twin_config.server import TwinConfigServer, demo_auth

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=22000)
    known, _ = parser.parse_known_args(args)
    registry: TwinRegistry
    if ctx.broker is not None and ctx.manifest is not None:
        commands = {name: spec.command for name, spec in ctx.manifest.modules.items()}
        registry = LocalRegistry(ctx.broker, ctx.manifest.raw, commands)
    else:
        registry = CloudRegistry.from_env()
    port = ctx.twin_config_port if ctx.twin_config_port is not None else known.port
    return TwinConfigServer(registry, demo_auth(), known.host, port)


BUILDERS: dict[str, Callable[[ModuleContext, list[str]], Service]] = {
    "cis": _cis,
    "image-upload": _image_upload,
    "dashboard": _dashboard,
    "twin-config": _twin_config,
    "file-cleanup": _file_cleanup,
    "file-upload": _file_upload,
    "file-download": _file_download,
    "model-repo": _model_repo,
}


@dataclass(frozen=True)
class Endpoints:
    """The inputs a module's code handles and the outputs it sends, named by the constants that
    code uses; ``mfgvision check-manifest`` holds every route to them."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


ENDPOINTS: dict[str, Endpoints] = {
    "cis": Endpoints(inputs=(TRIGGER_INPUT,), outputs=CIS_OUTPUTS),
    "image-upload": Endpoints(inputs=(UPLOAD_INPUT,)),
    "dashboard": Endpoints(),
    "twin-config": Endpoints(),
    "file-cleanup": Endpoints(),
    "file-upload": Endpoints(),
    "file-download": Endpoints(),
    "model-repo": Endpoints(),
}


def build_module(command: list[str], ctx: ModuleContext) -> Service | None:
    """The service for ``command`` (e.g. ``["cis"]``), or None when it is not one of ours."""
    if not command or command[0] not in BUILDERS:
        return None
    return BUILDERS[command[0]](ctx, command[1:])
