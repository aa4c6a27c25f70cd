"""``mfgvision compose``: a docker-compose file from a deployment template, for sites without Azure.

The file runs what IoT Edge would run, with the local edgeHub stand-in in place of edgeHub:

* ``edgehub-init`` writes the stand-in's CA, broker configs and twins into the ``edgehub`` volume;
* one ``broker-<module>`` (Mosquitto) per module that connects to edgeHub, on its own loopback address;
* ``edgehub`` (the stand-in) serves twins and direct methods and applies the manifest's routes;
* every module of the manifest (MySQL included) with its image, ``Cmd``, binds, network mode, runtime,
  environment and restart policy; mfgvision modules also get ``EdgeHubConnectionString`` and the CA.

``${VAR}`` references stay as they are: docker compose fills them in from the ``.env`` beside the file,
so no secret is written into it. mfgvision images get a ``build`` section (the module's Dockerfile for
the chosen platform, the repository as context) and their ``module.json`` image name. The manifest the
stand-in reads (modules, routes, twins; no environment) is written beside the compose file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from mfgvision.deploy.broker import MQTT_TLS_PORT
from mfgvision.deploy.checks import PLATFORMS, image_reference, module_json
from mfgvision.deploy.standin import (
    DEFAULT_ADDRESS_BASE,
    Identity,
    connection_string,
    hub_modules,
    module_addresses,
)
from mfgvision.manifest import join_create_options, parse_manifest

MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0.20"
MOSQUITTO_UID = 1883
STATE = "/edgehub"
STANDIN_MANIFEST = "edgehub-manifest.json"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_RESTART = {"always": "always", "on-failure": "on-failure", "on-unhealthy": "always", "never": "no"}


def _service_name(module: str) -> str:
    return re.sub(r"[^a-z0-9_.-]", "-", module.lower())


def _compose_text(value: str) -> str:
    """Keep ``${VAR}`` for compose to fill in; escape any other ``$``."""
    out, pos = [], 0
    for m in _VAR.finditer(value):
        out.append(value[pos : m.start()].replace("$", "$$"))
        out.append(m.group(0))
        pos = m.end()
    out.append(value[pos:].replace("$", "$$"))
    return "".join(out)


def _image(
    raw_image: str, platform: str, modules_dir: Path, compose_dir: Path
) -> tuple[str, dict | None]:
    """Image name (with ``${VAR}`` kept) and the build section of a mfgvision module image."""
    m = _VAR.fullmatch(raw_image.strip())
    ref = image_reference(m.group(1), platform) if m else None
    if ref is None:
        return _compose_text(raw_image), None
    folder, plat = ref
    spec = module_json(modules_dir, folder)
    if spec is None:
        raise ValueError(f"modules/{folder}/module.json does not exist")
    image = spec["image"]
    dockerfile = image["tag"]["platforms"].get(plat)
    if dockerfile is None:
        raise ValueError(f"modules/{folder}/module.json has no platform '{plat}'")
    name = f"{image['repository']}:{image['tag']['version']}-{plat}"
    context = (modules_dir / folder / image.get("contextPath", ".")).resolve()
    build = {
        "context": os.path.relpath(context, compose_dir.resolve()),
        "dockerfile": str((modules_dir / folder / dockerfile).resolve().relative_to(context)),
    }
    return _compose_text(name), build


def _host_config(service: dict[str, Any], options: dict[str, Any]) -> None:
    host = options.get("HostConfig") or {}
    if host.get("NetworkMode"):
        service["network_mode"] = host["NetworkMode"]
    if host.get("IpcMode"):
        service["ipc"] = host["IpcMode"]
    if host.get("Runtime"):
        service["runtime"] = host["Runtime"]
    if host.get("Privileged"):
        service["privileged"] = True
    volumes = [_compose_text(b) for b in host.get("Binds") or []]
    if volumes:
        service["volumes"] = volumes
    devices = [
        f"{d['PathOnHost']}:{d.get('PathInContainer', d['PathOnHost'])}"
        for d in host.get("Devices") or []
        if isinstance(d, dict) and "PathOnHost" in d
    ]
    if devices:
        service["devices"] = devices
    if host.get("PortBindings") and host.get("NetworkMode") != "host":
        service["ports"] = [
            f"{b.get('HostPort', '')}:{port.split('/')[0]}"
            for port, bindings in host["PortBindings"].items()
            for b in bindings or []
        ]
    log = host.get("LogConfig")
    if log:
        service["logging"] = {
            "driver": log.get("Type", "json-file"),
            "options": log.get("Config", {}),
        }
    if options.get("User"):
        service["user"] = options["User"]


def build_compose(
    template: Path,
    platform: str = "amd64",
    address_base: str = DEFAULT_ADDRESS_BASE,
    modules_dir: Path | None = None,
    compose_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The compose document and the manifest the stand-in reads (for ``STANDIN_MANIFEST``)."""
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}")
    modules_dir = modules_dir or template.parent / "modules"
    raw = json.loads(template.read_text(encoding="utf-8"))
    manifest = parse_manifest(raw)
    agent = raw["modulesContent"]["$edgeAgent"]["properties.desired"]
    connected = hub_modules(manifest)
    addresses = module_addresses(connected, address_base)
    identity = Identity.default()
    compose_dir = compose_dir or Path.cwd()

    services: dict[str, Any] = {}
    standin_image = None
    module_services: dict[str, dict[str, Any]] = {}
    for name, spec in (agent.get("modules") or {}).items():
        settings = spec.get("settings") or {}
        options = join_create_options(settings)
        image, build = _image(str(settings.get("image", "")), platform, modules_dir, compose_dir)
        service: dict[str, Any] = {"image": image}
        if build:
            service["build"] = build
            standin_image = standin_image or (image, build)
        if options.get("Cmd"):
            service["command"] = [_compose_text(str(c)) for c in options["Cmd"]]
        _host_config(service, options)
        service["restart"] = _RESTART.get(spec.get("restartPolicy", "always"), "always")
        env = {
            k: _compose_text(str((v or {}).get("value", "")))
            for k, v in (spec.get("env") or {}).items()
        }
        for item in options.get("Env") or []:
            key, _, value = str(item).partition("=")
            env.setdefault(key, _compose_text(value))
        if name in addresses:
            env["EdgeHubConnectionString"] = connection_string(identity, name, addresses[name])
            env["EdgeModuleCACertificateFile"] = f"{STATE}/ca.pem"
            service.setdefault("volumes", []).append(f"edgehub:{STATE}:ro")
            service["depends_on"] = {"edgehub": {"condition": "service_started"}}
        if env:
            service["environment"] = env
        if spec.get("status") == "stopped":
            service["profiles"] = ["stopped"]
        module_services[name] = service
    if standin_image is None:
        raise ValueError("the manifest has no mfgvision module image to run the stand-in with")

    _startup_order(module_services, agent.get("modules") or {})
    image, build = standin_image
    standin = {"image": image, "build": build, "network_mode": "host"}
    common_args = ["edgehub", "--state", STATE, "--manifest", f"/{STANDIN_MANIFEST}"]
    common_args += ["--address-base", address_base]
    services["edgehub-init"] = {
        **standin,
        "user": "0",
        "command": [*common_args, "init", "--broker-uid", str(MOSQUITTO_UID)],
        "volumes": ["edgehub:/edgehub", f"./{STANDIN_MANIFEST}:/{STANDIN_MANIFEST}:ro"],
        "restart": "no",
    }
    brokers = []
    for module in connected:
        broker = f"broker-{_service_name(module)}"
        brokers.append(broker)
        services[broker] = {
            "image": MOSQUITTO_IMAGE,
            "network_mode": "host",
            "command": ["mosquitto", "-c", f"{STATE}/brokers/{module}/mosquitto.conf"],
            "volumes": ["edgehub:/edgehub"],
            "depends_on": {"edgehub-init": {"condition": "service_completed_successfully"}},
            "restart": "always",
        }
    services["edgehub"] = {
        **standin,
        "user": "0",
        "command": [*common_args, "serve", "--no-brokers"],
        "volumes": ["edgehub:/edgehub", f"./{STANDIN_MANIFEST}:/{STANDIN_MANIFEST}:ro"],
        "depends_on": {b: {"condition": "service_started"} for b in brokers},
        "restart": "always",
    }
    for name, service in module_services.items():
        services[_service_name(name)] = service
    compose = {
        "name": "mfgvision",
        "services": services,
        "volumes": {"edgehub": {}},
    }
    return compose, standin_manifest(raw)


