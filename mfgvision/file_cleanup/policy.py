"""One cleanup pass: what to delete, and the guards that keep anything needed.

In order:

1. **Guard.** When the database cannot be read, or looks new or empty (no table, no row), nothing at
   all is deleted: a wiped or wrongly configured database must not turn into wiped images. A new
   database beside no image older than ``min_age_s`` is a fresh start (logged as info, nothing to
   clean yet); beside older images it may be a wiped one (a warning).
2. **Leftovers.** Hidden ``.*.tmp`` files of crashed atomic writes older than ``tmp_max_age_s``.
3. **Age.** Images older than ``image_retention_hours``.
4. **Watermark.** When the disk is fuller than ``high_watermark_pct``, the oldest images go first until
   it is below ``low_watermark_pct``; images younger than ``min_age_s`` are kept.
5. **Rows.** Database rows older than ``db_retention_days``.

An image still waiting in the upload outbox is never deleted (asked again right before each delete);
when the outbox cannot be read, no image is deleted. ``dry_run`` reports what would go and deletes
nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

from mfgvision.settings import FileCleanupSettings
from mfgvision.store.database import Database
from mfgvision.store.outbox import OutboxReader

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
NEW_DATABASE = "the database looks new or empty"


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


DiskUsageFn = Callable[[Path], DiskUsage]


@dataclass
class PassReport:
    """What a pass did (or, in a dry run, would do)."""

    dry_run: bool
    guard: str | None = None
    deleted_by_age: int = 0
    deleted_by_watermark: int = 0
    freed_bytes: int = 0
    kept_waiting_upload: int = 0
    tmp_removed: int = 0
    rows_pruned: int = 0
    disk_used_pct_before: float | None = None
    disk_used_pct_after: float | None = None
    errors: list[str] = field(default_factory=list)
    finished: str = ""

    @property
    def deleted_files(self) -> int:
        return self.deleted_by_age + self.deleted_by_watermark

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["deleted_files"] = self.deleted_files
        data["errors"] = self.errors[:10]
        return data


class _Image(NamedTuple):
    mtime: float
    name: str
    size: int


def run_pass(
    images_dir: Path,
    outbox: OutboxReader,
    db: Database,
    settings: FileCleanupSettings,
    tmp_dirs: Iterable[Path] = (),
    disk_usage: DiskUsageFn = shutil.disk_usage,  # type: ignore[assignment]
    now: float | None = None,
) -> PassReport:
    """One cleanup pass over ``images_dir`` (plus leftovers in ``tmp_dirs``)."""
    now = time.time() if now is None else now
    report = PassReport(dry_run=settings.dry_run)
    guard = _database_guard(db)
    if guard is not None:
        report.guard = guard
        _log_guard(guard, images_dir, now - settings.min_age_s)
        return _finish(report)
    for folder in (images_dir, *tmp_dirs):
        _remove_leftovers(folder, now - settings.tmp_max_age_s, report)
    with outbox:
        try:
            waiting = outbox.waiting_names()
        except sqlite3.Error as exc:
            report.errors.append(f"upload outbox unreadable, no image deleted: {exc}")
            log.error("upload outbox unreadable, no image deleted", extra={"error": str(exc)})
        else:
            _delete_images(images_dir, outbox, waiting, settings, disk_usage, now, report)
    _prune_rows(db, settings, now, report)
    return _finish(report)


def _database_guard(db: Database) -> str | None:
    try:
        if db.is_empty():
            return NEW_DATABASE
    except Exception as exc:
        return f"the database cannot be read ({type(exc).__name__})"
    return None


def _log_guard(guard: str, images_dir: Path, settled_before: float) -> None:
    """Info for a fresh start (a new database and no settled image), else a warning."""
    settled = sum(1 for image in _images(images_dir) if image.mtime < settled_before)
    if guard == NEW_DATABASE and settled == 0:
        log.info("nothing to clean yet: no inference stored", extra={"guard": guard})
    else:
        log.warning("cleanup skipped: %s", guard, extra={"guard": guard, "images_kept": settled})


def _remove_leftovers(folder: Path, older_than: float, report: PassReport) -> None:
    """Hidden ``.*.tmp`` files left by crashed atomic writes (never a file still being written)."""
    if not folder.is_dir():
        return
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            path = Path(dirpath) / name
            try:
                stat = path.stat()
                if stat.st_mtime >= older_than:
                    continue
                if not report.dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.errors.append(f"{path}: {exc}")
                continue
            report.tmp_removed += 1
            report.freed_bytes += stat.st_size


def _delete_images(
    images_dir: Path,
    outbox: OutboxReader,
    waiting: set[str],
    settings: FileCleanupSettings,
    disk_usage: DiskUsageFn,
    now: float,
    report: PassReport,
) -> None:
    images = sorted(_images(images_dir))  # oldest first
    kept_waiting: set[str] = set()
    gone: set[str] = set()

    def delete(image: _Image) -> bool:
        if image.name in waiting or outbox.is_waiting(image.name):
            kept_waiting.add(image.name)
            return False
        try:
            if not report.dry_run:
                (images_dir / image.name).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            report.errors.append(f"{image.name}: {exc}")
            return False
        gone.add(image.name)
        report.freed_bytes += image.size
        return True

    if settings.image_retention_hours > 0:
        cutoff = now - settings.image_retention_hours * 3600
        for image in images:
            if image.mtime >= cutoff:
                break
            if delete(image):
                report.deleted_by_age += 1

    usage = _usage(images_dir, disk_usage, report)
    if usage is not None:
        freed_so_far = report.freed_bytes if report.dry_run else 0
        used = usage.used - freed_so_far
        report.disk_used_pct_before = _pct(used, usage.total)
        high = usage.total * settings.high_watermark_pct / 100
        low = usage.total * settings.low_watermark_pct / 100
        if used > high:
            youngest = now - settings.min_age_s
            for image in images:
                if used <= low:
                    break
                if image.name in gone or image.name in kept_waiting or image.mtime > youngest:
                    continue
                if delete(image):
                    report.deleted_by_watermark += 1
                    used -= image.size
            if not report.dry_run:
                after = _usage(images_dir, disk_usage, report)
                used = after.used if after is not None else used
            if used > low:
                report.errors.append(
                    f"disk still {_pct(used, usage.total)}% used: the rest is queued for upload, "
                    f"younger than {settings.min_age_s:g} s, or not images"
                )
        report.disk_used_pct_after = _pct(used, usage.total)
    report.kept_waiting_upload = len(kept_waiting)


def _images(images_dir: Path) -> Iterable[_Image]:
    """Every image file in the folder (hidden and temporary files excluded)."""
    try:
        entries = list(os.scandir(images_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield _Image(stat.st_mtime, name, stat.st_size)


def _usage(images_dir: Path, disk_usage: DiskUsageFn, report: PassReport) -> DiskUsage | None:
    try:
        total, used, free = disk_usage(images_dir)
    except OSError as exc:
        report.errors.append(f"disk usage unknown: {exc}")
        return None
    return DiskUsage(total, used, free)


def _prune_rows(
    db: Database, settings: FileCleanupSettings, now: float, report: PassReport
) -> None:
    if settings.db_retention_days <= 0:
        return
    before = datetime.fromtimestamp(now, timezone.utc) - timedelta(days=settings.db_retention_days)
    try:
        report.rows_pruned = db.count_before(before) if report.dry_run else db.prune(before)
    except Exception as exc:
        report.errors.append(f"row retention: {type(exc).__name__}: {exc}"[:300])
        log.error("pruning old rows failed", extra={"error": str(exc)[:300]})


def _pct(used: float, total: int) -> float:
    return round(100.0 * used / total, 2) if total else 0.0


def _finish(report: PassReport) -> PassReport:
    report.finished = datetime.now(timezone.utc).isoformat()
    return report
