"""Allied Vision cameras through vmbpy (Vimba X): ``pip install 'mfgvision[allied]'``.

vmbpy brings the API but not the transport layers (GigE, USB3 drivers): those come with Vimba X,
installed in the image (docs/cameras.md) and found through ``GENICAM_GENTL64_PATH``.

The camera is picked by camera id, serial number or model name (``camera_uri``), or is the first
one found. Frames stream asynchronously: vmbpy's frame handler only copies the image into a slot of
two and hands the buffer back to the camera at once; inference never runs inside the SDK's thread.
"""

from __future__ import annotations

import contextlib
import queue
from typing import TYPE_CHECKING, Any

import numpy as np

from mfgvision.capture.base import SourceError
from mfgvision.capture.features import Features
from mfgvision.capture.machine_vision import MachineVisionSource, pick_device, require_module
from mfgvision.capture.pixels import supported

if TYPE_CHECKING:
    from mfgvision.settings import CameraSettings

_ABORT = object()


class VmbFeatures(Features):
    """A vmbpy camera's features as :class:`Features`."""

    def __init__(self, camera: Any) -> None:
        from vmbpy import EnumFeature, IntFeature, VmbFeatureError

        self._camera = camera
        self._enum = EnumFeature
        self._int = IntFeature
        self._missing = VmbFeatureError

    def _feature(self, name: str) -> Any:
        return self._camera.get_feature_by_name(name)

    def available(self, name: str) -> bool:
        try:
            return bool(self._feature(name).is_readable() or self._feature(name).is_writeable())
        except self._missing:
            return False

    def writable(self, name: str) -> bool:
        try:
            return bool(self._feature(name).is_writeable())
        except self._missing:
            return False

    def get(self, name: str) -> Any:
        feature = self._feature(name)
        value = feature.get()
        return str(value) if isinstance(feature, self._enum) else value

    def set(self, name: str, value: Any) -> None:
        self._feature(name).set(value)

    def execute(self, name: str) -> None:
        self._feature(name).run()

    def entries(self, name: str) -> list[str]:
        return [str(entry) for entry in self._feature(name).get_available_entries()]

    def limits(self, name: str) -> tuple[float, float, float | None]:
        feature = self._feature(name)
        lo, hi = feature.get_range()
        return lo, hi, feature.get_increment() if isinstance(feature, self._int) else None


class AlliedSource(MachineVisionSource):
    """One Allied Vision camera through vmbpy's asynchronous streaming."""

    kind = "allied"
    label = "Allied Vision"

    def __init__(self, settings: CameraSettings, buffers: int = 5) -> None:
        require_module("vmbpy", "allied", self.label)
        super().__init__(settings)
        self.buffers = buffers
        self._system: Any = None
        self._camera: Any = None
        self._frames: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._lost = False

    def _open_device(self) -> Features:
        import vmbpy

        self._lost = False
        system = vmbpy.VmbSystem.get_instance()
        system.__enter__()  # starts the SDK; left in _close_device
        self._system = system
        cameras = list(system.get_all_cameras())
        camera = pick_device(
            cameras,
            ([c.get_id(), c.get_serial(), c.get_name()] for c in cameras),
            self.selector,
            self.label,
        )
        camera.__enter__()  # opens the camera
        self._camera = camera
        system.register_camera_change_handler(self._on_camera_change)
        return VmbFeatures(camera)

    def _on_camera_change(self, camera: Any, event: Any) -> None:
        from vmbpy import CameraEvent

        current = self._camera
        gone = event in (CameraEvent.Missing, CameraEvent.Unreachable)
        if gone and current is not None and camera.get_id() == current.get_id():
            self._lost = True
            self._put(_ABORT)

    def _put(self, item: Any) -> None:
        """Keep the newest items: drop the oldest when the slot is full."""
        while True:
            try:
                self._frames.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._frames.get_nowait()

    def _on_frame(self, camera: Any, _stream: Any, frame: Any) -> None:
        """vmbpy's thread: copy the image out and give the buffer back at once."""
        from vmbpy import FrameStatus, PixelFormat

        try:
            if frame.get_status() == FrameStatus.Complete:
                name = str(frame.get_pixel_format())
                if supported(name):
                    image = frame.as_numpy_ndarray().copy()
                else:
                    image = frame.convert_pixel_format(PixelFormat.Bgr8).as_numpy_ndarray().copy()
                    name = "BGR8"
                self._put((image, name))
        finally:
            camera.queue_frame(frame)

    def _start(self) -> None:
        while not self._frames.empty():
            self._frames.get_nowait()
        self._camera.start_streaming(handler=self._on_frame, buffer_count=self.buffers)

    def _grab(self, timeout_s: float) -> tuple[np.ndarray, str] | None:
        try:
            item = self._frames.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is _ABORT:
            raise SourceError(f"{self.description}: acquisition stopped")
        image, name = item
        return image, name

    def _device_lost(self) -> bool:
        return self._lost

    def _abort(self) -> None:
        self._put(_ABORT)

    def _close_device(self) -> None:
        camera, self._camera = self._camera, None
        system, self._system = self._system, None
        if camera is not None:
            with contextlib.suppress(Exception):
                camera.stop_streaming()
            with contextlib.suppress(Exception):
                camera.__exit__(None, None, None)
        if system is not None:
            with contextlib.suppress(Exception):
                system.unregister_camera_change_handler(self._on_camera_change)
            with contextlib.suppress(Exception):
                system.__exit__(None, None, None)
