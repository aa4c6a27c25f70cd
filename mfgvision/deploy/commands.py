"""Command-line glue for ``mfgvision edgehub`` and ``mfgvision check-manifest``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_STATE = Path(os.environ.get("MFGVISION_EDGEHUB_STATE", "data/edgehub"))
MODULE_HELP = "module name as the manifest has it, e.g. CIS1"


def add_edgehub_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help="folder for the stand-in's CA, brokers and twins (default %(default)s)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=Path("deployment.template.json"),
        help="deployment manifest",
    )
    parser.add_argument(
        "--address-base",
        default=os.environ.get("MFGVISION_EDGEHUB_ADDRESS", "127.0.0.2"),
        help="loopback address of the first module's broker; the next modules get the next ones",
    )
    actions = parser.add_subparsers(dest="action")
    serve = actions.add_parser("serve", help="run the stand-in (the default action)")
    serve.add_argument(
        "--no-brokers",
        action="store_true",
        help="brokers are started by someone else (docker compose) from the configs 'init' wrote",
    )
    serve.add_argument("--upstream", type=Path, help="JSON-lines file for $upstream messages")
    serve.add_argument(
        "--no-sessions",
        action="store_true",
        help="keep no MQTT sessions: a restart loses every module's subscriptions, as an edgeHub "
        "that restarts with a clean state does (for testing reconnections)",
    )
    init = actions.add_parser(
        "init", help="write certificates, broker configs and twins, then exit"
    )
    init.add_argument("--broker-uid", type=int, help="uid:gid the brokers run as (compose images)")
    env = actions.add_parser("env", help="print the environment a module needs to connect")
    env.add_argument("module", help=MODULE_HELP)
    twin = actions.add_parser("twin", help="show a module twin")
    twin.add_argument("module", help=MODULE_HELP)
    patch = actions.add_parser("patch", help="patch a module's desired properties")
    patch.add_argument("module", help=MODULE_HELP)
    patch.add_argument("patch", help="JSON object, e.g. '{\"prob_threshold\": 0.7}'")
    call = actions.add_parser("call", help="call a direct method of a module")
    call.add_argument("module", help=MODULE_HELP)
    call.add_argument("method", help="direct method name, e.g. run_now")
    call.add_argument("payload", nargs="?", default="null", help="JSON payload (default null)")
    call.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the module's answer (default: %(default)s)",
    )


def _standin(args: argparse.Namespace, **kwargs: Any):
    from mfgvision.deploy.standin import EdgeHubStandIn
    from mfgvision.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    return EdgeHubStandIn(manifest, args.state, address_base=args.address_base, **kwargs)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{what} is not JSON: {exc}") from None


def edgehub_main(args: argparse.Namespace) -> int:
    from mfgvision.deploy.broker import RunAs
    from mfgvision.deploy.control import ControlClient, StandInError
    from mfgvision.deploy.twin_store import TwinStore
    from mfgvision.runtime import run_until_signalled

    action = args.action or "serve"
    try:
        if action == "serve":
            standin = _standin(
                args,
                run_brokers=not getattr(args, "no_brokers", False),
                upstream_file=getattr(args, "upstream", None),
                sessions=not getattr(args, "no_sessions", False),
            )
            standin.prepare()
            print(f"edgeHub stand-in: state in {standin.state}", flush=True)
            for module, address in standin.addresses.items():
                print(f"  {module}: broker {address}:8883", flush=True)
            print(
                f"  module environment: mfgvision edgehub --state {args.state} env MODULE",
                flush=True,
            )
            return run_until_signalled([standin])
        if action == "init":
            run_as = (
                RunAs("mosquitto", args.broker_uid, args.broker_uid) if args.broker_uid else None
            )
            standin = _standin(args, run_brokers=False, broker_run_as=run_as)
            standin.prepare()
            print(
                json.dumps({m: b.config.as_posix() for m, b in standin.brokers.items()}, indent=1)
            )
            return 0
        if action == "env":
            standin = _standin(args)
            standin.prepare()
            for key, value in standin.module_environment(args.module).items():
                print(f"export {key}='{value}'")
            return 0
        client = ControlClient.from_state(args.state)
        if action == "twin":
            twin = (
                client.twin(args.module)
                if client
                else TwinStore(args.state / "twins.json").twin(args.module)
            )
            print(json.dumps(twin, indent=2))
            return 0
        if action == "patch":
            patch = _json_arg(args.patch, "the patch")
            if client is None:
                version, _ = TwinStore(args.state / "twins.json").patch_desired(args.module, patch)
                print(f"stand-in not running: patch saved as $version {version}", file=sys.stderr)
            else:
                version = client.patch(args.module, patch)
            print(json.dumps({"$version": version}))
            return 0
        if action == "call":
            if client is None:
                raise StandInError(f"no edgeHub stand-in is running on {args.state}")
            status, payload = client.call(
                args.module, args.method, _json_arg(args.payload, "the payload"), args.timeout
            )
            print(json.dumps({"status": status, "payload": payload}, indent=2))
            return 0 if 200 <= status < 300 else 1
    except (StandInError, ValueError) as exc:
        print(f"mfgvision edgehub {action}: {exc}", file=sys.stderr)
        return 2
    raise SystemExit(f"unknown action {action}")


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    from mfgvision.deploy.checks import DEFAULT_PLATFORM, PLATFORMS

    parser.add_argument(
        "manifest", type=Path, help="deployment template, e.g. deployment.template.json"
    )
    parser.add_argument(
        "--env-template",
        type=Path,
        help="where every ${VAR} must be defined (default: .env.template beside the manifest)",
    )
    parser.add_argument(
        "--platform",
        choices=PLATFORMS,
        default=DEFAULT_PLATFORM,
        help="platform the ${MODULES.X} images resolve to, by the tags of each module.json "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="also write the deployable manifest (variables from .env and the environment)",
    )


def check_main(args: argparse.Namespace) -> int:
    from mfgvision.deploy.checks import (
        CheckError,
        check_expanded,
        check_manifest,
        expand_deployment,
        variables_for_deploy,
        write_expanded,
    )

    problems = check_manifest(args.manifest, args.env_template, args.platform)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.manifest}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.manifest}: OK ({args.platform})")
    if args.output:
        try:
            manifest = expand_deployment(
                args.manifest, variables_for_deploy(args.manifest), args.platform
            )
        except CheckError as exc:
            print(f"{args.manifest}: {exc} (set it in .env or the environment)", file=sys.stderr)
            return 1
        problems = check_expanded(manifest, str(args.output))
        for problem in problems:
            print(problem)
        write_expanded(manifest, args.output)
        print(f"wrote {args.output}")
        return 1 if problems else 0
    return 0