def _startup_order(services: dict[str, dict[str, Any]], specs: dict[str, Any]) -> None:
    """A module waits for the modules with a lower ``startupOrder`` to have started."""
    orders = {
        n: s.get("startupOrder") for n, s in specs.items() if isinstance(s.get("startupOrder"), int)
    }
    for name, order in orders.items():
        earlier = [n for n, o in orders.items() if o < order]
        if earlier:
            deps = services[name].setdefault("depends_on", {})
            for other in earlier:
                deps[_service_name(other)] = {"condition": "service_started"}


def standin_manifest(raw: dict[str, Any]) -> dict[str, Any]:
    """Modules (``Cmd`` only), routes and twins: what the stand-in needs, without any environment."""
    content = raw["modulesContent"]
    agent = content["$edgeAgent"]["properties.desired"]
    modules = {}
    for name, spec in (agent.get("modules") or {}).items():
        options = join_create_options(spec.get("settings") or {})
        modules[name] = {
            "type": "docker",
            "status": spec.get("status", "running"),
            "restartPolicy": spec.get("restartPolicy", "always"),
            "settings": {
                "image": "mfgvision" if "${MODULES." in str(spec["settings"].get("image")) else "",
                "createOptions": json.dumps({"Cmd": options.get("Cmd") or []}),
            },
        }
    out: dict[str, Any] = {
        "modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": modules}},
            "$edgeHub": content["$edgeHub"],
        }
    }
    for name, section in content.items():
        if not name.startswith("$"):
            out["modulesContent"][name] = section
    return out


