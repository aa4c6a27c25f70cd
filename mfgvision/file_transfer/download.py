"""``mfgvision file-download``: a models container into the model volume, or files into a folder.

**Models** (the default). Blobs ``<name>/<version>/<file>`` form a model version (``model.onnx``,
``labels.json`` or ``labels.txt``, optional ``model.yaml``); labels at ``<name>/labels.*`` serve every
version of that model that has none of its own. A version is downloaded into a hidden temporary folder
beside its final place, each file checked against the blob's size and MD5, then the model is loaded
(``onnx.checker`` and ``mfgvision.inference.load_model``: the graph runs on CPU and its class count must
match the labels) and only then renamed into place: a cut-off or corrupt download never replaces a
good model, and the CIS never sees half a folder. A version already synced (``.sync.json`` in its
folder records the blobs it came from) is skipped; local versions that are not in the container are
left alone.

**Files** (``--mode files``). Every blob to ``<folder>/<blob name>``, each written to a temporary file,
checked, then renamed; files already there with the same size and MD5 are skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from tqdm import tqdm

from mfgvision.file_transfer.common import TransferReport, md5_file
from mfgvision.inference.labels import LABEL_FILES
from mfgvision.store.images import fsync_folder, write_atomic

log = logging.getLogger(__name__)

SYNC_FILE = ".sync.json"
MODEL_FILE = "model.onnx"
VERSION_FILES = (MODEL_FILE, *LABEL_FILES, "model.yaml")
_PART = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,79}$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class VerifyError(ValueError):
    """A downloaded file or model that must not be used."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    md5: bytes | None
    etag: str

    def fingerprint(self) -> dict[str, Any]:
        return {"size": self.size, "md5": self.md5.hex() if self.md5 else None, "etag": self.etag}


def list_model_versions(container: Any) -> dict[tuple[str, str], dict[str, RemoteFile]]:
    """``(name, version) -> {file name in the version folder: blob}`` of a models container."""
    versions: dict[tuple[str, str], dict[str, RemoteFile]] = defaultdict(dict)
    model_labels: dict[str, dict[str, RemoteFile]] = defaultdict(dict)
    for blob in container.list_blobs():
        md5 = blob.content_settings.content_md5
        remote = RemoteFile(blob.name, blob.size, bytes(md5) if md5 else None, blob.etag)
        parts = blob.name.split("/")
        if len(parts) == 3 and _PART.match(parts[0]) and _PART.match(parts[1]):
            if parts[2] in VERSION_FILES:
                versions[(parts[0], parts[1])][parts[2]] = remote
        elif len(parts) == 2 and _PART.match(parts[0]) and parts[1] in LABEL_FILES:
            model_labels[parts[0]][parts[1]] = remote
    complete: dict[tuple[str, str], dict[str, RemoteFile]] = {}
    for (name, version), files in versions.items():
        if MODEL_FILE not in files:
            continue
        if not any(f in files for f in LABEL_FILES):
            files.update(model_labels.get(name, {}))
        complete[(name, version)] = files
    return complete


def sync_models(
    container: Any, models_dir: Path, progress: bool = False, verify: bool = True
) -> TransferReport:
    """Bring every model version of ``container`` into ``models_dir``; returns what was done."""
    report = TransferReport()
    _remove_leftovers(models_dir)
    try:
        versions = list_model_versions(container)
    except AzureError as exc:
        report.failures.append((container.container_name, f"{type(exc).__name__}: {exc}"[:300]))
        log.error(
            "models container not listed",
            extra={"container": container.container_name, "error": type(exc).__name__},
        )
        return report
    for (name, version), files in sorted(versions.items()):
        final = models_dir / name / version
        wanted = {f: r.fingerprint() for f, r in files.items()}
        if _synced(final) == wanted:
            report.skipped += 1
            continue
        try:
            size = _sync_version(container, final, files, wanted, progress, verify)
        except (AzureError, OSError, VerifyError) as exc:
            report.failures.append((f"{name}/{version}", f"{type(exc).__name__}: {exc}"[:500]))
            log.error(
                "model version not synced, the local one is kept",
                extra={"model": name, "version": version, "error": str(exc)[:300]},
            )
            continue
        report.transferred += 1
        report.bytes += size
        log.info("model version synced", extra={"model": name, "version": version, "bytes": size})
    return report


