"""Where module twins live: IoT Hub (cloud) or the in-process broker (demo); the edgeHub stand-in's
registry is in :mod:`mfgvision.deploy.twin_registry`.

Each registry lists devices and their modules, reads a module twin (desired and reported
properties) and patches desired properties with optimistic concurrency: the patch carries the etag
the user saw, and a twin changed in between is refused with :class:`ConflictError`.
"""

from __future__ import annotations

import copy
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.manifest import ManifestError, join_create_options

if TYPE_CHECKING:
    from azure.iot.hub import IoTHubRegistryManager

log = logging.getLogger(__name__)

CONNECTION_STRING_ENV = "MFGVISION_IOTHUB_CONNECTION_STRING"
SYSTEM_MODULES = frozenset({"$edgeAgent", "$edgeHub"})
LOCAL_DEVICE = "local"


class RegistryError(Exception):
    """The registry could not do what was asked; the message is fit for the user."""


class NotFoundError(RegistryError):
    """No such device or module."""


class ConflictError(RegistryError):
    """The twin changed since it was read; read it again and review the change."""


@dataclass(frozen=True)
class ModuleInfo:
    """A module of a device and the command its image runs (``cis``, ``dashboard``, ...)."""

    device_id: str
    module_id: str
    kind: str | None


@dataclass
class ModuleTwin:
    """Desired and reported properties of one module twin, with the etag to patch against."""

    device_id: str
    module_id: str
    desired: dict[str, Any]
    reported: dict[str, Any]
    etag: str
    kind: str | None = None

    @property
    def desired_version(self) -> int | None:
        version = self.desired.get("$version")
        return int(version) if isinstance(version, int) else None

    @property
    def settings(self) -> dict[str, Any]:
        """Desired properties without the ``$`` metadata."""
        return {k: v for k, v in self.desired.items() if not k.startswith("$")}


@dataclass
class DeploymentInfo:
    """A device's deployment as a manifest (what the add-camera page clones from)."""

    manifest: dict[str, Any]
    commands: dict[str, list[str]] = field(default_factory=dict)


class TwinRegistry(ABC):
    """Lists devices and modules, reads twins and patches desired properties."""

    name: str = "registry"

    @abstractmethod
    def devices(self) -> list[str]:
        """Ids of the IoT Edge devices, sorted."""

    @abstractmethod
    def modules(self, device_id: str) -> list[ModuleInfo]:
        """Custom modules of a device (no ``$edgeAgent``/``$edgeHub``), sorted by id."""

    @abstractmethod
    def twin(self, device_id: str, module_id: str) -> ModuleTwin:
        """The module twin; raises NotFoundError."""

    @abstractmethod
    def patch_desired(
        self, device_id: str, module_id: str, patch: dict[str, Any], etag: str
    ) -> ModuleTwin:
        """Merge ``patch`` into the desired properties if the twin still has ``etag``."""

    @abstractmethod
    def deployment(self, device_id: str) -> DeploymentInfo:
        """The device's deployment manifest (``modulesContent`` with module twins)."""

    def images_dir(self, device_id: str) -> Path | None:
        """The folder the device's cameras store their images in, when this tool can read it (a
        local device); None otherwise (IoT Hub: the images stay on the device)."""
        return None


def command_of(module_spec: dict[str, Any]) -> list[str]:
    """The ``Cmd`` of an ``$edgeAgent`` module entry (createOptions as an object, a string or
    ``createOptions01``... chunks)."""
    try:
        options = join_create_options(module_spec.get("settings") or {})
    except ManifestError:
        return []
    cmd = options.get("Cmd")
    return [str(c) for c in cmd] if isinstance(cmd, list) else []


def module_kind(commands: dict[str, list[str]], module_id: str) -> str | None:
    command = commands.get(module_id)
    if command:
        return command[0]
    # Manifests of the original system name their camera modules ..._CIS_...
    return "cis" if "cis" in module_id.lower() else None


