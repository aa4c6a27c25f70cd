"""``mfgvision file-upload``: a folder tree into a container, resumable, never sending a file twice.

Blob names are ``<prefix><path relative to the folder>`` with ``/`` separators. A file whose blob
already exists with the same size and MD5 is skipped; a changed file replaces its blob. Small files go
in one request; larger ones in blocks with IDs derived from the file's MD5, so a run cut off in the
middle of a large file resumes with the blocks the service already holds. Hidden files and folders
(including ``.*.tmp`` files of writes in progress) and symbolic links are left out.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import mimetypes
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from tqdm import tqdm

from mfgvision.file_transfer.common import TransferReport, md5_file

log = logging.getLogger(__name__)

SINGLE_PUT_MAX = 8 * 1024 * 1024
BLOCK_SIZE = 4 * 1024 * 1024
_MAX_BLOB_NAME = 1024


def local_files(root: Path) -> Iterator[tuple[Path, str]]:
    """``(path, relative name)`` of every regular, non-hidden file under ``root``, sorted."""
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            yield path, path.relative_to(root).as_posix()


def upload_tree(
    container: Any,
    root: Path,
    prefix: str = "",
    progress: bool = False,
    single_put_max: int = SINGLE_PUT_MAX,
    block_size: int = BLOCK_SIZE,
) -> TransferReport:
    """Upload ``root`` into ``container`` (a ``ContainerClient``); returns what was done."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    report = TransferReport()
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    remote = {
        b.name: (b.size, bytes(b.content_settings.content_md5 or b""))
        for b in container.list_blobs(name_starts_with=prefix or None)
    }
    todo: list[tuple[Path, str, int, bytes]] = []
    for path, relative in local_files(root):
        name = prefix + relative
        if len(name) > _MAX_BLOB_NAME:
            report.failures.append((name, "blob name too long"))
            continue
        try:
            size = path.stat().st_size
            md5 = md5_file(path)
        except OSError as exc:
            report.failures.append((name, str(exc)))
            continue
        if remote.get(name) == (size, md5):  # already there, same bytes
            report.skipped += 1
        else:
            todo.append((path, name, size, md5))
    total = sum(size for _, _, size, _ in todo)
    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress
    ) as bar:
        for path, name, size, md5 in todo:
            bar.set_postfix_str(name[-40:], refresh=False)
            try:
                if size <= single_put_max:
                    _put(container, path, name, size, md5, bar.update)
                else:
                    _put_blocks(container, path, name, size, md5, block_size, bar.update)
            except (AzureError, OSError) as exc:
                report.failures.append((name, f"{type(exc).__name__}: {exc}"[:300]))
                log.error("upload failed", extra={"blob": name, "error": str(exc)[:300]})
                continue
            report.transferred += 1
            report.bytes += size
    log.info(
        "folder uploaded",
        extra={"folder": str(root), "container": container.container_name, **report.as_dict()},
    )
    return report


def _content_settings(name: str, md5: bytes) -> Any:
    from azure.storage.blob import ContentSettings

    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ContentSettings(content_type=content_type, content_md5=bytearray(md5))


def _put(
    container: Any, path: Path, name: str, size: int, md5: bytes, advance: Callable[[int], None]
) -> None:
    with path.open("rb") as fh:
        container.get_blob_client(name).upload_blob(
            fh,
            length=size,
            overwrite=True,
            content_settings=_content_settings(name, md5),
            validate_content=True,
        )
    advance(size)


def _put_blocks(
    container: Any,
    path: Path,
    name: str,
    size: int,
    md5: bytes,
    block_size: int,
    advance: Callable[[int], None],
) -> None:
    """Stage the blocks the service does not hold yet, then commit them as the blob."""
    from azure.storage.blob import BlobBlock

    client = container.get_blob_client(name)
    staged: set[str] = set()
    try:
        _committed, uncommitted = client.get_block_list("uncommitted")
        staged = {b.id for b in uncommitted}
    except AzureError:
        staged = set()
    tag = md5.hex()[:24]
    blocks: list[Any] = []
    with path.open("rb") as fh:
        index = 0
        while True:
            data = fh.read(block_size)
            if not data:
                break
            block_id = base64.b64encode(f"{index:06d}-{tag}".encode()).decode()
            if block_id not in staged:
                client.stage_block(block_id, data, length=len(data), validate_content=True)
            advance(len(data))
            blocks.append(BlobBlock(block_id=block_id))
            index += 1
    client.commit_block_list(blocks, content_settings=_content_settings(name, md5))
    log.debug("blob committed from blocks", extra={"blob": name, "blocks": len(blocks)})
