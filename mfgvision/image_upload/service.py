"""The ImageUpload module: ``imageUpload`` messages in, image files copied to blob storage out.

This slice ships the local-folder target used by the embedded demo (``<blobs>/<container>/<blob>``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mfgvision.edge.hub import Hub, HubMessage
from mfgvision.store.images import write_atomic

log = logging.getLogger(__name__)

UPLOAD_INPUT = "imageUpload"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_SAFE_BLOB = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+){0,8}$")
_CONTAINERS = {"images-annotated", "images-frame", "images-retraining"}


class UploadRequestError(ValueError):
    """An upload message that cannot be honoured (bad JSON, unsafe names, unknown container)."""


def parse_request(message: HubMessage) -> dict[str, str]:
    """Validate an ``imageUpload`` body; only plain names, never paths, are trusted."""
    try:
        body = message.json()
    except ValueError as exc:
        raise UploadRequestError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UploadRequestError("body is not a JSON object")
    name, blob, container = body.get("img_name"), body.get("blob_name"), body.get("container")
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name.startswith("."):
        raise UploadRequestError(f"unsafe or missing img_name {name!r}")
    if not isinstance(blob, str) or not _SAFE_BLOB.match(blob) or ".." in blob.split("/"):
        raise UploadRequestError(f"unsafe or missing blob_name {blob!r}")
    if container not in _CONTAINERS:
        raise UploadRequestError(f"unknown container {container!r}")
    return {"img_name": name, "blob_name": blob, "container": str(container)}


class LocalFolderTarget:
    """Blob storage stood in for by a folder: one sub-folder per container."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def upload(self, container: str, blob_name: str, data: bytes) -> bool:
        """Store the blob; False when an identical blob is already there (never uploaded twice)."""
        path = self.root / container / blob_name
        if path.is_file() and path.stat().st_size == len(data):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return True


class ImageUploadService:
    """Copies each requested image from the images folder to the target."""

    def __init__(self, hub: Hub, images_dir: Path, target: LocalFolderTarget) -> None:
        self.hub = hub
        self.images_dir = images_dir
        self.target = target
        self.counters: dict[str, int] = {"uploaded": 0, "skipped": 0, "rejected": 0, "failed": 0}

    def start(self) -> None:
        self.hub.connect()
        self.hub.on_input(UPLOAD_INPUT, self.handle)
        self.hub.on_method("status", lambda _p: self.status())

    def stop(self) -> None:
        self.hub.disconnect()
        self.hub.patch_reported(self.status())

    def status(self) -> dict[str, Any]:
        return {"status": {"state": "running", "counters": dict(self.counters)}}

    def handle(self, message: HubMessage) -> None:
        try:
            req = parse_request(message)
        except UploadRequestError as exc:
            self.counters["rejected"] += 1
            log.error("upload request rejected", extra={"error": str(exc)})
            return
        path = self.images_dir / req["img_name"]
        try:
            uploaded = self.target.upload(req["container"], req["blob_name"], path.read_bytes())
        except OSError as exc:
            self.counters["failed"] += 1
            log.error("upload failed", extra={"image": req["img_name"], "error": str(exc)})
            return
        self.counters["uploaded" if uploaded else "skipped"] += 1
        log.debug("image uploaded", extra={"image": req["img_name"], "container": req["container"]})
