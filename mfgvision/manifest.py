"""Deployment manifests: expand a template, then read its modules, routes and module twins."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfgvision.edge.routes import Route, parse_routes

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class ManifestError(ValueError):
    """A manifest that cannot be used: missing sections, undefined variables, bad routes."""


@dataclass
class ModuleSpec:
    """One custom module of the manifest, as edgeAgent would start it."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    create_options: dict[str, Any]
    desired: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    restart_policy: str = "always"
    startup_order: int | None = None


@dataclass
class Manifest:
    """The parts of a deployment manifest that run modules."""

    modules: dict[str, ModuleSpec]
    routes: list[Route]
    raw: dict[str, Any]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def template_variables(text: str) -> set[str]:
    """Every ``${VAR}`` a template uses (``MODULES.x`` image references included)."""
    return set(_VAR.findall(text))


def expand(text: str, variables: Mapping[str, str], strict: bool = True) -> str:
    """Replace ``${VAR}``; ``${MODULES.Name}`` becomes ``mfgvision-<name>`` unless defined."""

    def replace(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in variables:
            return variables[key]
        if key.startswith("MODULES."):
            return f"mfgvision-{key.split('.', 1)[1].lower()}"
        if strict:
            raise ManifestError(f"variable ${{{key}}} is not defined")
        return m.group(0)

    return _VAR.sub(replace, text)


def load_manifest(
    path: Path, variables: Mapping[str, str] | None = None, strict: bool = False
) -> Manifest:
    """Read and expand a deployment (template) manifest.

    Variables come from ``variables`` or else the process environment and the ``.env`` beside the file.
    """
    if variables is None:
        variables = {**read_env_file(path.parent / ".env"), **os.environ}
    text = expand(path.read_text(encoding="utf-8"), variables, strict=strict)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not JSON after expansion: {exc}") from None
    return parse_manifest(raw)


def parse_manifest(raw: dict[str, Any]) -> Manifest:
    """Pick modules, routes and module twins out of an expanded manifest."""
    content = raw.get("modulesContent")
    if not isinstance(content, dict):
        raise ManifestError("manifest has no 'modulesContent'")
    try:
        agent = content["$edgeAgent"]["properties.desired"]
        hub = content["$edgeHub"]["properties.desired"]
    except KeyError as exc:
        raise ManifestError(f"manifest lacks {exc}") from None
    modules = {}
    for name, spec in (agent.get("modules") or {}).items():
        settings = spec.get("settings", {})
        options = join_create_options(settings)
        env = {k: str(v.get("value", "")) for k, v in (spec.get("env") or {}).items()}
        desired = (content.get(name) or {}).get("properties.desired", {})
        modules[name] = ModuleSpec(
            name=name,
            image=settings.get("image", ""),
            command=list(options.get("Cmd") or []),
            env=env,
            create_options=options,
            desired=desired,
            status=spec.get("status", "running"),
            restart_policy=spec.get("restartPolicy", "always"),
            startup_order=spec.get("startupOrder"),
        )
    return Manifest(modules=modules, routes=parse_routes(hub.get("routes") or {}), raw=raw)


def create_options_keys(settings: dict[str, Any]) -> list[str]:
    """``createOptions``, ``createOptions01``, ... present in a module's settings, in order."""
    return sorted(
        (k for k in settings if re.fullmatch(r"createOptions(\d{2})?", k)),
        key=lambda k: int(k[len("createOptions") :] or 0),
    )


def join_create_options(settings: dict[str, Any]) -> dict[str, Any]:
    """A module's createOptions as an object: an object as written in a template, or the JSON string
    of an expanded manifest, which IoT Edge tooling splits into ``createOptions01``, ... chunks."""
    keys = create_options_keys(settings)
    if len(keys) == 1 and isinstance(settings[keys[0]], dict):
        return dict(settings[keys[0]])
    text = "".join(str(settings[k]) for k in keys)
    if not text.strip():
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"createOptions is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ManifestError("createOptions is not a JSON object")
    return options
