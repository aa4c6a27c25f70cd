"""What every module process shares: where its files live and how it runs until told to stop."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

REPO_ASSETS = Path(__file__).resolve().parent.parent / "edge_assets"
#: How long stopping may take in all: within the 10 s between SIGTERM and SIGKILL.
STOP_WAIT_S = 9.0


@dataclass(frozen=True)
class Paths:
    """Folders a module reads and writes (the binds of its container on a device)."""

    assets: Path
    models: Path
    data: Path

    @property
    def images(self) -> Path:
        return self.data / "images"

    @property
    def blobs(self) -> Path:
        return self.data / "blobs"

    @property
    def default_db_path(self) -> Path:
        return self.data / "mfgvision.db"

    @classmethod
    def from_env(cls) -> Paths:
        """``MFGVISION_ASSETS``, ``MFGVISION_MODELS`` and ``MFGVISION_DATA``, with local defaults."""
        default_assets = Path("/edge_assets") if Path("/edge_assets").is_dir() else REPO_ASSETS
        assets = Path(os.environ.get("MFGVISION_ASSETS", default_assets))
        models = Path(os.environ.get("MFGVISION_MODELS", assets / "models"))
        data = Path(os.environ.get("MFGVISION_DATA", "data"))
        return cls(assets=assets, models=models, data=data)


class Service(Protocol):
    """A long-lived module: start, then stop cleanly when asked."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


#: The longest the main thread blocks at a time while it waits for a stop (see :func:`wait_for_stop`).
SIGNAL_POLL_S = 0.2


def wait_for_stop(stop: threading.Event, duration: float | None = None) -> None:
    """Wait until ``stop`` is set or ``duration`` seconds have passed, waking every
    ``SIGNAL_POLL_S``. A signal the kernel hands to another thread only flags its Python handler for
    the main thread, which runs it when it next runs Python code: a main thread blocked in a lock
    wait without timeout would never run it, and SIGTERM would not stop the process."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        left = (
            SIGNAL_POLL_S if deadline is None else min(SIGNAL_POLL_S, deadline - time.monotonic())
        )
        if left <= 0:
            return
        stop.wait(left)


def run_until_signalled(
    services: list[Service],
    duration: float | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """Start services, wait for SIGTERM/SIGINT (or ``duration`` seconds), then stop them all at once
    (:func:`stop_all`)."""
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)  # nothing else here: a handler must not write to the log streams
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for service in services:
            service.start()
        if on_started is not None:
            on_started()
        wait_for_stop(stop, duration)
        if received:
            log.info("stop requested", extra={"signal": signal.Signals(received[0]).name})
    finally:
        stop_all(services)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return 0


def stop_all(services: list[Service], wait_s: float = STOP_WAIT_S) -> None:
    """Stop every service on a thread of its own, so the whole lot takes as long as the slowest one
    (each finishes its in-flight work within its own few seconds), not their sum. A service still
    stopping after ``wait_s`` is logged and left to the process exit."""

    def stop(service: Service) -> None:
        try:
            service.stop()
        except Exception:
            log.exception("service did not stop cleanly", extra={"service": type(service).__name__})

    threads = [
        threading.Thread(target=stop, args=(s,), name=f"stop-{type(s).__name__}", daemon=True)
        for s in services
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + wait_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = [t.name.removeprefix("stop-") for t in threads if t.is_alive()]
    if late:
        log.error("services still stopping, left to the exit", extra={"services": late})
