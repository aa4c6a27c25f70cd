"""Offline checks of a deployment template, and its expansion into a deployable manifest.

``mfgvision check-manifest FILE`` runs every check and reports each problem with where it is:

* the template is valid JSON and matches the official template schema (vendored in ``schemas/``);
* every ``${VAR}`` (in the template and in the ``module.json`` of each module it builds) is defined in
  ``.env.template``, and every ``${MODULES.X}`` image has ``modules/X/module.json`` with a Dockerfile
  for the platform;
* the expanded manifest matches the official edgeAgent 1.1 and edgeHub 1.2 schemas, and every module
  twin section belongs to a module;
* every ``createOptions`` chunk is at most 512 characters (longer options are split into
  ``createOptions01`` ... ``createOptions07``, as IoT Edge tooling does) and the chunks join into a
  JSON object;
* every route parses, its source module runs a mfgvision command that sends on that output, and its
  target module runs a command whose code handles that input (``mfgvision.module_registry.MODULES``,
  built from the constants the module code uses);
* each module's command exists, the CIS twin sections validate as CIS settings, and no environment
  value that looks like a secret is written literally (secrets come from ``.env``).

The same expansion writes the manifest to deploy (``--output``): variables from ``.env``, images from
``module.json`` (``<repository>:<version>-<platform>``), createOptions as JSON strings in chunks.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from mfgvision.cis.messages import IMAGE_UPLOAD_OUTPUT, RECEIPTS_INPUT
from mfgvision.edge.routes import RouteError, parse_route
from mfgvision.image_upload.service import RECEIPTS_OUTPUT
from mfgvision.manifest import (
    ManifestError,
    create_options_keys,
    join_create_options,
    read_env_file,
    template_variables,
)
from mfgvision.metrics.server import DEFAULT_PORT as METRICS_PORT
from mfgvision.metrics.server import PORT_ENV as METRICS_PORT_ENV
from mfgvision.module_registry import MODULES
from mfgvision.settings import CisSettings, SettingsError, parse_settings

SCHEMAS = Path(__file__).resolve().parent / "schemas"
TEMPLATE_SCHEMA = "azure-iot-edge-deployment-template-4.0.json"
AGENT_SCHEMA = "azure-iot-edgeagent-deployment-1.1.json"
HUB_SCHEMA = "azure-iot-edgehub-deployment-1.2.json"
SCHEMA_BASE = "https://json.schemastore.org/"
CREATE_OPTIONS_CHUNK = 512
CREATE_OPTIONS_CHUNKS = 8
PLATFORMS = ("arm64v8", "amd64", "amd64.gpu")
DEFAULT_PLATFORM = "arm64v8"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_SECRET_ENV = re.compile(
    r"(PASSWORD|PASSWD|PWD|SECRET|TOKEN|CONNECTION_STRING|CONN_STR|KEY)$", re.I
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: where, and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class CheckError(ValueError):
    """A template that cannot even be expanded."""


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(schema, default_specification=DRAFT4)
        resources.append((SCHEMA_BASE + path.name, resource))
        resources.append((path.name, resource))
    return Registry().with_resources(resources)


def _validator(name: str) -> Draft4Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return Draft4Validator(schema, registry=_registry())


def schema_problems(document: Any, schema: str, where: str) -> list[Problem]:
    """Validation errors of ``document`` against a vendored schema."""
    problems = []
    for error in sorted(_validator(schema).iter_errors(document), key=lambda e: list(e.path)):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(Problem(f"{where} {path}", error.message))
    return problems


# -- modules and images ---------------------------------------------------------------------------


def module_json(modules_dir: Path, name: str) -> dict[str, Any] | None:
    path = modules_dir / name / "module.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def module_image(modules_dir: Path, name: str, platform: str, variables: Mapping[str, str]) -> str:
    """``<repository>:<version>-<platform>`` of ``modules/<name>/module.json`` (vars expanded)."""
    spec = module_json(modules_dir, name)
    if spec is None:
        raise CheckError(f"modules/{name}/module.json does not exist")
    image = spec.get("image", {})
    platforms = image.get("tag", {}).get("platforms", {})
    if platform not in platforms:
        raise CheckError(f"modules/{name}/module.json has no platform '{platform}'")
    repository = _expand_text(str(image.get("repository", "")), variables, strict=True)
    version = _expand_text(
        str(image.get("tag", {}).get("version", "0.0.0")), variables, strict=True
    )
    return f"{repository.lower()}:{version}-{platform}"


def _expand_text(text: str, variables: Mapping[str, str], strict: bool) -> str:
    def replace(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in variables:
            return variables[key]
        if strict:
            raise CheckError(f"variable ${{{key}}} is not defined")
        return m.group(0)

    return _VAR.sub(replace, text)


def image_reference(key: str, default_platform: str) -> tuple[str, str] | None:
    """``MODULES.X`` / ``MODULES.X.<platform>`` -> (module folder, platform)."""
    if not key.startswith("MODULES."):
        return None
    rest = key.split(".", 1)[1]
    for platform in sorted(PLATFORMS, key=len, reverse=True):
        if rest.endswith("." + platform):
            return rest[: -len(platform) - 1], platform
    if rest.endswith(".debug"):
        return rest[: -len(".debug")], default_platform + ".debug"
    return rest, default_platform


# -- expansion ------------------------------------------------------------------------------------


def split_create_options(settings: dict[str, Any]) -> None:
    """createOptions as a minified JSON string, split into 512-character chunks (in place)."""
    keys = create_options_keys(settings)
    if not keys:
        return
    options = join_create_options(settings)
    for key in keys:
        del settings[key]
    text = json.dumps(options, separators=(",", ":"))
    chunks = [text[i : i + CREATE_OPTIONS_CHUNK] for i in range(0, len(text), CREATE_OPTIONS_CHUNK)]
    if len(chunks) > CREATE_OPTIONS_CHUNKS:
        raise CheckError(f"createOptions is {len(text)} characters; at most 4096 fit")
    for i, chunk in enumerate(chunks or ["{}"]):
        settings["createOptions" if i == 0 else f"createOptions{i:02d}"] = chunk


def _all_modules(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    agent = manifest.get("modulesContent", {}).get("$edgeAgent", {}).get("properties.desired", {})
    out: dict[str, dict[str, Any]] = {}
    for section in ("systemModules", "modules"):
        for name, spec in (agent.get(section) or {}).items():
            if isinstance(spec, dict):
                out[name] = spec
    return out


def expand_deployment(
    template: Path,
    variables: Mapping[str, str],
    platform: str = DEFAULT_PLATFORM,
    modules_dir: Path | None = None,
) -> dict[str, Any]:
    """The deployable manifest of ``template``: variables and images expanded, createOptions as
    chunked strings, ``$schema-template`` removed. Raises CheckError for what cannot be expanded."""
    modules_dir = modules_dir or template.parent / "modules"
    text = template.read_text(encoding="utf-8")

    def replace(m: re.Match[str]) -> str:
        key = m.group(1)
        ref = image_reference(key, platform)
        if ref is not None:
            return module_image(modules_dir, ref[0], ref[1], variables)
        if key not in variables:
            raise CheckError(f"variable ${{{key}}} is not defined")
        return json.dumps(variables[key])[1:-1]  # JSON-escaped, inside the template's quotes

    try:
        manifest = json.loads(_VAR.sub(replace, text))
    except json.JSONDecodeError as exc:
        raise CheckError(f"not JSON after expansion: {exc}") from None
    manifest.pop("$schema-template", None)
    for name, spec in _all_modules(manifest).items():
        settings = spec.get("settings")
        if isinstance(settings, dict):
            try:
                split_create_options(settings)
            except ManifestError as exc:
                raise CheckError(f"module {name}: {exc}") from None
    return manifest


# -- checks ---------------------------------------------------------------------------------------


def _placeholder_variables(env_template: Path) -> dict[str, str]:
    """Variables of ``.env.template`` with a stand-in value where the template leaves one empty."""
    return {k: v or f"placeholder-{k.lower()}" for k, v in read_env_file(env_template).items()}


def check_manifest(
    template: Path,
    env_template: Path | None = None,
    platform: str = DEFAULT_PLATFORM,
    modules_dir: Path | None = None,
) -> list[Problem]:
    """Every problem of ``template`` (empty when it is fine to deploy)."""
    where = template.name
    env_template = env_template or template.parent / ".env.template"
    modules_dir = modules_dir or template.parent / "modules"
    try:
        text = template.read_text(encoding="utf-8")
        raw = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        return [Problem(where, f"not readable JSON: {exc}")]
    problems = schema_problems(raw, TEMPLATE_SCHEMA, f"{where} (template)")

    defined = read_env_file(env_template) if env_template.is_file() else {}
    if not env_template.is_file():
        problems.append(Problem(where, f"{env_template} does not exist"))
    for key in sorted(template_variables(text)):
        ref = image_reference(key, platform)
        if ref is None:
            if key not in defined:
                problems.append(Problem(where, f"${{{key}}} is not defined in {env_template.name}"))
            continue
        problems.extend(_module_folder_problems(modules_dir, ref[0], ref[1], defined))

    problems.extend(secret_problems(raw, where))
    try:
        manifest = expand_deployment(
            template, _placeholder_variables(env_template), platform, modules_dir
        )
    except CheckError as exc:
        problems.append(Problem(where, f"cannot be expanded: {exc}"))
        return _unique(problems)
    problems.extend(check_expanded(manifest, where))
    return _unique(problems)


def secret_problems(raw: dict[str, Any], where: str) -> list[Problem]:
    """Environment values that look like secrets must come from ``.env`` (``${VAR}``)."""
    problems = []
    for name, spec in _all_modules(raw).items():
        for key, value in (spec.get("env") or {}).items():
            text = str((value or {}).get("value", "")) if isinstance(value, dict) else ""
            if _SECRET_ENV.search(key) and text and not _VAR.fullmatch(text.strip()):
                problems.append(
                    Problem(
                        f"{where} {name} env {key}",
                        "looks like a secret written into the manifest; use a ${VAR} from .env",
                    )
                )
    return problems


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _module_folder_problems(
    modules_dir: Path, name: str, platform: str, defined: Mapping[str, str]
) -> list[Problem]:
    where = f"modules/{name}/module.json"
    try:
        spec = module_json(modules_dir, name)
    except json.JSONDecodeError as exc:
        return [Problem(where, f"not JSON: {exc}")]
    if spec is None:
        return [Problem(where, f"does not exist (the template uses ${{MODULES.{name}}})")]
    problems = []
    image = spec.get("image", {})
    for key in ("repository", "tag"):
        if key not in image:
            problems.append(Problem(where, f"image.{key} is missing"))
    platforms = image.get("tag", {}).get("platforms", {})
    if platform not in platforms:
        problems.append(Problem(where, f"no Dockerfile for platform '{platform}'"))
    for plat, dockerfile in platforms.items():
        if not (modules_dir / name / dockerfile).is_file():
            problems.append(Problem(where, f"Dockerfile {dockerfile} of {plat} does not exist"))
    for key in sorted(template_variables(json.dumps(spec))):
        if key not in defined:
            problems.append(Problem(where, f"${{{key}}} is not defined in .env.template"))
    context = image.get("contextPath", ".")
    if not (modules_dir / name / context / "pyproject.toml").is_file():
        problems.append(Problem(where, f"contextPath {context!r} is not the repository root"))
    return problems


def check_expanded(manifest: dict[str, Any], where: str = "manifest") -> list[Problem]:
    """Checks of an expanded (deployable) manifest."""
    problems: list[Problem] = []
    extra = set(manifest) - {"modulesContent"}
    if extra:
        problems.append(Problem(where, f"unexpected top-level keys {sorted(extra)}"))
    content = manifest.get("modulesContent")
    if not isinstance(content, dict):
        return [*problems, Problem(where, "no modulesContent")]
    problems += schema_problems(
        {"$edgeAgent": content.get("$edgeAgent")}, AGENT_SCHEMA, f"{where} $edgeAgent"
    )
    problems += schema_problems(
        {"$edgeHub": content.get("$edgeHub")}, HUB_SCHEMA, f"{where} $edgeHub"
    )
    agent = (content.get("$edgeAgent") or {}).get("properties.desired") or {}
    modules = {n: s for n, s in (agent.get("modules") or {}).items() if isinstance(s, dict)}
    for name in content:
        if not name.startswith("$") and name not in modules:
            problems.append(Problem(f"{where} {name}", "a module twin for a module not deployed"))
    specs: dict[str, dict[str, Any]] = {}
    for name, spec in _all_modules(manifest).items():
        settings = spec.get("settings") or {}
        problems += _create_options_problems(settings, f"{where} {name}")
        try:
            specs[name] = join_create_options(settings)
        except ManifestError as exc:
            problems.append(Problem(f"{where} {name}", str(exc)))
            specs[name] = {}
    hub = (content.get("$edgeHub") or {}).get("properties.desired") or {}
    problems += route_problems(hub.get("routes") or {}, modules, specs, where)
    problems += receipt_problems(hub.get("routes") or {}, content, specs, where)
    problems += twin_problems(content, modules, specs, where)
    problems += camera_id_problems(content, modules, specs, where)
    problems += metrics_port_problems(modules, specs, where)
    return problems


def metrics_port_problems(
    modules: dict[str, dict[str, Any]], options: dict[str, dict[str, Any]], where: str
) -> list[Problem]:
    """Our modules on the host's network each need a metrics port of their own: the second to bind
    one would run without ``/metrics``."""
    problems = []
    taken: dict[int, str] = {}
    for name in _modules_running(MODULES, modules, options):
        if (options[name].get("HostConfig") or {}).get("NetworkMode") != "host":
            continue
        env = modules[name].get("env") or {}
        raw = str((env.get(METRICS_PORT_ENV) or {}).get("value", METRICS_PORT))
        if not raw.isdigit() or int(raw) == 0:  # a ${VAR}, or metrics off
            continue
        port = int(raw)
        if port in taken:
            problems.append(
                Problem(
                    f"{where} {name} env {METRICS_PORT_ENV}",
                    f"port {port} is {taken[port]}'s too; each module on the host network needs "
                    "its own metrics port",
                )
            )
        taken.setdefault(port, name)
    return problems


def receipt_problems(
    routes: dict[str, Any],
    content: dict[str, Any],
    options: dict[str, dict[str, Any]],
    where: str,
) -> list[Problem]:
    """A CIS whose upload requests go to ImageUpload must get ImageUpload's receipts back (or have
    ``upload_receipts`` off): without them it sends every request again for hours."""
    parsed = []
    for name, value in routes.items():
        try:
            parsed.append(
                parse_route(name, str(value.get("route") if isinstance(value, dict) else value))
            )
        except RouteError:
            continue  # reported by route_problems
    problems = []
    for route in parsed:
        cis, upload = route.source_module, route.sink_module
        if cis is None or upload is None or route.source_output != IMAGE_UPLOAD_OUTPUT:
            continue
        if (
            _command(options.get(cis, {})) != "cis"
            or _command(options.get(upload, {})) != "image-upload"
        ):
            continue
        desired = (content.get(cis) or {}).get("properties.desired") or {}
        if desired.get("upload_receipts") is False:
            continue
        if not any(
            r.sink_module == cis
            and r.sink_input == RECEIPTS_INPUT
            and r.matches(upload, RECEIPTS_OUTPUT)
            for r in parsed
        ):
            problems.append(
                Problem(
                    f"{where} route {route.name}",
                    f"{upload}'s receipts do not come back to {cis}: add FROM "
                    f"/messages/modules/{upload}/outputs/{RECEIPTS_OUTPUT} INTO "
                    f'BrokeredEndpoint("/modules/{cis}/inputs/{RECEIPTS_INPUT}") '
                    f"or set {cis}'s upload_receipts to false",
                )
            )
    return problems


def _create_options_problems(settings: dict[str, Any], where: str) -> list[Problem]:
    problems = []
    keys = create_options_keys(settings)
    expected = ["createOptions"] + [f"createOptions{i:02d}" for i in range(1, len(keys))]
    if keys and keys != expected:
        problems.append(Problem(where, f"createOptions chunks {keys} are not contiguous"))
    if len(keys) > CREATE_OPTIONS_CHUNKS:
        problems.append(Problem(where, f"{len(keys)} createOptions chunks; at most 8"))
    for key in keys:
        value = settings[key]
        if not isinstance(value, str):
            problems.append(Problem(where, f"{key} is not a string"))
        elif len(value) > CREATE_OPTIONS_CHUNK:
            problems.append(
                Problem(where, f"{key} is {len(value)} characters; IoT Edge allows 512 per chunk")
            )
    return problems


def _command(spec: dict[str, Any]) -> str | None:
    cmd = spec.get("Cmd") or []
    return str(cmd[0]) if cmd else None


def _modules_running(
    commands: Collection[str],
    modules: dict[str, dict[str, Any]],
    options: dict[str, dict[str, Any]],
) -> Iterator[str]:
    """The deployed modules whose container runs one of the mfgvision ``commands``."""
    for name in modules:
        if _command(options.get(name, {})) in commands:
            yield name


def route_problems(
    routes: dict[str, Any],
    modules: dict[str, dict[str, Any]],
    options: dict[str, dict[str, Any]],
    where: str,
) -> list[Problem]:
    """Routes whose source does not send, or whose target does not handle, what they name."""
    problems = []
    for name, value in routes.items():
        text = value.get("route") if isinstance(value, dict) else value
        at = f"{where} route {name}"
        try:
            route = parse_route(name, str(text))
        except RouteError as exc:
            problems.append(Problem(at, str(exc)))
            continue
        if route.source_module is not None:
            problems += _endpoint_problem(
                at, route.source_module, route.source_output, "output", modules, options
            )
        if route.sink_module is not None:
            problems += _endpoint_problem(
                at, route.sink_module, route.sink_input, "input", modules, options
            )
    return problems


def _endpoint_problem(
    at: str,
    module: str,
    endpoint: str | None,
    kind: str,
    modules: dict[str, dict[str, Any]],
    options: dict[str, dict[str, Any]],
) -> list[Problem]:
    if module not in modules:
        return [Problem(at, f"module '{module}' is not in the deployment")]
    command = _command(options.get(module, {}))
    if command not in MODULES:
        return [Problem(at, f"module '{module}' does not run a mfgvision module command")]
    known = MODULES[command].outputs if kind == "output" else MODULES[command].inputs
    if endpoint is None:
        return [] if known else [Problem(at, f"'{command}' ({module}) has no {kind}s")]
    if endpoint not in known:
        verb = "sends on" if kind == "output" else "handles"
        return [
            Problem(
                at,
                f"'{command}' ({module}) {verb} no {kind} '{endpoint}' "
                f"(its {kind}s: {', '.join(known) or 'none'})",
            )
        ]
    return []


def twin_problems(
    content: dict[str, Any],
    modules: dict[str, dict[str, Any]],
    options: dict[str, dict[str, Any]],
    where: str,
) -> list[Problem]:
    """Module commands that do not exist, and twin sections that do not validate."""
    problems = []
    for name, spec in modules.items():
        image = str((spec.get("settings") or {}).get("image", ""))
        command = _command(options.get(name, {}))
        ours = "mfgvision" in image or command in MODULES
        if ours and command not in MODULES:
            problems.append(
                Problem(f"{where} {name}", f"Cmd {command!r} is not a mfgvision module command")
            )
        model = MODULES[command].settings if command in MODULES else None
        desired = (content.get(name) or {}).get("properties.desired")
        if model is not None and isinstance(desired, dict):
            try:
                parse_settings(model, desired)
            except SettingsError as exc:
                problems.append(Problem(f"{where} {name} properties.desired", str(exc)))
    return problems


def camera_id_problems(
    content: dict[str, Any],
    modules: dict[str, dict[str, Any]],
    options: dict[str, dict[str, Any]],
    where: str,
) -> list[Problem]:
    """Every camera of every CIS module (each entry of a ``cameras`` list, else the module's own
    camera) needs an id no other camera of the device has: rows, messages, live frames and the
    line's registers are keyed by it. A twin that does not validate is left to ``twin_problems``."""
    problems = []
    taken: dict[str, str] = {}
    for name in _modules_running({"cis"}, modules, options):
        desired = (content.get(name) or {}).get("properties.desired")
        try:
            settings = parse_settings(CisSettings, desired if isinstance(desired, dict) else {})
        except SettingsError:
            continue
        assert isinstance(settings, CisSettings)
        entries = settings.cameras or []
        for index, camera in enumerate(settings.each_camera()):
            at = f"cameras[{index}].camera_id" if entries else "camera_id"
            first = taken.setdefault(camera.camera_id, f"{name}'s {at}")
            if first != f"{name}'s {at}":
                problems.append(
                    Problem(
                        f"{where} {name} properties.desired {at}",
                        f"camera id {camera.camera_id} is {first} too; each camera of the "
                        "device needs an id of its own",
                    )
                )
    return problems


def variables_for_deploy(template: Path) -> dict[str, str]:
    """Variables for ``--output``: ``.env`` beside the template, then the environment."""
    return {**read_env_file(template.parent / ".env"), **os.environ}


def write_expanded(manifest: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(copy.deepcopy(manifest), indent=2) + "\n", encoding="utf-8")
