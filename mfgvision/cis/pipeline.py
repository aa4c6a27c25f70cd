"""One camera of a CIS module: capture thread -> sampler -> inference thread -> the module's writer
thread, and beside them the drift thread (``cis/drift``), handed a sampled inferred frame every few
seconds. The model sessions and the writer are the module's (:class:`ModuleParts`), shared by its
cameras.

Settings apply live: thresholds, rates and storage flags take effect on the next frame, a new camera
source restarts only the capture thread, a new model is swapped in between frames.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfgvision.capture.base import Frame, SourceError
from mfgvision.capture.factory import build_source
from mfgvision.capture.features import CAMERA_FEATURE_KEYS
from mfgvision.capture.grabber import FrameGrabber
from mfgvision.capture.jpeg import decode, reduction_for
from mfgvision.cis.delivery import Send
from mfgvision.cis.drift.monitor import DriftMonitor
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.models import ModelLoader, ModelManager, ModelRequest
from mfgvision.cis.outcome import Outcome
from mfgvision.cis.rules import RuleBook
from mfgvision.cis.sampler import RetrainSampler, Sampler
from mfgvision.cis.writer import OutcomeWriter
from mfgvision.inference import Model
from mfgvision.settings import CisSettings
from mfgvision.store.records import fired_json

log = logging.getLogger(__name__)

# Frames are decoded no smaller than this (long side), so annotated images stay legible.
ANNOTATED_MIN_SIDE = 960
_CAMERA_KEYS = (
    "camera_type",
    "camera_uri",
    "camera_fps",
    "camera_loop",
    "camera_trigger",
    "camera_gentl_producer",
    "camera_rtsp_transport",
)
#: A read blocked this many times the camera timeout counts as a hung camera (grabber watchdog).
_STALL_FACTOR = 3.0
#: Triggers waiting for a frame, at most (a camera that delivers none gives the line its fail-safe).
TRIGGERS_WAITING = 64
_RETRAIN_KEYS = ("retrain_interval_s", "retrain_below_probability", "retrain_drift_gap_s")


def decode_side(model: Model) -> int:
    """The long side JPEG frames are decoded at: the model's input, but never below the size that
    keeps annotated images legible."""
    return max(*model.input_size, ANNOTATED_MIN_SIDE)


def infers_every_frame(s: CisSettings) -> bool:
    """True when the settings let every captured frame through to the model.

    Only then is a JPEG frame decoded on the capture thread (beside inference); when the sampler
    thins the frames, only those it admits are decoded, on the inference thread.
    """
    return (
        s.trigger_paced
        or s.inference_fps == 0
        or (s.camera_fps > 0 and s.inference_fps >= s.camera_fps)
    )


def retrain_sampler(s: CisSettings) -> RetrainSampler:
    """What keeps frames for retraining under settings ``s``."""
    return RetrainSampler(s.retrain_interval_s, s.retrain_below_probability, s.retrain_drift_gap_s)


def model_request(s: CisSettings, intra_op_threads: int | None) -> ModelRequest:
    return ModelRequest(
        s.model_name,
        s.model_version,
        tuple(s.providers) if s.providers else None,
        s.fp16,
        intra_op_threads,
    )


@dataclass(frozen=True)
class ModuleParts:
    """What the cameras of one CIS module share: its model sessions, its writer, its outputs."""

    models: ModelManager
    writer: OutcomeWriter
    send: Send
    #: Where camera folders and files are looked for, in this order.
    camera_roots: tuple[Path, ...]
    #: Where each camera keeps its drift reference and state (``<drift_dir>/<camera_id>/``).
    drift_dir: Path
    #: The module id, labelling the Prometheus series.
    module: str = "cis"
    intra_op_threads: int | None = None


class CisPipeline:
    """Runs one camera of a module through its model into the module's writer."""

    def __init__(
        self, settings: CisSettings, parts: ModuleParts, settings_version: int | None = None
    ) -> None:
        """``settings_version`` is the desired-twin ``$version`` of ``settings`` (None when
        unknown); every row records it. The camera's model is asked for at once."""
        # Settings and their version change together, in one assignment the inference thread reads.
        self._in_force: tuple[CisSettings, int | None] = (settings, settings_version)
        self.parts = parts
        self.writer = parts.writer
        self.metrics = PipelineMetrics(module=parts.module, camera_id=settings.camera_id)
        #: The model serving this camera; ``_next`` is the one asked for while it loads.
        self.models: ModelLoader = parts.models.acquire(
            model_request(settings, parts.intra_op_threads)
        )
        self._next: ModelLoader | None = None
        self.drift = DriftMonitor(parts.drift_dir, parts.send, settings, self.metrics)
        self.grabber: FrameGrabber | None = None
        self.camera_error: str | None = None
        self._sampler = Sampler(settings.inference_fps)
        self._retrain = retrain_sampler(settings)
        self._rules = RuleBook(settings)
        self._capture_requests: list[Future[dict[str, Any]]] = []
        self._trigger_ids: deque[str] = deque(maxlen=TRIGGERS_WAITING)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"inference-{settings.camera_id}", daemon=True
        )

    def start(self) -> None:
        self.writer.attach(self.settings.camera_id, self.metrics)
        self.drift.start()
        self._start_camera()
        self._thread.start()

    def stop(self) -> None:
        """Stop capture, finish the frame in flight (its outcome goes to the module's writer, which
        keeps running), let go of the model."""
        if self.grabber is not None:
            self.grabber.stop()
        self._stop.set()
        self._thread.join(timeout=10)
        self.drift.stop()
        with self._lock:
            loaders, self._next = [self.models, self._next], None
        for loader in loaders:
            if loader is not None:
                self.parts.models.release(loader)

    @property
    def settings(self) -> CisSettings:
        """The settings in force."""
        return self._in_force[0]

    @property
    def settings_version(self) -> int | None:
        """The desired-twin ``$version`` of the settings in force; None when unknown."""
        return self._in_force[1]

    @property
    def wanted_model(self) -> ModelLoader:
        """The model the settings ask for: the one loading beside the one serving, if any."""
        return self._next or self.models

    def apply(self, new: CisSettings, version: int | None = None) -> None:
        """Switch to new settings of the same camera (desired-twin ``$version`` ``version``)
        without a restart."""
        old = self.settings
        self._in_force = (new, version)
        if (
            any(getattr(old, k) != getattr(new, k) for k in _CAMERA_KEYS)
            or old.trigger_paced != new.trigger_paced
            or not self._configure_camera(old, new)
        ):
            log.info("camera settings changed, reopening", extra={"camera_id": new.camera_id})
            if self.grabber is not None:
                self.grabber.stop()
            self._start_camera()
        self.drift.apply(new)
        if old.inference_fps != new.inference_fps:
            self._sampler = Sampler(new.inference_fps)
        if any(getattr(old, k) != getattr(new, k) for k in _RETRAIN_KEYS):
            self._retrain = retrain_sampler(new)
        threads = self.parts.intra_op_threads
        if model_request(old, threads) != model_request(new, threads):
            self._ask_model(model_request(new, threads))

    def reload_model(self) -> str:
        """Load the camera's model again from disk (for every camera using it); its name."""
        loader = self.wanted_model
        loader.reload()
        return loader.request.label

    def _ask_model(self, request: ModelRequest) -> None:
        """Serve another model: it loads beside the one serving and takes over between frames (at
        once when none serves yet)."""
        manager = self.parts.models
        loader = None if request == self.models.request else manager.acquire(request)
        with self._lock:
            let_go = [self._next]
            self._next = loader
            if loader is not None and self.models.current is None:
                let_go.append(self.models)
                self.models, self._next = loader, None
        for old in let_go:
            if old is not None:
                manager.release(old)

    def _model(self) -> Model | None:
        """The model for the next frame: the one asked for as soon as it is ready."""
        ready = self._next
        if ready is not None and ready.current is not None:
            old = None
            with self._lock:
                if self._next is ready:
                    old, self.models, self._next = self.models, ready, None
            if old is not None:
                self.parts.models.release(old)
        return self.models.current

    def _configure_camera(self, old: CisSettings, new: CisSettings) -> bool:
        """Camera features changed: apply them to the running camera; False = reopen it."""
        if all(getattr(old, k) == getattr(new, k) for k in CAMERA_FEATURE_KEYS):
            return True
        grabber = self.grabber
        return grabber is not None and grabber.configure(new.camera)

    def trigger(self) -> None:
        """Fire the camera's software trigger; SourceError when it cannot."""
        grabber = self.grabber
        if grabber is None:
            raise SourceError(self.camera_error or "camera not running")
        grabber.trigger()

    def inspect_for(self, trigger_id: str) -> None:
        """Infer the next frame regardless of the sampler, stored and announced with ``trigger_id``
        (one frame per trigger, in order; beyond ``TRIGGERS_WAITING`` waiting the oldest is
        dropped)."""
        with self._lock:
            self._trigger_ids.append(trigger_id)

    def capture_now(self, timeout: float = 10.0) -> dict[str, Any]:
        """Infer the next frame regardless of the sampler and return the result."""
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._capture_requests.append(future)
        return future.result(timeout)

    def status(self) -> dict[str, Any]:
        """State, rates, counters and errors, for reported properties and health."""
        model, wanted = self.models.current, self.wanted_model
        capture = self.grabber.stats if self.grabber is not None else None
        if self.camera_error:
            state = "camera_error"
        elif wanted.error and model is None:
            state = "model_error"
        elif capture is not None and capture.state in ("reconnecting", "connecting"):
            state = capture.state
        elif capture is not None and capture.state == "ended":
            state = "idle"
        else:
            state = "running" if model is not None else "loading_model"
        reasons = self.problems()
        if state == "running" and reasons:
            state = "degraded"
        counters = dict(self.metrics.counters)
        return {
            "state": state,
            "reasons": reasons,
            "fps": round(self.metrics.fps(), 3),
            "camera": {
                "source": capture.source if capture else None,
                "state": capture.state if capture else "stopped",
                "frames": capture.frames if capture else 0,
                "dropped": capture.dropped if capture else 0,
                "reconnects": capture.reconnects if capture else 0,
                "error": self.camera_error or (capture.last_error if capture else None),
            },
            "model": {
                "name": self.settings.model_name,
                "version": self.settings.model_version,
                "serving": f"{model.name}/{model.version}" if model else None,
                "family": model.family if model else None,
                "providers": model.providers if model else [],
                "warnings": model.warnings if model else [],
                "error": wanted.error,
            },
            "counters": counters,
            "pending_rows": self.writer.pending_rows,
            "unconfirmed": self.writer.delivery.unconfirmed(),
            "drift": self.drift.status(),
            "last_error": self.writer.last_error or wanted.error or self.camera_error,
        }

    def problems(self) -> list[str]:
        """What is wrong while inference runs: the module's storage trouble, then this camera's
        (empty if nothing)."""
        return self.writer.problems() + self.camera_problems()

    def camera_problems(self) -> list[str]:
        """What is wrong with this camera alone while inference runs: a model refused."""
        error = self.wanted_model.error
        if error and self.models.current is not None:
            return [f"model refused, the previous one serves: {error}"]
        return []

    def _start_camera(self) -> None:
        s = self.settings
        try:
            source = build_source(s.camera, *self.parts.camera_roots)
        except SourceError as exc:
            self.camera_error, self.grabber = str(exc), None
            log.error("camera not available", extra={"camera_id": s.camera_id, "error": str(exc)})
            return
        self.camera_error = None
        self.grabber = FrameGrabber(
            source,
            s.camera_fps,
            keep=16 if s.trigger_paced else 1,
            stall_timeout=_STALL_FACTOR * s.camera_timeout_s,
            reopen=lambda: build_source(self.settings.camera, *self.parts.camera_roots),
        )
        self.grabber.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            grabber = self.grabber
            if grabber is None:
                self._stop.wait(0.2)
                continue
            frame = grabber.next_frame(timeout=0.2)
            if frame is None:
                continue
            with self._lock:
                forced, self._capture_requests = self._capture_requests, []
                trigger_id = self._trigger_ids.popleft() if self._trigger_ids else None
            model, (s, version) = self._model(), self._in_force
            grabber.decode_side = (
                decode_side(model) if model is not None and infers_every_frame(s) else None
            )
            if model is None:
                self.metrics.count("frames_without_model")
                for f in forced:
                    f.set_exception(RuntimeError(f"no model serving: {self.wanted_model.error}"))
                continue
            if not (
                forced or trigger_id or s.trigger_paced or self._sampler.admit(time.monotonic())
            ):
                continue
            try:
                outcome = self._infer(frame, model, s, version, trigger_id)
            except Exception as exc:
                self.metrics.count("inference_errors")
                log.exception("inference failed", extra={"frame": frame.name})
                for f in forced:
                    f.set_exception(exc)
                continue
            if outcome is None:
                for f in forced:
                    f.set_exception(RuntimeError(f"frame {frame.name} could not be decoded"))
                continue
            self.writer.submit(outcome)
            self.drift.observe(outcome)
            for f in forced:
                f.set_result(_summary(outcome))

    def _rules_of(self, s: CisSettings) -> RuleBook:
        """The zones and rules of the settings ``s``, compiled when they are new (on the inference
        thread, so a frame is judged by the rules of the settings it was inferred with)."""
        if self._rules.settings is not s:
            self._rules = RuleBook(s)
        return self._rules

    def _infer(
        self,
        frame: Frame,
        model: Model,
        s: CisSettings,
        version: int | None,
        trigger_id: str | None = None,
    ) -> Outcome | None:
        image = frame.image
        if image is None:  # a JPEG frame the capture thread did not decode
            assert frame.jpeg is not None
            t0 = time.perf_counter()
            image = decode(frame.jpeg, reduction_for(frame.width, frame.height, decode_side(model)))
            if image is None:
                self.metrics.count("undecodable_frames")
                log.warning("frame not decodable, skipped", extra={"frame": frame.name})
                return None
            self.metrics.time("decode", (time.perf_counter() - t0) * 1000)
        image_result = model.detect(image, s.prob_threshold, s.iou_threshold)
        scale = frame.width / image.shape[1]
        result = (
            image_result if scale == 1 else image_result.scaled(scale, frame.width, frame.height)
        )
        t0 = time.perf_counter()
        judgement = self._rules_of(s).judge(result.detections)
        self.metrics.time("rules", (time.perf_counter() - t0) * 1000)
        for stage, ms in result.timings_ms.items():
            self.metrics.time(stage, ms)
        self.metrics.count("inferences")
        self.metrics.detected([d.label for d in result.detections], judgement.verdict)
        best = max((d.probability for d in result.detections), default=None)
        now = time.monotonic()
        return Outcome(
            unique_id=str(uuid.uuid4()),
            frame=frame,
            image=image,
            image_result=image_result,
            result=result,
            settings=s,
            model_name=model.name,
            model_version=model.version,
            retrain=self._retrain.pick(now, best, self.drift.raised_since()),
            inferred_at=now,
            judgement=judgement,
            settings_version=version,
            trigger_id=trigger_id,
        )


def _summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "unique_id": outcome.unique_id,
        "frame": outcome.frame.name,
        "model": f"{outcome.model_name}/{outcome.model_version}",
        "detections": [d.to_dict() for d in outcome.result.detections],
        "verdict": outcome.judgement.verdict,
        "rules": fired_json(outcome.judgement.fired),
        "timings_ms": outcome.result.timings_ms,
    }
