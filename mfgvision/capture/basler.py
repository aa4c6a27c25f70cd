"""Basler cameras (GigE, USB3) through pypylon: ``pip install 'mfgvision[basler]'``.

The camera is picked by serial number or user id (``camera_uri``), or is the first one found.
Acquisition uses ``GrabStrategy_LatestImageOnly``, so a slow consumer always gets the newest image;
every grab result is released, and a grab timeout is a SourceError (the capture thread reconnects)
unless the camera waits for a trigger.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mfgvision.capture.base import SourceError
from mfgvision.capture.features import Features
from mfgvision.capture.machine_vision import MachineVisionSource, pick_device, require_module
from mfgvision.capture.pixels import supported

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings


class PylonFeatures(Features):
    """A pylon node map as :class:`Features`."""

    def __init__(self, node_map: Any) -> None:
        from pypylon import genicam

        self._map = node_map
        self._genicam = genicam

    def _node(self, name: str) -> Any:
        return self._map.GetNode(name)

    def available(self, name: str) -> bool:
        return bool(self._genicam.IsAvailable(self._node(name)))

    def writable(self, name: str) -> bool:
        return bool(self._genicam.IsWritable(self._node(name)))

    def get(self, name: str) -> Any:
        return self._node(name).GetValue()

    def set(self, name: str, value: Any) -> None:
        self._node(name).SetValue(value)

    def execute(self, name: str) -> None:
        self._node(name).Execute()

    def entries(self, name: str) -> list[str]:
        return list(self._node(name).GetSymbolics())

    def limits(self, name: str) -> tuple[float, float, float | None]:
        node = self._node(name)
        inc = node.GetInc() if isinstance(node, self._genicam.IInteger) else None
        return node.GetMin(), node.GetMax(), inc


class BaslerSource(MachineVisionSource):
    """One Basler camera through pylon's InstantCamera."""

    kind = "basler"
    label = "Basler"

    def __init__(self, settings: CameraSettings) -> None:
        require_module("pypylon", "basler", self.label)
        super().__init__(settings)
        self._camera: Any = None
        self._converter: Any = None
        self._pixel_types: dict[int, str] = {}

    def _open_device(self) -> Features:
        from pypylon import pylon

        factory = pylon.TlFactory.GetInstance()
        devices = list(factory.EnumerateDevices())
        info = pick_device(
            devices,
            ([d.GetSerialNumber(), d.GetUserDefinedName()] for d in devices),
            self.selector,
            self.label,
        )
        self._camera = pylon.InstantCamera(factory.CreateDevice(info))
        self._camera.Open()
        self._pixel_types = {
            getattr(pylon, n): n.removeprefix("PixelType_")
            for n in dir(pylon)
            if n.startswith("PixelType_")
        }
        return PylonFeatures(self._camera.GetNodeMap())

    def _start(self) -> None:
        from pypylon import pylon

        self._camera.StartGrabbing(pylon.GrabStrategy_LatestImageOnly)

    def _grab(self, timeout_s: float) -> tuple[np.ndarray, str] | None:
        from pypylon import pylon

        camera = self._camera
        deadline = time.monotonic() + timeout_s
        while True:
            if camera is None or not camera.IsGrabbing():
                raise SourceError(f"{self.description}: acquisition stopped")
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            result = camera.RetrieveResult(left_ms, pylon.TimeoutHandling_Return)
            try:
                if not result.IsValid():
                    if not camera.IsGrabbing():
                        raise SourceError(f"{self.description}: acquisition stopped")
                    return None
                if result.GrabSucceeded():
                    return self._image(result)
                # An incomplete image (lost packets): skip it and keep waiting.
            finally:
                result.Release()
            if time.monotonic() >= deadline:
                return None

    def _image(self, result: Any) -> tuple[np.ndarray, str]:
        from pypylon import pylon

        name = self._pixel_types.get(result.GetPixelType(), "")
        if supported(name):
            try:
                return result.GetArray(), name
            except ValueError:  # a format pypylon has no numpy layout for (e.g. BGRA8Packed)
                pass
        if self._converter is None:
            self._converter = pylon.ImageFormatConverter()
            self._converter.OutputPixelFormat = pylon.PixelType_BGR8packed
        return self._converter.Convert(result).GetArray(), "BGR8"

    def _device_lost(self) -> bool:
        return bool(self._camera is not None and self._camera.IsCameraDeviceRemoved())

    def _abort(self) -> None:
        if self._camera is not None:
            self._camera.StopGrabbing()  # thread-safe; a blocked RetrieveResult returns

    def _close_device(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        for step in (camera.StopGrabbing, camera.Close, camera.DestroyDevice):
            with contextlib.suppress(Exception):
                step()