class _NoAliases(yaml.SafeDumper):
    """Writes repeated values out in full (no ``&id``/``*id`` anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_compose(
    template: Path,
    output: Path,
    platform: str = "amd64",
    address_base: str = DEFAULT_ADDRESS_BASE,
) -> Path:
    """Write the compose file and the stand-in's manifest beside it; returns the compose path."""
    compose, standin = build_compose(template, platform, address_base, compose_dir=output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by `mfgvision compose` from {template.name} (platform {platform}).\n"
        "# ${VAR} values come from the .env beside this file. Regenerate instead of editing.\n"
        f"# Stand-in brokers listen on {address_base} and up, port {MQTT_TLS_PORT}.\n"
    )
    text = yaml.dump(compose, Dumper=_NoAliases, sort_keys=False, width=120)
    output.write_text(header + text, encoding="utf-8")
    (output.parent / STANDIN_MANIFEST).write_text(
        json.dumps(standin, indent=2) + "\n", encoding="utf-8"
    )
    return output


def add_compose_arguments(parser: Any) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        default=Path("deployment.template.json"),
        help="deployment manifest (default: %(default)s)",
    )
    parser.add_argument(
        "--platform",
        choices=PLATFORMS,
        default="amd64",
        help="platform of the Dockerfiles the images are built from (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("docker-compose.yml"),
        help="compose file to write; the stand-in's manifest goes beside it (default: %(default)s)",
    )
    parser.add_argument(
        "--address-base",
        default=DEFAULT_ADDRESS_BASE,
        help="loopback address of the first module's broker; the next modules get the next ones "
        "(default: %(default)s)",
    )


def compose_main(args: Any) -> int:
    try:
        path = write_compose(args.manifest, args.output, args.platform, args.address_base)
    except (ValueError, KeyError) as exc:
        print(f"mfgvision compose: {exc}")
        return 1
    print(f"wrote {path} and {path.parent / STANDIN_MANIFEST}")
    print(
        f"next: cp .env.template {path.parent / '.env'} (fill it in); docker compose -f {path} up -d"
    )
    return 0
