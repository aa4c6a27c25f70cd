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
from mfgvision.edge.desired import desired_file
from mfgvision.edge.hub import Hub
from mfgvision.edge.periodic import ConfiguredModule
from mfgvision.file_cleanup.policy import DiskUsageFn, PassReport, run_pass
from mfgvision.runtime import Paths
from mfgvision.settings import FileCleanupSettings
from mfgvision.store.database import Database
from mfgvision.store.outbox import OutboxReader, outbox_path

log = logging.getLogger(__name__)


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
        self.totals = {"freed_bytes": 0, "deleted_files": 0, "rows_pruned": 0, "tmp_removed": 0}
        self._lock = threading.Lock()
        self._passed = threading.Condition()

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

    def run_one(self) -> None:
        try:
            self.run_once()
        except Exception:
            log.exception("cleanup pass failed")

    def pause_s(self) -> float:
        settings = self.settings.current
        assert isinstance(settings, FileCleanupSettings)
        return settings.interval_s

    def _run_now(self, _payload: Any) -> dict[str, Any]:
        passes = self.passes
        self._wake.set()
        if not self.wait_for_pass(passes + 1, timeout=60):
            return {"started": True, "finished": False}
        assert self.last_pass is not None
        return {"started": True, "finished": True, "pass": self.last_pass.as_dict()}
