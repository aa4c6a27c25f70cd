"""Any GenICam camera with a GenTL producer, through harvesters: ``pip install 'mfgvision[genicam]'``.

The producer is a vendor's ``.cti`` file, a shared library the module loads, so it comes only from the
folders of the ``GENICAM_GENTL64_PATH`` environment variable (the variable the vendors' SDK installers
set), never from a path in the twin: ``camera_gentl_producer`` names one file there, else every
``.cti`` there is loaded. The camera is picked by serial number, user-defined name or GenTL
device id (``camera_uri``), or is the first one found.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mfgvision.capture.base import SourceError
from mfgvision.capture.features import Features
from mfgvision.capture.machine_vision import MachineVisionSource, pick_device, require_module

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

PRODUCER_ENV = "GENICAM_GENTL64_PATH"


def find_producers(setting: str | None, env: str | None) -> list[Path]:
    """The ``.cti`` files to load from the folders of ``env``: the one named ``setting`` (a file
    name, never a path), else all of them."""
    if setting is not None and Path(setting).name != setting:
        raise SourceError(f"camera_gentl_producer must be a file name in {PRODUCER_ENV}")
    found: list[Path] = []
    for folder in (env or "").split(os.pathsep):
        if folder and Path(folder).is_dir():
            found.extend(sorted(Path(folder).glob(setting or "*.cti")))
    if not found:
        wanted = f"GenTL producer {setting}" if setting else "GenTL producer"
        raise SourceError(
            f"no {wanted} in the folders of {PRODUCER_ENV}: set it to the folder of the camera "
            "vendor's .cti file"
        )
    return found


def _info(device: Any, attribute: str) -> str:
    """A device-info field; producers raise for the ones they do not support."""
    try:
        return str(getattr(device, attribute))
    except Exception:
        return ""


class GenApiFeatures(Features):
    """A harvesters (genicam.genapi) node map as :class:`Features`."""

    def __init__(self, node_map: Any) -> None:
        from genicam.genapi import EAccessMode, IInteger

        self._map = node_map
        self._integer = IInteger
        self._usable = {EAccessMode.RO, EAccessMode.WO, EAccessMode.RW}
        self._writable = {EAccessMode.WO, EAccessMode.RW}

    def _node(self, name: str) -> Any:
        return self._map.get_node(name)

    def _mode(self, name: str) -> Any:
        try:
            return self._node(name).get_access_mode()
        except Exception:  # LogicalErrorException: the camera has no such node
            return None

    def available(self, name: str) -> bool:
        return self._mode(name) in self._usable

    def writable(self, name: str) -> bool:
        return self._mode(name) in self._writable

    def get(self, name: str) -> Any:
        return self._node(name).value

    def set(self, name: str, value: Any) -> None:
        self._node(name).value = value

    def execute(self, name: str) -> None:
        self._node(name).execute()

    def entries(self, name: str) -> list[str]:
        return list(self._node(name).symbolics)

    def limits(self, name: str) -> tuple[float, float, float | None]:
        node = self._node(name)
        return node.min, node.max, node.inc if isinstance(node, self._integer) else None


class GenTLSource(MachineVisionSource):
    """One camera through a GenTL producer and harvesters' ImageAcquirer."""

    kind = "genicam"
    label = "GenICam"

    def __init__(self, settings: CameraSettings) -> None:
        require_module("harvesters", "genicam", self.label)
        super().__init__(settings)
        self.producer = settings.camera_gentl_producer
        self._harvester: Any = None
        self._acquirer: Any = None

    def _open_device(self) -> Features:
        from harvesters.core import Harvester

        producers = find_producers(self.producer, os.environ.get(PRODUCER_ENV))
        self._harvester = harvester = Harvester()
        for cti in producers:
            harvester.add_file(str(cti))
        harvester.update()
        devices = list(harvester.device_info_list)
        device = pick_device(
            list(range(len(devices))),
            (
                [_info(d, "serial_number"), _info(d, "user_defined_name"), _info(d, "id_")]
                for d in devices
            ),
            self.selector,
            self.label,
        )
        self._acquirer = harvester.create(device)
        return GenApiFeatures(self._acquirer.remote_device.node_map)

    def _start(self) -> None:
        self._acquirer.start()

    def _grab(self, timeout_s: float) -> tuple[np.ndarray, str] | None:
        acquirer = self._acquirer
        if acquirer is None:
            raise SourceError(f"{self.description}: acquisition stopped")
        buffer = acquirer.try_fetch(timeout=timeout_s)
        if buffer is None:
            return None
        try:
            component = buffer.payload.components[0]
            image = component.data.reshape(component.height, component.width, -1).copy()
            return image, str(component.data_format)
        finally:
            buffer.queue()

    def _close_device(self) -> None:
        acquirer, self._acquirer = self._acquirer, None
        harvester, self._harvester = self._harvester, None
        if acquirer is not None:
            with contextlib.suppress(Exception):
                acquirer.stop()
            with contextlib.suppress(Exception):
                acquirer.destroy()
        if harvester is not None:
            with contextlib.suppress(Exception):
                harvester.reset()
