"""The ``file-upload`` and ``file-download`` modules: their arguments, their jobs and their services.

Each job is one pass of a transfer; as a module it runs again every ``--interval`` seconds with its
status in reported properties.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mfgvision.edge.hub import Hub
from mfgvision.file_transfer.common import TransferReport, blob_service_from_env
from mfgvision.file_transfer.service import PeriodicTransfer
from mfgvision.runtime import Paths

DEFAULT_UPLOAD_CONTAINER = "edge-upload"
DEFAULT_MODELS_CONTAINER = "models"
DEFAULT_INTERVAL_S = 60.0


def _common(parser: argparse.ArgumentParser, container: str) -> None:
    parser.add_argument(
        "--container", default=container, help=f"blob container (default: {container})"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="run as a module: again every S seconds until stopped",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--desired", type=Path, help="with --interval: desired properties (JSON/YAML) when no hub"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="with --interval: stop after S seconds (default: at SIGTERM or Ctrl-C)",
    )


def add_file_upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        help="folder tree to upload (default $MFGVISION_DATA/upload)",
    )
    _common(parser, DEFAULT_UPLOAD_CONTAINER)
    parser.add_argument("--prefix", default="", help="blob name prefix, e.g. line1/")


def add_file_download_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, DEFAULT_MODELS_CONTAINER)
    parser.add_argument(
        "--mode",
        choices=("models", "files"),
        default="models",
        help="models: verified model versions into the model volume; files: every blob as a file",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="target folder (default $MFGVISION_MODELS, or $MFGVISION_DATA/download for files)",
    )


def upload_job(
    folder: Path, container: str, prefix: str, progress: bool
) -> Callable[[], TransferReport]:
    from mfgvision.file_transfer.upload import upload_tree

    def run() -> TransferReport:
        client = blob_service_from_env().get_container_client(container)
        return upload_tree(client, folder, prefix, progress=progress)

    return run


def download_job(
    mode: str, dest: Path, container: str, progress: bool
) -> Callable[[], TransferReport]:
    from mfgvision.file_transfer.download import sync_files, sync_models

    def run() -> TransferReport:
        client = blob_service_from_env().get_container_client(container)
        if mode == "models":
            return sync_models(client, dest, progress=progress)
        return sync_files(client, dest, progress=progress)

    return run


def upload_folder(args: argparse.Namespace, paths: Paths | None = None) -> Path:
    if args.folder is not None:
        return Path(args.folder)
    return (paths or Paths.from_env()).data / "upload"


def download_dest(args: argparse.Namespace, paths: Paths | None = None) -> Path:
    if args.dest is not None:
        return Path(args.dest)
    paths = paths or Paths.from_env()
    return paths.models if args.mode == "models" else paths.data / "download"


def _module_args(
    add: Callable[[argparse.ArgumentParser], None], argv: list[str]
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    add(parser)
    return parser.parse_args(argv)


def build_file_upload(hub: Hub, paths: Paths, argv: list[str]) -> PeriodicTransfer:
    """The ``file-upload`` module (every ``--interval`` seconds, 60 by default)."""
    args = _module_args(add_file_upload_arguments, argv)
    job = upload_job(upload_folder(args, paths), args.container, args.prefix, progress=False)
    return PeriodicTransfer(hub, "file-upload", job, args.interval or DEFAULT_INTERVAL_S)


def build_file_download(hub: Hub, paths: Paths, argv: list[str]) -> PeriodicTransfer:
    """The ``file-download`` module: model sync (or files) every ``--interval`` seconds."""
    args = _module_args(add_file_download_arguments, argv)
    job = download_job(args.mode, download_dest(args, paths), args.container, progress=False)
    return PeriodicTransfer(hub, "file-download", job, args.interval or DEFAULT_INTERVAL_S)