def _remove_leftovers(models_dir: Path) -> None:
    """Staging folders of a sync that was killed (``<name>/.<version>.sync-*.tmp``)."""
    if not models_dir.is_dir():
        return
    for leftover in models_dir.glob("*/.*.tmp"):
        if leftover.is_dir() and (".sync-" in leftover.name or ".old-" in leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("leftover of an interrupted sync removed", extra={"path": str(leftover)})


def _synced(folder: Path) -> dict[str, Any] | None:
    """What ``folder`` was synced from, when all those files are still there at their size."""
    try:
        data = json.loads((folder / SYNC_FILE).read_text(encoding="utf-8"))
        files = data["files"]
        for name, fingerprint in files.items():
            if (folder / name).stat().st_size != fingerprint["size"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return files if isinstance(files, dict) else None


def _sync_version(
    container: Any,
    final: Path,
    files: dict[str, RemoteFile],
    wanted: dict[str, Any],
    progress: bool,
    verify: bool,
) -> int:
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.sync-", suffix=".tmp", dir=final.parent))
    try:
        total = 0
        for file_name, remote in sorted(files.items()):
            total += _download(container, remote, staging / file_name, progress)
        if verify:
            verify_model(staging)
        write_atomic(staging / SYNC_FILE, json.dumps({"files": wanted}, indent=1).encode())
        _swap_into_place(staging, final)
        return total
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(container: Any, remote: RemoteFile, target: Path, progress: bool) -> int:
    """Stream a blob into ``target``; raise VerifyError when its size or MD5 is not the blob's."""
    digest = hashlib.md5()
    written = 0
    stream = container.get_blob_client(remote.name).download_blob()
    with (
        target.open("wb") as fh,
        tqdm(
            total=remote.size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=remote.name[-40:],
            disable=not progress,
        ) as bar,
    ):
        for chunk in stream.chunks():
            fh.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    if written != remote.size:
        raise VerifyError(f"{remote.name}: got {written} bytes, the blob has {remote.size}")
    if remote.md5 is not None and digest.digest() != remote.md5:
        raise VerifyError(f"{remote.name}: MD5 differs from the blob's")
    return written


def verify_model(folder: Path) -> None:
    """The folder holds a usable model: a valid ONNX graph whose class count matches its labels."""
    import onnx

    from mfgvision.inference import ModelLoadError, RuntimeOptions, load_model

    try:
        onnx.checker.check_model(str(folder / MODEL_FILE))
    except (onnx.checker.ValidationError, OSError, ValueError) as exc:
        raise VerifyError(f"{MODEL_FILE} is not a valid ONNX model: {exc}"[:400]) from None
    except Exception as exc:  # protobuf decode errors have no common base worth importing
        raise VerifyError(
            f"{MODEL_FILE} cannot be read: {type(exc).__name__}: {exc}"[:400]
        ) from None
    try:
        model = load_model(folder, RuntimeOptions.cpu_only())
    except ModelLoadError as exc:
        raise VerifyError(str(exc)) from None
    except Exception as exc:
        raise VerifyError(f"the model does not load: {type(exc).__name__}: {exc}"[:400]) from None
    model.close()


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an existing ``final`` is exchanged atomically where possible."""
    if not final.exists():
        os.rename(staging, final)
        fsync_folder(final.parent)
        return
    if _exchange(staging, final):  # staging now holds the old version, removed by the caller
        fsync_folder(final.parent)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}.tmp")
    os.rename(final, old)
    try:
        os.rename(staging, final)
    except OSError:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    fsync_folder(final.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Linux ``renameat2(RENAME_EXCHANGE)``: swap two paths in one step; False where unsupported."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def sync_files(container: Any, folder: Path, progress: bool = False) -> TransferReport:
    """Download every blob of ``container`` to ``folder/<blob name>``; skip identical files."""
    report = TransferReport()
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    for blob in container.list_blobs():
        target = (folder / blob.name).resolve()
        if root not in target.parents or any(p.startswith(".") for p in blob.name.split("/")):
            report.failures.append((blob.name, "unsafe name, not downloaded"))
            continue
        md5 = blob.content_settings.content_md5
        remote = RemoteFile(blob.name, blob.size, bytes(md5) if md5 else None, blob.etag)
        try:
            if (
                target.is_file()
                and target.stat().st_size == remote.size
                and (remote.md5 is None or md5_file(target) == remote.md5)
            ):
                report.skipped += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.download.tmp")
            try:
                _download(container, remote, tmp, progress)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except (AzureError, OSError, VerifyError) as exc:
            report.failures.append((blob.name, f"{type(exc).__name__}: {exc}"[:300]))
            continue
        report.transferred += 1
        report.bytes += remote.size
    return report


__all__ = [
    "VerifyError",
    "list_model_versions",
    "sync_files",
    "sync_models",
    "verify_model",
]