def module_twin(
    device_id: str,
    module_id: str,
    twin: dict[str, Any],
    commands: dict[str, list[str]],
    unversioned: int,
) -> ModuleTwin:
    """A module twin from its ``desired``/``reported`` sections; ``unversioned`` is the etag when
    the desired section has no ``$version``."""
    desired = twin.get("desired") or {}
    return ModuleTwin(
        device_id,
        module_id,
        desired,
        twin.get("reported") or {},
        str(desired.get("$version", unversioned)),
        module_kind(commands, module_id),
    )


class CloudRegistry(TwinRegistry):
    """IoT Hub through the service SDK's ``IoTHubRegistryManager``."""

    name = "IoT Hub"

    def __init__(self, manager: IoTHubRegistryManager, page_size: int = 100) -> None:
        self.manager = manager
        self.page_size = page_size

    @classmethod
    def from_env(cls) -> CloudRegistry:
        """From ``MFGVISION_IOTHUB_CONNECTION_STRING`` (an iothubowner-style connection string)."""
        conn = os.environ.get(CONNECTION_STRING_ENV, "").strip()
        if not conn:
            raise RegistryError(f"set {CONNECTION_STRING_ENV} to the IoT Hub connection string")
        from azure.iot.hub import IoTHubRegistryManager

        return cls(IoTHubRegistryManager.from_connection_string(conn))

    def devices(self) -> list[str]:
        from azure.iot.hub.models import QuerySpecification

        query = QuerySpecification(query="SELECT * FROM devices WHERE capabilities.iotEdge = true")
        ids: list[str] = []
        token = None
        try:
            while True:
                result = self.manager.query_iot_hub(query, token, self.page_size)
                ids.extend(item.device_id for item in result.items or [] if item.device_id)
                token = result.continuation_token
                if not token:
                    break
        except Exception as exc:
            raise _cloud_error(exc, "listing devices") from exc
        return sorted(set(ids))

    def modules(self, device_id: str) -> list[ModuleInfo]:
        try:
            found = self.manager.get_modules(device_id)
        except Exception as exc:
            raise _cloud_error(exc, f"listing the modules of {device_id}") from exc
        commands = self._commands(device_id)
        ids = sorted(
            m.module_id for m in found or [] if m.module_id and m.module_id not in SYSTEM_MODULES
        )
        return [ModuleInfo(device_id, mid, module_kind(commands, mid)) for mid in ids]

    def twin(self, device_id: str, module_id: str) -> ModuleTwin:
        try:
            twin = self.manager.get_module_twin(device_id, module_id)
        except Exception as exc:
            raise _cloud_error(exc, f"reading the twin of {device_id}/{module_id}") from exc
        return self._module_twin(device_id, module_id, twin)

    def patch_desired(
        self, device_id: str, module_id: str, patch: dict[str, Any], etag: str
    ) -> ModuleTwin:
        from azure.iot.hub.models import Twin, TwinProperties

        body = Twin(properties=TwinProperties(desired=patch))
        try:
            twin = self.manager.update_module_twin(device_id, module_id, body, etag)
        except Exception as exc:
            raise _cloud_error(exc, f"updating the twin of {device_id}/{module_id}") from exc
        log.info(
            "desired properties patched",
            extra={"device": device_id, "module_name": module_id, "keys": sorted(patch)},
        )
        return self._module_twin(device_id, module_id, twin)

    def deployment(self, device_id: str) -> DeploymentInfo:
        agent = self._desired(device_id, "$edgeAgent")
        hub = self._desired(device_id, "$edgeHub")
        content: dict[str, Any] = {
            "$edgeAgent": {"properties.desired": agent},
            "$edgeHub": {"properties.desired": hub},
        }
        commands = {name: command_of(spec) for name, spec in (agent.get("modules") or {}).items()}
        for name in sorted(agent.get("modules") or {}):
            content[name] = {"properties.desired": self._desired(device_id, name)}
        return DeploymentInfo({"modulesContent": content}, commands)

    def _desired(self, device_id: str, module_id: str) -> dict[str, Any]:
        twin = self.twin(device_id, module_id)
        return {k: v for k, v in twin.desired.items() if not k.startswith("$")}

    def _commands(self, device_id: str) -> dict[str, list[str]]:
        try:
            agent = self.manager.get_module_twin(device_id, "$edgeAgent")
            desired = _as_dict(getattr(agent.properties, "desired", None))
        except Exception:
            return {}
        modules = desired.get("modules") or {}
        return {name: command_of(spec) for name, spec in modules.items() if isinstance(spec, dict)}

    def _module_twin(self, device_id: str, module_id: str, twin: Any) -> ModuleTwin:
        props = getattr(twin, "properties", None)
        return ModuleTwin(
            device_id,
            module_id,
            _as_dict(getattr(props, "desired", None)),
            _as_dict(getattr(props, "reported", None)),
            str(getattr(twin, "etag", "") or "*"),
            module_kind(self._commands(device_id), module_id),
        )


