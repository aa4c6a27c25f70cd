"""``mfgvision <command>``: every module of the suite and the tools around it."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from mfgvision import __version__
from mfgvision.logs import configure_logging


def _run_module(args: argparse.Namespace) -> int:
    from mfgvision.launch import run_module

    return run_module([args.command, *args.module_args], args.desired, args.duration)


def _demo(args: argparse.Namespace) -> int:
    if args.edge:
        from mfgvision.local.edge_demo import edge_demo_main

        return edge_demo_main(args.manifest, args.data_dir, args.duration, args.port)
    from mfgvision.local.demo import demo_main

    return demo_main(args.manifest, args.data_dir, args.duration, args.port)


def _twin_config(args: argparse.Namespace) -> int:
    from mfgvision.twin_config.server import twin_config_main

    if args.edgehub_state is None:
        return twin_config_main(args)
    from mfgvision.deploy.twin_registry import StandInRegistry
    from mfgvision.runtime import Paths

    data = args.data_dir or args.edgehub_state.parent
    paths = dataclasses.replace(Paths.from_env(), data=data)
    registry = StandInRegistry(args.edgehub_state, args.manifest, images=paths.images)
    return twin_config_main(args, registry)


def _file_upload(args: argparse.Namespace) -> int:
    from mfgvision.file_transfer.commands import file_upload_main
    from mfgvision.launch import run_module

    return file_upload_main(args, run_module)


def _file_download(args: argparse.Namespace) -> int:
    from mfgvision.file_transfer.commands import file_download_main
    from mfgvision.launch import run_module

    return file_download_main(args, run_module)


def _add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--manifest",
        type=Path,
        default=Path("deployment.template.json"),
        help="deployment manifest whose modules run (default: %(default)s)",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data/demo"),
        help="where the database, images, uploads and status files go (default: %(default)s)",
    )
    demo.add_argument(
        "--duration", type=float, default=None, help="stop after S seconds (default: at Ctrl-C)"
    )
    demo.add_argument(
        "--port", type=int, default=23000, help="dashboard port (a free one if taken)"
    )
    demo.add_argument(
        "--edge",
        action="store_true",
        help="one process per module on the IoT Edge client, through the edgeHub stand-in",
    )
    demo.set_defaults(func=_demo)


def _add_module(module: argparse.ArgumentParser) -> None:
    module.add_argument("--desired", type=Path, help="desired properties (JSON/YAML) when no hub")
    module.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after S seconds (default: at SIGTERM or Ctrl-C)",
    )
    module.add_argument(
        "module_args",
        nargs=argparse.REMAINDER,
        help="further arguments from the manifest's Cmd; this module takes its settings "
        "from its twin and ignores them",
    )
    module.set_defaults(func=_run_module)


def _add_file_upload(upload: argparse.ArgumentParser) -> None:
    from mfgvision.file_transfer.module import add_file_upload_arguments

    add_file_upload_arguments(upload)
    upload.set_defaults(func=_file_upload)


def _add_file_download(download: argparse.ArgumentParser) -> None:
    from mfgvision.file_transfer.module import add_file_download_arguments

    add_file_download_arguments(download)
    download.set_defaults(func=_file_download)


def _add_dashboard(dashboard: argparse.ArgumentParser) -> None:
    from mfgvision.dashboard.server import add_dashboard_arguments, dashboard_main

    add_dashboard_arguments(dashboard)
    dashboard.set_defaults(func=dashboard_main)


def _add_twin_config(twin_config: argparse.ArgumentParser) -> None:
    from mfgvision.twin_config.server import add_twin_config_arguments

    add_twin_config_arguments(twin_config)
    twin_config.set_defaults(func=_twin_config)


def _add_infer(infer: argparse.ArgumentParser) -> None:
    from mfgvision.inference.commands import add_infer_arguments, infer_main

    add_infer_arguments(infer)
    infer.set_defaults(func=infer_main)


def _add_eval(evaluate: argparse.ArgumentParser) -> None:
    from mfgvision.evaluation import add_eval_arguments, eval_main

    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=eval_main)


def _add_export(export: argparse.ArgumentParser) -> None:
    from mfgvision.dataset_export import add_export_arguments, export_main

    add_export_arguments(export)
    export.set_defaults(func=export_main)


def _add_edgehub(edgehub: argparse.ArgumentParser) -> None:
    from mfgvision.deploy.commands import add_edgehub_arguments, edgehub_main

    add_edgehub_arguments(edgehub)
    edgehub.set_defaults(func=edgehub_main)


def _add_check(check: argparse.ArgumentParser) -> None:
    from mfgvision.deploy.commands import add_check_arguments, check_main

    add_check_arguments(check)
    check.set_defaults(func=check_main)


def _add_compose(compose: argparse.ArgumentParser) -> None:
    from mfgvision.deploy.compose import add_compose_arguments, compose_main

    add_compose_arguments(compose)
    compose.set_defaults(func=compose_main)


#: Every command: its help line and what adds its arguments (importing only that command's room).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "demo": ("run the deployment manifest's modules on this machine", _add_demo),
    "cis": ("capture, inference and store for one camera or several", _add_module),
    "image-upload": ("copy stored images to blob storage", _add_module),
    "line-bridge": (
        "each camera's verdict to the line (OPC UA, Modbus TCP, MQTT), triggers from it",
        _add_module,
    ),
    "file-cleanup": ("image retention by age and disk watermark, old rows pruned", _add_module),
    "model-repo": (
        "seed shipped models into the model volume and validate every version",
        _add_module,
    ),
    "file-upload": ("upload a folder tree to a blob container", _add_file_upload),
    "file-download": ("sync a models container into the model volume", _add_file_download),
    "dashboard": ("serve the dashboard", _add_dashboard),
    "twin-config": ("edit module twins (camera settings) in a browser", _add_twin_config),
    "infer": ("run a model on images and print detections", _add_infer),
    "eval": (
        "mAP50 and per-class AP, precision and recall of a model on a labelled dataset",
        _add_eval,
    ),
    "export-dataset": (
        "the retraining set (kept frames, operator corrections) as a YOLO and COCO dataset",
        _add_export,
    ),
    "edgehub": ("local edgeHub stand-in: twins, methods, routes", _add_edgehub),
    "check-manifest": ("check a deployment template offline", _add_check),
    "compose": ("write a docker-compose file from the manifest", _add_compose),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, only that command's arguments are added (the
    others are listed with their help line), so running a module imports no other room."""
    parser = argparse.ArgumentParser(prog="mfgvision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mfgvision {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("MFGVISION_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default: $MFGVISION_LOG_LEVEL, else INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_arguments) in COMMANDS.items():
        subparser = sub.add_parser(name, help=text)
        if command is None or command == name:
            add_arguments(subparser)
    return parser


def chosen_command(argv: list[str] | None) -> str | None:
    """The command ``argv`` names, when it is one of ours (else None: the whole parser is built)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--log-level")
    first.add_argument("command", nargs="?")
    known, _ = first.parse_known_args(argv)
    return known.command if known.command in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser(chosen_command(argv)).parse_args(argv)
    configure_logging(args.command, args.log_level)
    return int(args.func(args) or 0)
