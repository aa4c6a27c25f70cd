"""``mfgvision <command>``: every module of the suite and the tools around it."""

from __future__ import annotations

import argparse
import dataclasses
import os
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


def build_parser() -> argparse.ArgumentParser:
    from mfgvision.dashboard.server import add_dashboard_arguments, dashboard_main
    from mfgvision.dataset_export import add_export_arguments, export_main
    from mfgvision.deploy.commands import (
        add_check_arguments,
        add_edgehub_arguments,
        check_main,
        edgehub_main,
    )
    from mfgvision.deploy.compose import add_compose_arguments, compose_main
    from mfgvision.evaluation import add_eval_arguments, eval_main
    from mfgvision.inference.commands import add_infer_arguments, infer_main

    parser = argparse.ArgumentParser(prog="mfgvision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mfgvision {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("MFGVISION_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default: $MFGVISION_LOG_LEVEL, else INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the deployment manifest's modules on this machine")
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

    for name, text in (
        ("cis", "capture, inference and store for one camera or several"),
        ("image-upload", "copy stored images to blob storage"),
        ("line-bridge", "each camera's verdict to the line (MQTT), triggers from it"),
        ("file-cleanup", "image retention by age and disk watermark, old rows pruned"),
        ("model-repo", "seed shipped models into the model volume and validate every version"),
    ):
        module = sub.add_parser(name, help=text)
        module.add_argument(
            "--desired", type=Path, help="desired properties (JSON/YAML) when no hub"
        )
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

    from mfgvision.file_transfer.module import (
        add_file_download_arguments,
        add_file_upload_arguments,
    )

    upload = sub.add_parser("file-upload", help="upload a folder tree to a blob container")
    add_file_upload_arguments(upload)
    upload.set_defaults(func=_file_upload)
    download = sub.add_parser("file-download", help="sync a models container into the model volume")
    add_file_download_arguments(download)
    download.set_defaults(func=_file_download)

    dashboard = sub.add_parser("dashboard", help="serve the dashboard")
    add_dashboard_arguments(dashboard)
    dashboard.set_defaults(func=dashboard_main)

    from mfgvision.twin_config.server import add_twin_config_arguments

    twin_config = sub.add_parser(
        "twin-config", help="edit module twins (camera settings) in a browser"
    )
    add_twin_config_arguments(twin_config)
    twin_config.set_defaults(func=_twin_config)

    infer = sub.add_parser("infer", help="run a model on images and print detections")
    add_infer_arguments(infer)
    infer.set_defaults(func=infer_main)

    evaluate = sub.add_parser(
        "eval", help="mAP50 and per-class AP, precision and recall of a model on a labelled dataset"
    )
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=eval_main)

    export = sub.add_parser(
        "export-dataset",
        help="the retraining set (kept frames, operator corrections) as a YOLO and COCO dataset",
    )
    add_export_arguments(export)
    export.set_defaults(func=export_main)

    edgehub = sub.add_parser("edgehub", help="local edgeHub stand-in: twins, methods, routes")
    add_edgehub_arguments(edgehub)
    edgehub.set_defaults(func=edgehub_main)

    check = sub.add_parser("check-manifest", help="check a deployment template offline")
    add_check_arguments(check)
    check.set_defaults(func=check_main)

    compose = sub.add_parser("compose", help="write a docker-compose file from the manifest")
    add_compose_arguments(compose)
    compose.set_defaults(func=compose_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.command, args.log_level)
    return int(args.func(args) or 0)
