"""Release to a fleet: the version of a release tag, the IoT Hub deployments of an expanded manifest
and the wait until a device runs them (the release pipelines, docs/deploy.md "Release pipeline").

``python -m mfgvision.deploy.release version v1.2.3`` prints ``1.2.3``;
``... split MANIFEST --platform P --version V --out-dir D`` writes ``D/base.json`` (the runtime: system
modules and registry credentials) and ``D/layer.json`` (the modules, routes and module twins, as a
layered deployment) and prints their deployment ids and the layer's priority as ``KEY=value`` lines;
``... wait --hub H --device D --layer D/layer.json --version V`` polls the device's twins with the
Azure CLI until its modules run the layer's images and report the version, and fails after a timeout.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# v + a release or pre-release version in PEP 440's normal form, which is also a valid image tag
_TAG = re.compile(
    r"^v(?P<version>(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)(?:(?:a|b|rc)\d+)?)$"
)
MODULES_KEY = "properties.desired.modules."
ROUTES_KEY = "properties.desired.routes."
BASE_PRIORITY = 1
_LAYER_PRIORITY_BASE = 10


class ReleaseError(ValueError):
    """A tag, a manifest or a rollout that cannot be released."""


def tag_version(ref: str) -> str:
    """The version of a release tag: ``v1.2.3`` or ``refs/tags/v1.2.3`` -> ``1.2.3``.

    Only versions that the package reports unchanged (PEP 440 normal form: ``1.2.3``, ``1.3.0rc1``)
    are accepted, so ``software_version`` equals the tag's version and the image tags.
    """
    tag = ref.removeprefix("refs/tags/")
    m = _TAG.match(tag)
    if m is None:
        raise ReleaseError(
            f"{tag!r} is not a release tag: use v<major>.<minor>.<patch>, optionally with a1, b1 or "
            "rc1 (e.g. v1.2.3, v1.3.0rc1)"
        )
    if int(m["minor"]) >= 1000 or int(m["patch"]) >= 1000:
        raise ReleaseError(f"{tag!r}: minor and patch must be below 1000 (deployment priorities)")
    return m["version"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def layer_priority(version: str) -> int:
    """Priority of a release's layered deployment: a later version wins over an earlier one, and
    every layer is above the base deployment (IoT Hub requires that)."""
    m = _TAG.match("v" + version)
    if m is None:
        raise ReleaseError(f"{version!r} is not a release version")
    major, minor, patch = int(m["major"]), int(m["minor"]), int(m["patch"])
    return _LAYER_PRIORITY_BASE + major * 1_000_000 + minor * 1_000 + patch


def layer_id(platform: str, version: str) -> str:
    """``mfgvision-<platform>-<version>`` with the characters IoT Hub allows in deployment ids."""
    return f"mfgvision-{_slug(platform)}-{_slug(version)}"


@dataclass
class Deployments:
    """The two IoT Hub deployments of one expanded manifest."""

    base: dict[str, Any]
    layer: dict[str, Any]
    base_id: str
    layer_id: str
    layer_priority: int


def split_manifest(manifest: dict[str, Any], platform: str, version: str) -> Deployments:
    """A base deployment (edgeAgent's runtime and system modules, edgeHub's settings, no modules nor
    routes) and a layered one (every module, route and module twin of ``manifest``).

    The base deployment's id names a hash of its content, so new registry credentials or a new
    runtime make a new base deployment instead of failing on an id IoT Hub already has.
    """
    content = manifest.get("modulesContent")
    if not isinstance(content, dict):
        raise ReleaseError("the manifest has no modulesContent")
    try:
        agent = content["$edgeAgent"]["properties.desired"]
        hub = content["$edgeHub"]["properties.desired"]
    except (KeyError, TypeError) as exc:
        raise ReleaseError(f"the manifest lacks {exc}") from None
    modules = agent.get("modules") or {}
    routes = hub.get("routes") or {}
    if not modules:
        raise ReleaseError("the manifest deploys no modules")

    base_agent = {**copy.deepcopy(agent), "modules": {}}
    base_hub = {**copy.deepcopy(hub), "routes": {}}
    base = {
        "modulesContent": {
            "$edgeAgent": {"properties.desired": base_agent},
            "$edgeHub": {"properties.desired": base_hub},
        }
    }
    layer_content: dict[str, Any] = {
        "$edgeAgent": {MODULES_KEY + name: spec for name, spec in modules.items()},
        "$edgeHub": {ROUTES_KEY + name: route for name, route in routes.items()},
    }
    for name, twin in content.items():
        if not name.startswith("$"):
            layer_content[name] = copy.deepcopy(twin)
    digest = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:12]
    return Deployments(
        base=base,
        layer={"modulesContent": copy.deepcopy(layer_content)},
        base_id=f"mfgvision-base-{_slug(platform)}-{digest}",
        layer_id=layer_id(platform, version),
        layer_priority=layer_priority(version),
    )


# -- the rollout ----------------------------------------------------------------------------------


def layer_images(layer: dict[str, Any]) -> dict[str, str]:
    """Module name -> image of every mfgvision module a layered deployment runs."""
    agent = layer.get("modulesContent", {}).get("$edgeAgent", {})
    images = {}
    for key, spec in agent.items():
        if key.startswith(MODULES_KEY) and isinstance(spec, dict):
            image = str((spec.get("settings") or {}).get("image", ""))
            if "/mfgvision-" in image or image.startswith("mfgvision-"):
                images[key.removeprefix(MODULES_KEY)] = image
    return images


def rollout_problems(
    images: dict[str, str],
    version: str,
    agent_reported: dict[str, Any],
    reported: dict[str, dict[str, Any]],
) -> list[str]:
    """What keeps a device from running the release: every module in ``images`` must run that image
    (edgeAgent's reported properties), and every one that reports ``software_version`` (the modules
    connected to edgeHub) must report ``version``; at least one must.

    ``reported`` holds each module twin's reported properties (empty when it has none yet).
    """
    problems = []
    status = (agent_reported.get("lastDesiredStatus") or {}).get("code")
    if status != 200:
        problems.append(f"edgeAgent has not applied its desired properties (status {status})")
    running = agent_reported.get("modules") or {}
    versions = 0
    for name, image in sorted(images.items()):
        module = running.get(name) or {}
        actual = (module.get("settings") or {}).get("image")
        if actual != image:
            problems.append(f"{name}: runs {actual or 'nothing'}, not {image}")
            continue
        if module.get("runtimeStatus") != "running":
            problems.append(f"{name}: {module.get('runtimeStatus', 'unknown')}, not running")
        reports = reported.get(name) or {}
        if "software_version" in reports:
            versions += 1
            if reports["software_version"] != version:
                problems.append(
                    f"{name}: reports software_version {reports['software_version']}, not {version}"
                )
    if not problems and versions == 0:
        problems.append("no module reports a software_version yet")
    return problems


def az_reported(hub: str, device: str, module: str) -> dict[str, Any]:
    """A module twin's reported properties, read with the Azure CLI (Azure AD login, no keys)."""
    done = subprocess.run(
        [
            "az", "iot", "hub", "module-twin", "show", "--hub-name", hub, "--device-id", device,
            "--module-id", module, "--auth-type", "login", "--output", "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return {}
    twin = json.loads(done.stdout or "{}")
    return (twin.get("properties") or {}).get("reported") or {}


def wait_for_rollout(
    images: dict[str, str],
    version: str,
    read: Callable[[str], dict[str, Any]],
    timeout_s: float,
    interval_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Poll ``read(module)`` (reported properties; ``$edgeAgent`` included) until the rollout has no
    problems or ``timeout_s`` has passed; the problems left (empty: reached)."""
    deadline = clock() + timeout_s
    while True:
        reported = {name: read(name) for name in images}
        problems = rollout_problems(images, version, read("$edgeAgent"), reported)
        if not problems or clock() >= deadline:
            return problems
        print(f"waiting: {'; '.join(problems)}", flush=True)
        sleep(interval_s)


# -- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m mfgvision.deploy.release version|split|wait``."""
    parser = argparse.ArgumentParser(prog="python -m mfgvision.deploy.release")
    actions = parser.add_subparsers(dest="action", required=True)
    version = actions.add_parser("version", help="the version of a release tag")
    version.add_argument("ref", help="v1.2.3 or refs/tags/v1.2.3")
    split = actions.add_parser("split", help="write the base and layered deployments")
    split.add_argument("manifest", type=Path, help="expanded manifest (check-manifest --output)")
    split.add_argument("--platform", required=True)
    split.add_argument("--version", required=True)
    split.add_argument("--out-dir", type=Path, required=True)
    wait = actions.add_parser("wait", help="wait until a device runs a layered deployment")
    wait.add_argument("--hub", required=True, help="IoT Hub name")
    wait.add_argument("--device", required=True, help="device id of a device the layer targets")
    wait.add_argument("--layer", type=Path, required=True, help="layer.json written by split")
    wait.add_argument("--version", required=True)
    wait.add_argument("--timeout-s", type=float, default=1800)
    wait.add_argument("--interval-s", type=float, default=30)
    args = parser.parse_args(argv)
    try:
        if args.action == "version":
            print(tag_version(args.ref))
        elif args.action == "split":
            manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
            out = split_manifest(manifest, args.platform, args.version)
            args.out_dir.mkdir(parents=True, exist_ok=True)
            for name, doc in (("base.json", out.base), ("layer.json", out.layer)):
                (args.out_dir / name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            print(f"BASE_ID={out.base_id}")
            print(f"LAYER_ID={out.layer_id}")
            print(f"LAYER_PRIORITY={out.layer_priority}")
        else:
            images = layer_images(json.loads(args.layer.read_text(encoding="utf-8")))
            if not images:
                raise ReleaseError(f"{args.layer} runs no mfgvision module")
            problems = wait_for_rollout(
                images,
                args.version,
                lambda module: az_reported(args.hub, args.device, module),
                args.timeout_s,
                args.interval_s,
            )
            if problems:
                print(f"{args.device} did not reach {args.version}: {'; '.join(problems)}")
                return 1
            print(f"{args.device}: {len(images)} modules run {args.version}")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
