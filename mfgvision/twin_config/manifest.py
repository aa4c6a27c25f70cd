"""Adding a camera: clone a CIS module entry of a deployment manifest under a new name.

The clone copies the module's ``$edgeAgent`` entry (image, createOptions, env), its routes (with the
module name replaced) and its module twin, with the new camera's settings validated by the same
``parse_settings`` the module runs. Secrets read from a live deployment (registry passwords,
connection strings, passwords in URLs) are replaced by ``${VARIABLE}`` placeholders so the
downloaded file can be shared and is filled in from ``.env`` at deployment time.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import CisSettings, parse_settings

MODULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_SECRET_NAME = re.compile(r"pass(word)?|pwd|secret|token|key|conn(ection)?_?str", re.I)
_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)([^@\s]+)(@)")
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_.]*\}")


class ManifestEditError(ValueError):
    """The clone cannot be made; the message says why."""


def _env_var(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def redact(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy with secret values replaced by ``${NAME}`` placeholders."""
    out = copy.deepcopy(manifest)
    agent = (out.get("modulesContent") or {}).get("$edgeAgent", {}).get("properties.desired", {})
    registries = ((agent.get("runtime") or {}).get("settings") or {}).get(
        "registryCredentials"
    ) or {}
    for name, creds in registries.items():
        if isinstance(creds, dict):
            for field in ("username", "password"):
                value = creds.get(field)
                if isinstance(value, str) and value and not _PLACEHOLDER.fullmatch(value):
                    creds[field] = f"${{{_env_var(name)}_{field.upper()}}}"
    for section in ("systemModules", "modules"):
        for spec in (agent.get(section) or {}).values():
            for key, entry in ((spec or {}).get("env") or {}).items():
                value = entry.get("value") if isinstance(entry, dict) else None
                if not isinstance(value, str) or not value or _PLACEHOLDER.fullmatch(value):
                    continue
                if _SECRET_NAME.search(key):
                    entry["value"] = f"${{{_env_var(key)}}}"
                elif _URL_PASSWORD.search(value):
                    entry["value"] = _URL_PASSWORD.sub(r"\1${MYSQL_PASSWORD}\3", value)
    return out


METRICS_PORT_ENV = "MFGVISION_METRICS_PORT"


def _own_metrics_port(modules: dict[str, Any], name: str) -> None:
    """Give module ``name`` a metrics port no other module uses (modules share the host network)."""
    env = modules[name].get("env") or {}
    entry = env.get(METRICS_PORT_ENV)
    if not isinstance(entry, dict):
        return
    used = set()
    for other, spec in modules.items():
        value = ((spec.get("env") or {}).get(METRICS_PORT_ENV) or {}).get("value")
        if other != name and str(value).isdigit():
            used.add(int(value))
    entry["value"] = str(max(used, default=9463) + 1)


def clone_camera(
    manifest: dict[str, Any],
    source: str,
    new_module: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """``manifest`` plus module ``new_module`` cloned from ``source`` with ``settings`` merged
    into the source's desired properties; raises ManifestEditError or SettingsError."""
    if MODULE_NAME.fullmatch(new_module) is None:
        raise ManifestEditError(
            "the module name must start with a letter and hold only letters, digits and _"
        )
    out = redact(manifest)
    content = out.get("modulesContent")
    if not isinstance(content, dict):
        raise ManifestEditError("the deployment has no modulesContent")
    agent = content.get("$edgeAgent", {}).get("properties.desired", {})
    modules = agent.get("modules") or {}
    if source not in modules:
        raise ManifestEditError(f"no module '{source}' in the deployment")
    if new_module in modules:
        raise ManifestEditError(f"a module named '{new_module}' exists already")
    source_desired = (content.get(source) or {}).get("properties.desired") or {}
    source_desired = {k: v for k, v in source_desired.items() if not k.startswith("$")}
    desired = merge_patch(source_desired, settings)
    parse_settings(CisSettings, desired)  # raises SettingsError, as the module would
    for name in modules:
        other = (content.get(name) or {}).get("properties.desired") or {}
        if name != source and other.get("camera_id") == desired.get("camera_id"):
            raise ManifestEditError(f"camera id '{desired.get('camera_id')}' is used by {name}")
    if source_desired.get("camera_id") == desired.get("camera_id"):
        raise ManifestEditError(f"camera id '{desired.get('camera_id')}' is used by {source}")
    modules[new_module] = copy.deepcopy(modules[source])
    _own_metrics_port(modules, new_module)
    content[new_module] = {"properties.desired": desired}
    hub = content.get("$edgeHub", {}).get("properties.desired", {})
    routes = hub.get("routes") or {}
    pattern = re.compile(rf"/modules/{re.escape(source)}/")
    for name, route in list(routes.items()):
        text = route.get("route") if isinstance(route, dict) else route
        if isinstance(text, str) and pattern.search(text):
            new_text = pattern.sub(f"/modules/{new_module}/", text)
            new_name = name.replace(source, new_module) if source in name else f"{new_module}{name}"
            while new_name in routes:
                new_name += "_"
            routes[new_name] = {**route, "route": new_text} if isinstance(route, dict) else new_text
    return out
