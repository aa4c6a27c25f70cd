"""Where images are uploaded to: Azure Blob Storage, ADLS Gen2, or a local folder (demo).

Every target answers ``put(blob)`` the same way: True when it stored the blob, False when an identical
blob (same size and MD5) is already there, so an image is never uploaded twice. It raises
``UploadError``: ``outage=True`` when the service cannot be reached or refuses every request (network,
5xx, throttling, credentials), so the uploader pauses instead of blaming the image; ``outage=False``
when this blob is at fault (a different blob already holds the name, a refused name).

The storage connection string comes only from the environment, is never logged, and is never echoed
in an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from mfgvision.store.images import write_atomic

log = logging.getLogger(__name__)

STORAGE_CONNECTION_ENV = "MFGVISION_STORAGE_CONNECTION_STRING"
CONNECTION_TIMEOUT_S = 10
READ_TIMEOUT_S = 30
# Status codes that say nothing about the blob itself: the service is unwell or refuses everyone.
_OUTAGE_STATUS = {401, 403, 408, 429}


class UploadError(Exception):
    """An upload that did not happen; ``outage`` tells whether the blob is to blame."""

    def __init__(self, message: str, outage: bool) -> None:
        super().__init__(message)
        self.outage = outage


class TargetConfigError(ValueError):
    """The configured target cannot be built (e.g. no connection string in the environment)."""


@dataclass(frozen=True)
class Blob:
    """One blob to store."""

    container: str
    name: str
    data: bytes
    content_type: str = "image/jpeg"
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def md5(self) -> bytes:
        return hashlib.md5(self.data).digest()


class UploadTarget(Protocol):
    """What the ImageUpload module uploads through."""

    kind: str

    def put(self, blob: Blob) -> bool:
        """Store ``blob``; False when an identical one is already there."""
        ...


def create_target(kind: str, blobs_dir: Path, env: Mapping[str, str] | None = None) -> UploadTarget:
    """The target for a settings value ``auto``, ``blob``, ``adls`` or ``local``.

    ``auto`` means Blob Storage when the connection string is set, else the local folder.
    """
    env = os.environ if env is None else env
    connection_string = env.get(STORAGE_CONNECTION_ENV, "").strip()
    if kind == "auto":
        kind = "blob" if connection_string else "local"
    if kind == "local":
        return LocalFolderTarget(blobs_dir)
    if kind not in ("blob", "adls"):
        raise TargetConfigError(f"unknown upload target {kind!r}")
    if not connection_string:
        raise TargetConfigError(
            f"target {kind!r} needs {STORAGE_CONNECTION_ENV} in the environment"
        )
    if kind == "blob":
        return BlobTarget.from_connection_string(connection_string)
    return AdlsTarget.from_connection_string(connection_string)


class LocalFolderTarget:
    """Blob storage stood in for by a folder: ``<root>/<container>/<blob name>``."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, blob: Blob) -> bool:
        path = self.root / blob.container / blob.name
        try:
            if path.is_file():
                existing = path.read_bytes()
                if len(existing) == len(blob.data) and hashlib.md5(existing).digest() == blob.md5:
                    return False
                raise UploadError(f"{blob.container}/{blob.name} exists with other content", False)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, blob.data)
        except OSError as exc:
            raise UploadError(f"local folder: {exc}", outage=True) from exc
        return True


class BlobTarget:
    """Azure Blob Storage (block blobs), through ``azure-storage-blob``."""

    kind = "blob"

    def __init__(self, service: Any) -> None:
        self.service = service
        self._containers: set[str] = set()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> BlobTarget:
        from azure.storage.blob import BlobServiceClient

        # the outbox retries, with its own back-off
        return cls(
            service_client(BlobServiceClient, connection_string, READ_TIMEOUT_S, retry_total=0)
        )

    def put(self, blob: Blob) -> bool:
        from azure.storage.blob import ContentSettings

        try:
            client = self._container(blob.container).get_blob_client(blob.name)
            return _put_if_absent(
                blob,
                client.get_blob_properties,
                lambda: client.upload_blob(
                    blob.data,
                    overwrite=False,
                    content_settings=ContentSettings(
                        content_type=blob.content_type, content_md5=bytearray(blob.md5)
                    ),
                    metadata=dict(blob.metadata),
                    validate_content=True,
                ),
            )
        except AzureError as exc:
            raise _classify(exc) from exc

    def _container(self, name: str) -> Any:
        client = self.service.get_container_client(name)
        _create_once(self._containers, name, client.create_container, "container")
        return client


