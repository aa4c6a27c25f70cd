"""``mfgvision <command>``: every module of the suite and the tools around it."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mfgvision import __version__
from mfgvision.logs import configure_logging


def _load_desired(path: Path | None) -> dict:
    """Desired properties for a module run without a hub, from a JSON or YAML file."""
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def _run_module(args: argparse.Namespace) -> int:
    """Run one module on its own, its outputs appended to ``<data>/<module>-outputs.jsonl``."""
    from mfgvision.edge.inprocess import InProcessBroker
    from mfgvision.edge.routes import Route
    from mfgvision.local.modules import ModuleContext, build_module
    from mfgvision.runtime import Paths, run_until_signalled
    from mfgvision.store.database import database_url_from_env

    paths = Paths.from_env()
    paths.data.mkdir(parents=True, exist_ok=True)
    module_id = os.environ.get("IOTEDGE_MODULEID", args.command)
    broker = InProcessBroker(
        [Route("outputs", module_id, None, None, None)],
        upstream_file=paths.data / f"{module_id}-outputs.jsonl",
    )
    hub = broker.hub(module_id, _load_desired(args.desired))
    ctx = ModuleContext(hub, paths, database_url_from_env(paths.default_db_path))
    service = build_module([args.command, *args.module_args], ctx)
    assert service is not None
    return run_until_signalled([service], args.duration)


def _demo(args: argparse.Namespace) -> int:
    from mfgvision.local.demo import demo_main

    return demo_main(args.manifest, args.data_dir, args.duration, args.port)


def build_parser() -> argparse.ArgumentParser:
    from mfgvision.dashboard.server import add_dashboard_arguments, dashboard_main
    from mfgvision.evaluation import add_eval_arguments, eval_main
    from mfgvision.inference.commands import add_infer_arguments, infer_main

    parser = argparse.ArgumentParser(prog="mfgvision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mfgvision {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("MFGVISION_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the deployment manifest's modules on this machine")
    demo.add_argument("--manifest", type=Path, default=Path("deployment.template.json"))
    demo.add_argument("--data-dir", type=Path, default=Path("data/demo"))
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    demo.add_argument(
        "--port", type=int, default=23000, help="dashboard port (a free one if taken)"
    )
    demo.set_defaults(func=_demo)

    for name, text in (
        ("cis", "capture, inference and store for one camera"),
        ("image-upload", "copy stored images to blob storage"),
    ):
        module = sub.add_parser(name, help=text)
        module.add_argument(
            "--desired", type=Path, help="desired properties (JSON/YAML) when no hub"
        )
        module.add_argument("--duration", type=float, default=None)
        module.add_argument("module_args", nargs=argparse.REMAINDER)
        module.set_defaults(func=_run_module)

    dashboard = sub.add_parser("dashboard", help="serve the dashboard")
    add_dashboard_arguments(dashboard)
    dashboard.set_defaults(func=dashboard_main)

    infer = sub.add_parser("infer", help="run a model on images and print detections")
    add_infer_arguments(infer)
    infer.set_defaults(func=infer_main)

    evaluate = sub.add_parser("eval", help="mAP50 of a model on a YOLO-format dataset")
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=eval_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.command, args.log_level)
    return int(args.func(args) or 0)
