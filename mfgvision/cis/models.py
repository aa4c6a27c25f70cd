"""Keeps the model a CIS serves: loads in the background, swaps between frames, retries failures.

A requested model is loaded and warmed beside the one serving; only when it is ready does it replace
the old one, so no frame waits for a load. A model that fails to load leaves the old one serving and
the reason in ``error``; the load is retried until it succeeds (a good file may appear later).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mfgvision.inference import Model, ModelLoadError, RuntimeOptions, load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRequest:
    """Which model to serve and how to run it."""

    name: str
    version: str
    providers: tuple[str, ...] | None = None
    fp16: bool = True
    intra_op_threads: int | None = None


class ModelManager:
    """Serves one model at a time; see the module docstring."""

    def __init__(self, models_dir: Path, retry_s: float = 5.0) -> None:
        self.models_dir = models_dir
        self.retry_s = retry_s
        self.current: Model | None = None
        self.error: str | None = None
        self.swaps = 0
        self._serving: ModelRequest | None = None
        self._wanted: ModelRequest | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)

    def start(self, request: ModelRequest) -> None:
        self._wanted = request
        self._thread.start()

    def request(self, request: ModelRequest) -> None:
        """Ask for another model (or the same one again, to reload it)."""
        self._wanted = request
        self._serving = None if request == self._serving else self._serving
        self._wake.set()

    def reload(self) -> None:
        """Load the wanted model again from disk."""
        self._serving = None
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        if self.current is not None:
            self.current.close()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the wanted model serves (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._serving == self._wanted and self.current is not None:
                return True
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            wanted = self._wanted
            if wanted is not None and wanted != self._serving:
                self._load(wanted)
            pending = self._wanted != self._serving
            self._wake.wait(self.retry_s if pending else None)
            self._wake.clear()

    def _load(self, req: ModelRequest) -> None:
        folder = self.models_dir / req.name / req.version
        options = RuntimeOptions(
            providers=list(req.providers) if req.providers else None,
            intra_op_threads=req.intra_op_threads,
            fp16=req.fp16,
            spin_wait=False,  # the capture and writer threads need the CPU between runs
        )
        try:
            model = load_model(folder, options)
            model.warmup()
        except ModelLoadError as exc:
            if self.error != str(exc):
                log.error(
                    "model not loaded; the previous one keeps serving", extra={"error": str(exc)}
                )
            self.error = str(exc)
            return
        self.current = model  # the old one is released once the frame using it is done
        self._serving = req
        self.error = None
        self.swaps += 1
        for warning in model.warnings:
            log.warning("model warning", extra={"model": req.name, "warning": warning})
        log.info(
            "model serving",
            extra={
                "model": req.name,
                "version": req.version,
                "family": model.family,
                "providers": model.providers,
            },
        )
