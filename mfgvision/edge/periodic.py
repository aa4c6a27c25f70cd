"""A module that does one run of its work now and then again after a pause, until stopped."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from mfgvision.edge.desired import DesiredSettings
from mfgvision.edge.hub import START_WAIT_S, Hub
from mfgvision.settings import ModuleSettings

log = logging.getLogger(__name__)


class PeriodicModule:
    """The loop, ``status``/``run_now`` methods and twin reports a periodic module shares.

    Subclasses say what one run does (``run_one``), how long to pause (``pause_s``), what the
    ``status`` report holds and what ``run_now`` answers. The loop never spins: it always waits
    for the pause or a wake-up before the next run.
    """

    def __init__(self, hub: Hub, thread_name: str) -> None:
        self.hub = hub
        self._state = "starting"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)

    def start(self) -> None:
        online = self.hub.connect(wait_s=START_WAIT_S)
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("run_now", self._run_now)
        self._connected(online)
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
        """The module's reported properties."""
        raise NotImplementedError

    def run_one(self) -> None:
        """One run of the work; exceptions are the subclass's to log."""
        raise NotImplementedError

    def pause_s(self) -> float:
        """Seconds to wait before the next run."""
        raise NotImplementedError

    def _connected(self, online: bool) -> None:
        """Hook run once the hub is started (``online``: connected) and before the loop starts."""

    def _run_now(self, _payload: Any) -> dict[str, Any]:
        self._wake.set()
        return {"requested": True}

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_one()
            self._wake.wait(self.pause_s())
            self._wake.clear()

    def _report(self) -> None:
        self.hub.report(self.status)


class ConfiguredModule(PeriodicModule):
    """A periodic module whose settings come from its twin's desired document (``DesiredSettings``).

    Every patch and every whole desired section updates ``settings`` (an invalid document keeps the
    last good settings and is reported) and wakes the loop, so a new interval or threshold applies
    at once.
    """

    def __init__(
        self,
        hub: Hub,
        thread_name: str,
        settings: type[ModuleSettings],
        state_file: Path | None = None,
    ) -> None:
        super().__init__(hub, thread_name)
        self.settings = DesiredSettings(settings, state_file)

    def _connected(self, online: bool) -> None:
        self.hub.on_desired(self._apply)
        self._apply(self.settings.starting_point(self.hub, online), full=True)
        self._wake.clear()  # the loop starts with a run anyway

    def _apply(self, desired: dict[str, Any], full: bool) -> None:
        self.settings.apply(desired, full)
        self._report()
        self._wake.set()
