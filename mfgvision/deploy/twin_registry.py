"""The edgeHub stand-in's module twins for the twin configuration tool (``mfgvision twin-config
--edgehub-state``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mfgvision.deploy.control import ControlClient, StandInError
from mfgvision.deploy.twin_store import TwinError, TwinStore
from mfgvision.manifest import load_manifest
from mfgvision.twin_config.registry import (
    LOCAL_DEVICE,
    DeploymentInfo,
    ModuleInfo,
    ModuleTwin,
    NotFoundError,
    OneDeviceRegistry,
    RegistryError,
    module_kind,
    module_twin,
)


class StandInRegistry(OneDeviceRegistry):
    """The edgeHub stand-in (``mfgvision edgehub``): its control API while it runs, else its
    twins file."""

    name = "edgeHub stand-in"

    def __init__(
        self,
        state: Path,
        manifest_path: Path,
        device_id: str = LOCAL_DEVICE,
        images: Path | None = None,
    ) -> None:
        self.state = state
        self.manifest_path = manifest_path
        self.device_id = device_id
        self.images = images
        self._parsed: tuple[tuple[int, int], dict[str, Any], dict[str, list[str]]] | None = None

    def _manifest(self) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The manifest and each module's command; read again only when the file changed."""
        st = self.manifest_path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if self._parsed is None or self._parsed[0] != stamp:
            manifest = load_manifest(self.manifest_path, strict=False)
            commands = {name: spec.command for name, spec in manifest.modules.items()}
            self._parsed = (stamp, manifest.raw, commands)
        return self._parsed[1], self._parsed[2]

    def modules(self, device_id: str) -> list[ModuleInfo]:
        self._device(device_id)
        _, commands = self._manifest()
        return [ModuleInfo(device_id, m, module_kind(commands, m)) for m in sorted(commands)]

    def twin(self, device_id: str, module_id: str) -> ModuleTwin:
        self._device(device_id)
        _, commands = self._manifest()
        try:
            client = ControlClient.from_state(self.state)
            twin = (
                client.twin(module_id)
                if client
                else TwinStore(self.state / "twins.json").twin(module_id)
            )
        except (StandInError, TwinError) as exc:
            raise NotFoundError(str(exc)) from exc
        return module_twin(device_id, module_id, twin, commands, unversioned=0)

    def _patch(self, module_id: str, patch: dict[str, Any]) -> None:
        try:
            client = ControlClient.from_state(self.state)
            if client is not None:
                client.patch(module_id, patch)
            else:
                TwinStore(self.state / "twins.json").patch_desired(module_id, patch)
        except (StandInError, TwinError) as exc:
            raise RegistryError(str(exc)) from exc

    def deployment(self, device_id: str) -> DeploymentInfo:
        self._device(device_id)
        raw, commands = self._manifest()
        return DeploymentInfo(copy.deepcopy(raw), dict(commands))
