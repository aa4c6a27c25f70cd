"""A transfer run as a module: the same run every ``interval_s``, reported in the module twin."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.edge.hub import Hub
from mfgvision.file_transfer.common import TransferReport

log = logging.getLogger(__name__)


class PeriodicTransfer:
    """Runs ``transfer`` now and then every ``interval_s`` until stopped (never in a busy loop)."""

    def __init__(
        self, hub: Hub, name: str, transfer: Callable[[], TransferReport], interval_s: float
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.hub = hub
        self.name = name
        self.transfer = transfer
        self.interval_s = interval_s
        self.runs = 0
        self.last: TransferReport | None = None
        self.last_error: str | None = None
        self._state = "starting"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.hub.connect()
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("run_now", self._run_now)
        self._state = "running"
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._state = "stopped"
        self._report()
        self.hub.disconnect()

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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.transfer()
                self.last_error = None if self.last.ok else self.last.failures[0][1]
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("transfer run failed", extra={"transfer": self.name})
            self.runs += 1
            self._report()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def _run_now(self, _payload: Any) -> dict[str, Any]:
        self._wake.set()
        return {"requested": True}

    def _report(self) -> None:
        try:
            self.hub.patch_reported(self.status())
        except Exception as exc:
            log.warning("reported properties not sent", extra={"error": str(exc)})
