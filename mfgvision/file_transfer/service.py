"""A transfer run as a module: the same run every ``interval_s``, reported in the module twin."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.edge.hub import Hub
from mfgvision.edge.periodic import PeriodicModule
from mfgvision.file_transfer.common import TransferReport

log = logging.getLogger(__name__)


class PeriodicTransfer(PeriodicModule):
    """Runs ``transfer`` now and then every ``interval_s`` until stopped (never in a busy loop)."""

    def __init__(
        self, hub: Hub, name: str, transfer: Callable[[], TransferReport], interval_s: float
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        super().__init__(hub, name)
        self.name = name
        self.transfer = transfer
        self.interval_s = interval_s
        self.runs = 0
        self.last: TransferReport | None = None
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "software_version": __version__,
            "status": {
                "state": self._state,
                "transfer": self.name,
                "runs": self.runs,
                "interval_s": self.interval_s,
                "last_run": None if self.last is None else self.last.as_dict(),
                "last_error": self.last_error,
            },
            "updated": datetime.now(timezone.utc).isoformat(),
        }

    def run_one(self) -> None:
        try:
            self.last = self.transfer()
            self.last_error = None if self.last.ok else self.last.failures[0][1]
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.exception("transfer run failed", extra={"transfer": self.name})
        self.runs += 1
        self._report()

    def pause_s(self) -> float:
        return self.interval_s
