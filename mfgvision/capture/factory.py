"""Build the frame source a camera's settings describe."""

from __future__ import annotations

from pathlib import Path

from mfgvision.capture.base import FrameSource, SourceError
from mfgvision.capture.folder import ImageFolderSource
from mfgvision.capture.opencv_stream import OpenCVSource
from mfgvision.settings import CameraSettings


def resolve_path(uri: str, assets_dir: Path, *data_dirs: Path) -> Path:
    """A folder or file of the assets folder (a relative path is taken relative to it) or of a data
    folder; SourceError for a path that leads anywhere else (absolute elsewhere, ``..``, a link
    out)."""
    path = (assets_dir.resolve() / uri).resolve()
    roots = [assets_dir, *data_dirs]
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        allowed = " or ".join(str(root) for root in roots)
        raise SourceError(f"camera path {uri!r} is outside the assets and data folders {allowed}")
    return path


def build_source(settings: CameraSettings, assets_dir: Path, *data_dirs: Path) -> FrameSource:
    """The source for ``settings.camera_type``; folder and video paths only under ``assets_dir``
    or a ``data_dirs`` folder.

    Raises SourceError when the camera type needs an SDK that is not installed (the message names
    the extra to install). The SDK adapters import their SDK only when they open the camera.
    """
    kind, uri = settings.camera_type, settings.camera_uri
    timeout_ms = round(settings.camera_timeout_s * 1000)
    if kind == "folder":
        return ImageFolderSource(
            resolve_path(uri, assets_dir, *data_dirs), loop=settings.camera_loop
        )
    if kind == "video":
        path = str(resolve_path(uri, assets_dir, *data_dirs))
        return OpenCVSource(path, "video", loop=settings.camera_loop, timeout_ms=timeout_ms)
    if kind in ("rtsp", "http", "usb"):
        return OpenCVSource(
            uri, kind, timeout_ms=timeout_ms, transport=settings.camera_rtsp_transport
        )
    if kind == "basler":
        from mfgvision.capture.basler import BaslerSource

        return BaslerSource(settings)
    if kind == "allied":
        from mfgvision.capture.allied import AlliedSource

        return AlliedSource(settings)
    if kind == "genicam":
        from mfgvision.capture.gentl import GenTLSource

        return GenTLSource(settings)
    raise SourceError(f"camera type '{kind}' is not supported")
