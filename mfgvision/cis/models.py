"""The models a CIS module serves: one ONNX Runtime session per distinct model, shared by every
camera that asks for it.

:class:`ModelManager` keeps one :class:`ModelLoader` per :class:`ModelRequest` (model, version and
how it runs) and counts the cameras using it; the last camera to let go of a model releases its
session. A loader loads its model in the background, warms it, and retries a load that fails until
it succeeds (a good file may appear later); a reload loads the file again and swaps it in once it
is ready, for every camera using it. A camera that asks for another model keeps the one it has
until the new one is ready (``cis/pipeline.py``), so no frame waits for a load.

Sessions are shared between the inference threads of several cameras: ONNX Runtime's
``InferenceSession.run`` is thread-safe, and :class:`~mfgvision.inference.Model` keeps no state
between calls.
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

    @property
    def label(self) -> str:
        """``<name>/<version>``."""
        return f"{self.name}/{self.version}"


class ModelLoader:
    """Serves one model: loads it in the background, retries failures, reloads on demand."""

    def __init__(self, models_dir: Path, request: ModelRequest, retry_s: float = 5.0) -> None:
        self.models_dir = models_dir
        self.request = request
        self.retry_s = retry_s
        self.current: Model | None = None
        self.error: str | None = None
        self.swaps = 0
        self._loaded = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"model-loader-{request.label}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def reload(self) -> None:
        """Load the model again from disk; the loaded one serves until the new one is ready."""
        self._loaded = False
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop loading; the session is released once a load in progress is over."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Block until the model serves (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._loaded and self.current is not None:
                return True
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._loaded:
                self._load()
            self._wake.wait(None if self._loaded else self.retry_s)
            self._wake.clear()
        if self.current is not None:
            self.current.close()

    def _load(self) -> None:
        req = self.request
        options = RuntimeOptions(
            providers=list(req.providers) if req.providers else None,
            intra_op_threads=req.intra_op_threads,
            fp16=req.fp16,
            spin_wait=False,  # the capture and writer threads need the CPU between runs
        )
        try:
            model = load_model(self.models_dir / req.name / req.version, options)
            model.warmup()
        except ModelLoadError as exc:
            if self.error != str(exc):
                log.error(
                    "model not loaded; the previous one keeps serving", extra={"error": str(exc)}
                )
            self.error = str(exc)
            return
        self.current = model  # the old one is released once the frame using it is done
        self._loaded = True
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


class ModelManager:
    """One loader per distinct model request, shared by the cameras of one module (thread-safe)."""

    def __init__(self, models_dir: Path, retry_s: float = 5.0) -> None:
        self.models_dir = models_dir
        self.retry_s = retry_s
        self._loaders: dict[ModelRequest, ModelLoader] = {}
        self._users: dict[ModelRequest, int] = {}
        self._lock = threading.Lock()

    def acquire(self, request: ModelRequest) -> ModelLoader:
        """The loader of ``request``, started if no camera used it yet; release it when done."""
        with self._lock:
            loader = self._loaders.get(request)
            if loader is None:
                loader = self._loaders[request] = ModelLoader(
                    self.models_dir, request, self.retry_s
                )
                loader.start()
            self._users[request] = self._users.get(request, 0) + 1
            return loader

    def release(self, loader: ModelLoader) -> None:
        """A camera no longer uses ``loader``; the last one to let go releases its session."""
        with self._lock:
            request = loader.request
            if self._loaders.get(request) is not loader:
                return
            self._users[request] -= 1
            if self._users[request] > 0:
                return
            del self._loaders[request], self._users[request]
        loader.stop(timeout=0)

    def loaders(self) -> dict[ModelRequest, ModelLoader]:
        """Every model served or being loaded, by request."""
        with self._lock:
            return dict(self._loaders)

    def reload(self) -> list[str]:
        """Load every model again from disk; their ``<name>/<version>``."""
        loaders = self.loaders()
        for loader in loaders.values():
            loader.reload()
        return sorted({request.label for request in loaders})

    def stop(self) -> None:
        """Release every session (the cameras are stopped)."""
        with self._lock:
            loaders = list(self._loaders.values())
            self._loaders.clear()
            self._users.clear()
        for loader in loaders:
            loader.stop()
