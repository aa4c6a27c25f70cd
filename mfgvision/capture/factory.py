"""Build the frame source a camera's settings describe."""

from __future__ import annotations

from pathlib import Path

from mfgvision.capture.base import FrameSource, SourceError
from mfgvision.capture.folder import ImageFolderSource
from mfgvision.capture.opencv_stream import OpenCVSource
from mfgvision.settings import CisSettings


def resolve_path(uri: str, assets_dir: Path) -> Path:
    """A relative folder or file path is taken relative to the assets folder."""
    path = Path(uri).expanduser()
    return path if path.is_absolute() else assets_dir / path


def build_source(settings: CisSettings, assets_dir: Path) -> FrameSource:
    """The source for ``settings.camera_type``; raises SourceError for types this build lacks."""
    kind, uri = settings.camera_type, settings.camera_uri
    if kind == "folder":
        return ImageFolderSource(resolve_path(uri, assets_dir), loop=settings.camera_loop)
    if kind == "video":
        return OpenCVSource(str(resolve_path(uri, assets_dir)), "video", loop=settings.camera_loop)
    if kind in ("rtsp", "http", "usb"):
        return OpenCVSource(uri, kind)
    raise SourceError(f"camera type '{kind}' needs its camera SDK extra, which is not installed")
