"""The FileCleanup module as a service: a cleanup pass, then a pause, until stopped.

Settings come from the module twin (``FileCleanupSettings``) and apply from the next pass; every pass
is logged and reported (freed bytes, files deleted and kept, rows pruned, disk use). The direct method
``run_now`` starts a pass at once.
"""

from __future__ import annotations

import logging
import shutil
import threading
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.edge.hub import Hub
from mfgvision.file_cleanup.policy import DiskUsageFn, PassReport, run_pass
from mfgvision.runtime import Paths
from mfgvision.settings import DesiredSettings, FileCleanupSettings
from mfgvision.store.database import Database
from mfgvision.store.outbox import OutboxReader, outbox_path

log = logging.getLogger(__name__)


class FileCleanupService:
    """Keeps the data volume within its limits without deleting anything still needed."""

    def __init__(
        self,
        hub: Hub,
        paths: Paths,
        db: Database,
        disk_usage: DiskUsageFn = shutil.disk_usage,  # type: ignore[assignment]
    ) -> None:
        self.hub = hub
        self.paths = paths
        self.db = db
        self.disk_usage = disk_usage
        self.settings = DesiredSettings(FileCleanupSettings)
        self.passes = 0
        self.last_pass: PassReport | None = None
        self.totals = {"freed_bytes": 0, "deleted_files": 0, "rows_pruned": 0, "tmp_removed": 0}
        self._state = "starting"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._passed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="file-cleanup", daemon=True)

    def start(self) -> None:
        self.paths.images.mkdir(parents=True, exist_ok=True)
        self.hub.connect()
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("run_now", self._run_now)
        self.hub.on_desired_patch(lambda patch: self._apply(patch, replace=False))
        self._apply(self.hub.get_twin().get("desired", {}), replace=True)
        self._wake.clear()
        self._state = "running"
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._state = "stopped"
        self._report()
        self.hub.disconnect()
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

    def run_once(self) -> PassReport:
        """One pass now, with the current settings."""
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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("cleanup pass failed")
            settings = self.settings.current
            assert isinstance(settings, FileCleanupSettings)
            self._wake.wait(settings.interval_s)  # never a busy loop, even with nothing to do
            self._wake.clear()

    def _run_now(self, _payload: Any) -> dict[str, Any]:
        passes = self.passes
        self._wake.set()
        if not self.wait_for_pass(passes + 1, timeout=60):
            return {"started": True, "finished": False}
        assert self.last_pass is not None
        return {"started": True, "finished": True, "pass": self.last_pass.as_dict()}

    def _apply(self, desired: dict[str, Any], replace: bool) -> None:
        if not self.settings.apply(desired, replace):
            error = self.settings.error or {}
            log.error(
                "desired properties refused",
                extra={"version": error.get("version"), "error": error.get("message")},
            )
        self._report()
        self._wake.set()

    def _report(self) -> None:
        try:
            self.hub.patch_reported(self.status())
        except Exception as exc:
            log.warning("reported properties not sent", extra={"error": str(exc)})