class AdlsTarget:
    """Azure Data Lake Storage Gen2 (hierarchical namespace): one file system per container."""

    kind = "adls"

    def __init__(self, service: Any) -> None:
        self.service = service
        self._file_systems: set[str] = set()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> AdlsTarget:
        from azure.storage.filedatalake import DataLakeServiceClient

        return cls(
            service_client(DataLakeServiceClient, connection_string, READ_TIMEOUT_S, retry_total=0)
        )

    def put(self, blob: Blob) -> bool:
        from azure.storage.filedatalake import ContentSettings

        try:
            client = self._file_system(blob.container).get_file_client(blob.name)
            return _put_if_absent(
                blob,
                client.get_file_properties,
                lambda: client.upload_data(
                    blob.data,
                    overwrite=False,
                    content_settings=ContentSettings(
                        content_type=blob.content_type, content_md5=bytearray(blob.md5)
                    ),
                    metadata=dict(blob.metadata),
                ),
            )
        except AzureError as exc:
            raise _classify(exc) from exc

    def _file_system(self, name: str) -> Any:
        client = self.service.get_file_system_client(name)
        _create_once(self._file_systems, name, client.create_file_system, "file system")
        return client


def service_client(
    client_class: Any, connection_string: str, read_timeout_s: float, **options: Any
) -> Any:
    """A storage SDK service client (``client_class``) from a connection string; an invalid one
    raises ``TargetConfigError`` without echoing it."""
    try:
        return client_class.from_connection_string(
            connection_string,
            connection_timeout=CONNECTION_TIMEOUT_S,
            read_timeout=read_timeout_s,
            **options,
        )
    except ValueError:
        raise TargetConfigError(
            f"{STORAGE_CONNECTION_ENV} is not a valid storage connection string"
        ) from None


def _create_once(created: set[str], name: str, create: Callable[[], Any], kind: str) -> None:
    """Create the ``kind`` (container, file system) ``name`` unless done before in this process."""
    if name in created:
        return
    try:
        create()
        log.info(f"{kind} created", extra={kind.replace(" ", "_"): name})
    except ResourceExistsError:
        pass
    created.add(name)


def _put_if_absent(
    blob: Blob, get_properties: Callable[[], Any], upload: Callable[[], Any]
) -> bool:
    """Upload unless the blob exists: True when uploaded, False when this very blob is there."""
    try:
        existing = get_properties()
    except ResourceNotFoundError:
        existing = None
    if existing is not None:
        return _identical(blob, existing.size, existing.content_settings.content_md5)
    try:
        upload()
    except ResourceExistsError:  # written meanwhile (e.g. by an earlier, cut-off attempt)
        props = get_properties()
        return _identical(blob, props.size, props.content_settings.content_md5)
    return True


def _identical(blob: Blob, size: int | None, md5: bytes | bytearray | None) -> bool:
    """False (nothing to upload) when the stored blob is this one; raise when it is another."""
    if size == len(blob.data) and (md5 is None or bytes(md5) == blob.md5):
        return False
    raise UploadError(
        f"{blob.container}/{blob.name} already exists with other content "
        f"({size} bytes); it is left as it is",
        outage=False,
    )


def _classify(exc: AzureError) -> UploadError:
    """An SDK error as an UploadError: an outage unless the request itself was refused."""
    status = getattr(exc, "status_code", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    code = getattr(exc, "error_code", None)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return UploadError(f"storage unreachable: {type(exc).__name__}", outage=True)
    if isinstance(exc, HttpResponseError) and status is not None:
        outage = status in _OUTAGE_STATUS or status >= 500
        return UploadError(f"storage answered {status} {reason} ({code})", outage=outage)
    return UploadError(f"storage error: {type(exc).__name__}", outage=True)
