"""What the transfer tools share: the storage client from the environment, MD5s, reports."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfgvision.image_upload.targets import (
    STORAGE_CONNECTION_ENV,
    TargetConfigError,
    service_client,
)

CHUNK = 1024 * 1024
READ_TIMEOUT_S = 120


def blob_service_from_env(env: Mapping[str, str] | None = None) -> Any:
    """A ``BlobServiceClient`` from ``MFGVISION_STORAGE_CONNECTION_STRING`` (never logged)."""
    from azure.storage.blob import BlobServiceClient

    env = os.environ if env is None else env
    connection_string = env.get(STORAGE_CONNECTION_ENV, "").strip()
    if not connection_string:
        raise TargetConfigError(f"set {STORAGE_CONNECTION_ENV} to the storage connection string")
    return service_client(BlobServiceClient, connection_string, READ_TIMEOUT_S)


def md5_file(path: Path) -> bytes:
    """MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.digest()


@dataclass
class TransferReport:
    """Counts of one run; ``failures`` holds ``(name, reason)``."""

    transferred: int = 0
    skipped: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "transferred": self.transferred,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "failed": len(self.failures),
            "failures": [f"{name}: {reason}" for name, reason in self.failures[:20]],
        }
