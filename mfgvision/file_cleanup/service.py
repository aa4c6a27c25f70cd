"""The FileCleanup module as a service: a cleanup pass, then a pause, until stopped.

Settings come from the module twin (``FileCleanupSettings``) and apply from the next pass; every pass
is logged and reported (freed bytes, files deleted and kept, rows pruned, disk use). The direct method
``run_now`` and every settings patch start a pass at once. Between passes the disk is looked at every
``DISK_CHECK_S``: when its use is above the high watermark (its free space below the floor the
watermark leaves), an emergency pass runs at once instead of waiting for the interval, so images are
deleted before the disk fills.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.edge.desired import desired_file
from mfgvision.edge.hub import Hub
from mfgvision.edge.periodic import ConfiguredModule
from mfgvision.file_cleanup.policy import DiskUsageFn, PassReport, run_pass
from mfgvision.runtime import Paths
from mfgvision.settings import FileCleanupSettings
from mfgvision.store.database import Database
from mfgvision.store.outbox import OutboxReader, outbox_path

log = logging.getLogger(__name__)

#: Seconds between looks at the disk while waiting for the next pass.
DISK_CHECK_S = 5.0
#: After an emergency pass that could not bring the disk below the high watermark, the next one
#: waits this long (the rest is queued for upload or too young to delete).
EMERGENCY_RETRY_S = 60.0


class FileCleanupService(ConfiguredModule):
    """Keeps the data volume within its limits without deleting anything still needed."""

    def __init__(
        self,
        hub: Hub,
        paths: Paths,
        db: Database,
        disk_usage: DiskUsageFn = shutil.disk_usage,  # type: ignore[assignment]
    ) -> None:
        super().__init__(
            hub, "file-cleanup", FileCleanupSettings, desired_file(paths.data, hub.module_id)
        )
        self.paths = paths
        self.db = db
        self.disk_usage = disk_usage
        self.passes = 0
        self.last_pass: PassReport | None = None
        self.totals = {
            "freed_bytes": 0,
            "deleted_files": 0,
            "rows_pruned": 0,
            "tmp_removed": 0,
            "emergency_passes": 0,
        }
        self._lock = threading.Lock()
        self._passed = threading.Condition()
        self._requested = True
        self._next_pass = 0.0
        self._next_emergency = 0.0

    def start(self) -> None:
        self.paths.images.mkdir(parents=True, exist_ok=True)
        super().start()

    def stop(self) -> None:
        super().stop()
        self.db.close()

    def status(self) -> dict[str, Any]:
        return {
            "software_version": __version__,
            "status": {
                "state": self._state,
                "passes": self.passes,
                "last_pass": None if self.last_pass is None else self.last_pass.as_dict(),
                "totals": dict(self.totals),
            },
            "config": self.settings.report(),
            "updated": datetime.now(timezone.utc).isoformat(),
        }

    def run_once(self, trigger: str = "request") -> PassReport:
        """One pass now, with the current settings; ``trigger`` says why (for the log)."""
        with self._lock:
            settings = self.settings.current
            assert isinstance(settings, FileCleanupSettings)
            report = run_pass(
                self.paths.images,
                OutboxReader(outbox_path(self.paths.images)),
                self.db,
                settings,
                tmp_dirs=[self.paths.blobs],
                disk_usage=self.disk_usage,
            )
            self.passes += 1
            self.last_pass = report
            if not report.dry_run:
                self.totals["freed_bytes"] += report.freed_bytes
                self.totals["deleted_files"] += report.deleted_files
                self.totals["rows_pruned"] += report.rows_pruned
                self.totals["tmp_removed"] += report.tmp_removed
        log.info(
            "cleanup pass",
            extra={
                "trigger": trigger,
                "dry_run": report.dry_run,
                "guard": report.guard,
                "freed_bytes": report.freed_bytes,
                "deleted_files": report.deleted_files,
                "kept_waiting_upload": report.kept_waiting_upload,
                "tmp_removed": report.tmp_removed,
                "rows_pruned": report.rows_pruned,
                "disk_used_pct": report.disk_used_pct_after,
                "errors": len(report.errors),
            },
        )
        with self._passed:
            self._passed.notify_all()
        self._report()
        return report

    def wait_for_pass(self, passes: int, timeout: float) -> bool:
        """Block until at least ``passes`` passes have run (for callers and tests)."""
        with self._passed:
            return self._passed.wait_for(lambda: self.passes >= passes, timeout)

    def run_one(self) -> None:
        """A pass when one is due: requested, the interval is over, or the disk is too full."""
        settings = self._settings()
        now = time.monotonic()
        trigger = self._trigger(settings, now)
        if trigger is None:
            return
        self._next_pass = now + settings.interval_s
        if trigger == "disk":
            self.totals["emergency_passes"] += 1
            log.warning(
                "disk above the high watermark, cleanup pass now",
                extra={"high_watermark_pct": settings.high_watermark_pct},
            )
        try:
            report = self.run_once(trigger)
        except Exception:
            log.exception("cleanup pass failed")
            return
        after = report.disk_used_pct_after
        if trigger == "disk" and after is not None and after > settings.high_watermark_pct:
            self._next_emergency = now + EMERGENCY_RETRY_S

    def pause_s(self) -> float:
        """Until the next pass is due, but never longer than the next look at the disk."""
        return min(max(self._next_pass - time.monotonic(), 0.0), DISK_CHECK_S)

    def _trigger(self, settings: FileCleanupSettings, now: float) -> str | None:
        """Why a pass should run now (``request``, ``interval``, ``disk``), or None."""
        if self._requested:
            self._requested = False
            return "request"
        if now >= self._next_pass:
            return "interval"
        if now >= self._next_emergency and self._above_high_watermark(settings):
            return "disk"
        return None

    def _above_high_watermark(self, settings: FileCleanupSettings) -> bool:
        """True when the disk of the images is fuller than the high watermark."""
        try:
            total, used, _free = self.disk_usage(self.paths.images)
        except OSError:
            return False  # the next regular pass reports it
        return total > 0 and 100.0 * used / total > settings.high_watermark_pct

    def _settings(self) -> FileCleanupSettings:
        settings = self.settings.current
        assert isinstance(settings, FileCleanupSettings)
        return settings

    def _apply(self, desired: dict[str, Any], full: bool) -> None:
        """New desired properties: a pass follows at once."""
        self._requested = True
        super()._apply(desired, full)

    def _run_now(self, _payload: Any) -> dict[str, Any]:
        passes = self.passes
        self._requested = True
        self._wake.set()
        if not self.wait_for_pass(passes + 1, timeout=60):
            return {"started": True, "finished": False}
        assert self.last_pass is not None
        return {"started": True, "finished": True, "pass": self.last_pass.as_dict()}