def _as_dict(value: Any) -> dict[str, Any]:
    return copy.deepcopy(value) if isinstance(value, dict) else {}


def _cloud_error(exc: Exception, doing: str) -> RegistryError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 404:
        return NotFoundError(f"{doing}: not found")
    if status == 412:
        return ConflictError(f"{doing}: the twin changed meanwhile")
    log.warning("IoT Hub request failed", extra={"doing": doing, "error": type(exc).__name__})
    return RegistryError(f"{doing} failed: {type(exc).__name__}")


class OneDeviceRegistry(TwinRegistry):
    """A registry of one local device: a desired patch is checked against the twin's etag, then
    written by ``_patch``; its cameras' images are in ``images``, when given."""

    device_id: str
    images: Path | None = None

    def images_dir(self, device_id: str) -> Path | None:
        self._device(device_id)
        return self.images

    def devices(self) -> list[str]:
        return [self.device_id]

    def patch_desired(
        self, device_id: str, module_id: str, patch: dict[str, Any], etag: str
    ) -> ModuleTwin:
        current = self.twin(device_id, module_id)
        if etag not in ("*", current.etag):
            raise ConflictError("the twin changed since you opened it")
        self._patch(module_id, patch)
        return self.twin(device_id, module_id)

    @abstractmethod
    def _patch(self, module_id: str, patch: dict[str, Any]) -> None:
        """Merge ``patch`` into the module's desired properties."""

    def _device(self, device_id: str) -> None:
        if device_id != self.device_id:
            raise NotFoundError(f"no device '{device_id}'")


class LocalRegistry(OneDeviceRegistry):
    """The in-process broker of ``mfgvision demo``: one device, the manifest's modules."""

    name = "local demo"

    def __init__(
        self,
        broker: InProcessBroker,
        manifest: dict[str, Any],
        commands: dict[str, list[str]],
        device_id: str = LOCAL_DEVICE,
        images: Path | None = None,
    ) -> None:
        self.broker = broker
        self.manifest = manifest
        self.commands = commands
        self.device_id = device_id
        self.images = images

    def modules(self, device_id: str) -> list[ModuleInfo]:
        self._device(device_id)
        return [
            ModuleInfo(device_id, m, module_kind(self.commands, m)) for m in sorted(self.commands)
        ]

    def twin(self, device_id: str, module_id: str) -> ModuleTwin:
        self._device(device_id)
        if module_id not in self.commands:
            raise NotFoundError(f"no module '{module_id}' on {device_id}")
        twin = self.broker.hub(module_id).get_twin()
        return module_twin(device_id, module_id, twin, self.commands, unversioned=1)

    def _patch(self, module_id: str, patch: dict[str, Any]) -> None:
        self.broker.patch_desired(module_id, patch)
        log.info(
            "desired properties patched", extra={"module_name": module_id, "keys": sorted(patch)}
        )

    def deployment(self, device_id: str) -> DeploymentInfo:
        self._device(device_id)
        return DeploymentInfo(copy.deepcopy(self.manifest), dict(self.commands))
