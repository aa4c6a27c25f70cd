"""The suite's modules: which commands exist, how each one's service is built and which inputs and
outputs its code handles.

The command line, the demo runners, the manifest checks and the edgeHub stand-in all read this one
table. Builders import the rooms of most modules only when called.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mfgvision.cis.messages import OUTPUTS as CIS_OUTPUTS
from mfgvision.cis.messages import RECEIPTS_INPUT, TRIGGER_INPUT
from mfgvision.edge.hub import Hub
from mfgvision.image_upload.service import RECEIPTS_OUTPUT, UPLOAD_INPUT
from mfgvision.line_bridge.service import INFERENCE_INPUT, TRIGGER_OUTPUT
from mfgvision.metrics.modules import (
    StatusReader,
    read_cis,
    read_file_cleanup,
    read_file_transfer,
    read_image_upload,
    read_line_bridge,
    read_model_repo,
)
from mfgvision.metrics.server import ModuleWatch, Reporting
from mfgvision.runtime import Paths, Service
from mfgvision.settings import (
    CisSettings,
    FileCleanupSettings,
    ImageUploadSettings,
    LineBridgeSettings,
    ModelRepoSettings,
    ModuleSettings,
)
from mfgvision.store.database import Database

if TYPE_CHECKING:
    from mfgvision.twin_config.registry import TwinRegistry


@dataclass
class ModuleContext:
    """What a module gets from whoever runs it."""

    hub: Hub
    paths: Paths
    db_url: str
    dashboard_host: str | None = None
    dashboard_port: int | None = None
    twin_registry: TwinRegistry | None = None
    twin_config_port: int | None = None


def _cis(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.cis.service import CisService

    return CisService(ctx.hub, ctx.paths, Database(ctx.db_url))


def _image_upload(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.image_upload.service import ImageUploadService

    # Blob Storage when MFGVISION_STORAGE_CONNECTION_STRING is set, else the local blobs folder.
    return ImageUploadService(ctx.hub, ctx.paths.images, blobs_dir=ctx.paths.blobs)


def _line_bridge(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.line_bridge.service import LineBridgeService

    return LineBridgeService(ctx.hub, ctx.paths)


def _file_cleanup(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.file_cleanup.service import FileCleanupService

    return FileCleanupService(ctx.hub, ctx.paths, Database(ctx.db_url))


def _file_upload(ctx: ModuleContext, args: list[str]) -> Service:
    from mfgvision.file_transfer.module import build_file_upload

    return build_file_upload(ctx.hub, ctx.paths, args)


def _file_download(ctx: ModuleContext, args: list[str]) -> Service:
    from mfgvision.file_transfer.module import build_file_download

    return build_file_download(ctx.hub, ctx.paths, args)


def _model_repo(ctx: ModuleContext, _args: list[str]) -> Service:
    from mfgvision.model_repo.service import ModelRepoService

    return ModelRepoService(ctx.hub, ctx.paths)


def _host_port(args: list[str], port: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    known, _ = parser.parse_known_args(args)
    return known


def _dashboard(ctx: ModuleContext, args: list[str]) -> Service:
    from mfgvision.dashboard.server import DashboardServer

    known = _host_port(args, 23000)
    host = ctx.dashboard_host or known.host
    port = ctx.dashboard_port if ctx.dashboard_port is not None else known.port
    return DashboardServer(Database(ctx.db_url), ctx.paths.images, host, port)


def _twin_config(ctx: ModuleContext, args: list[str]) -> Service:
    """The twin configuration tool: over the registry it is given (the demo's in-process twins),
    else over IoT Hub."""
    from mfgvision.twin_config.registry import CloudRegistry
    from mfgvision.twin_config.server import TwinConfigServer, demo_auth

    known = _host_port(args, 22000)
    registry = ctx.twin_registry or CloudRegistry.from_env()
    port = ctx.twin_config_port if ctx.twin_config_port is not None else known.port
    return TwinConfigServer(registry, demo_auth(), known.host, port)


@dataclass(frozen=True)
class ModuleKind:
    """One command of the suite that runs as a module: how its service is built, the settings its
    twin's desired properties validate into, the inputs its code handles and the outputs it
    sends, named by the constants that code uses (``mfgvision check-manifest`` holds every route and
    twin to them), and what its ``status()`` gives to ``/metrics``."""

    build: Callable[[ModuleContext, list[str]], Service]
    settings: type[ModuleSettings] | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    metrics: StatusReader | None = None


MODULES: dict[str, ModuleKind] = {
    "cis": ModuleKind(
        _cis,
        CisSettings,
        inputs=(TRIGGER_INPUT, RECEIPTS_INPUT),
        outputs=CIS_OUTPUTS,
        metrics=read_cis,
    ),
    "image-upload": ModuleKind(
        _image_upload,
        ImageUploadSettings,
        inputs=(UPLOAD_INPUT,),
        outputs=(RECEIPTS_OUTPUT,),
        metrics=read_image_upload,
    ),
    "line-bridge": ModuleKind(
        _line_bridge,
        LineBridgeSettings,
        inputs=(INFERENCE_INPUT,),
        outputs=(TRIGGER_OUTPUT,),
        metrics=read_line_bridge,
    ),
    "dashboard": ModuleKind(_dashboard),
    "twin-config": ModuleKind(_twin_config),
    "file-cleanup": ModuleKind(_file_cleanup, FileCleanupSettings, metrics=read_file_cleanup),
    "file-upload": ModuleKind(_file_upload, metrics=read_file_transfer),
    "file-download": ModuleKind(_file_download, metrics=read_file_transfer),
    "model-repo": ModuleKind(_model_repo, ModelRepoSettings, metrics=read_model_repo),
}


def build_module(command: list[str], ctx: ModuleContext) -> Service | None:
    """The service for ``command`` (e.g. ``["cis"]``), or None when it is not one of ours."""
    if not command or command[0] not in MODULES:
        return None
    return MODULES[command[0]].build(ctx, command[1:])


def module_watch(command: list[str], ctx: ModuleContext, service: Service) -> ModuleWatch:
    """What ``/metrics`` reads of ``service``, built for ``command`` with ``ctx``."""
    status = service.status if isinstance(service, Reporting) else None
    return ModuleWatch(ctx.hub.module_id, command[0], ctx.hub, status, MODULES[command[0]].metrics)
