"""The CIS module as a service: twin -> settings -> one pipeline per camera, status in reported
properties and in each camera's status file.

A module runs one camera, set by the twin's own keys, or several: one per entry of its ``cameras``
list, each entry over the module's keys (``CisSettings.each_camera``). Its cameras share one model
session per distinct model (:class:`~mfgvision.cis.models.ModelManager`) and one writer (rows by
group commit, announcements journaled under the module id, so that a restart replays them whatever
cameras it runs by then). A camera is known by its ``camera_id``: adding, changing or removing one
starts, changes or stops that camera's pipeline and leaves the others running.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from pydantic import Field

from mfgvision import __version__
from mfgvision.capture.base import SourceError
from mfgvision.cis.messages import RECEIPTS_INPUT, TRIGGER_INPUT
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.models import ModelManager
from mfgvision.cis.pipeline import CisPipeline, ModuleParts
from mfgvision.cis.report import camera_file, module_status, reported
from mfgvision.cis.writer import OutcomeWriter
from mfgvision.edge.desired import DesiredSettings, desired_file
from mfgvision.edge.hub import START_WAIT_S, Hub, HubMessage, MethodArguments, MethodError
from mfgvision.runtime import Paths
from mfgvision.settings import CisSettings
from mfgvision.store.database import Database
from mfgvision.store.drift import DRIFT_FOLDER
from mfgvision.store.live import LIVE_FOLDER
from mfgvision.store.spool import RowSpool, row_spool_path
from mfgvision.store.status import STATUS_FOLDER, remove_status, write_status

log = logging.getLogger(__name__)

TRIGGER_ID_MAX = 128


class CameraArguments(MethodArguments):
    """The payload of a method for one camera: which one (needed when the module runs several)."""

    camera_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.\-]{1,40}$",
        description="the camera; needed when the module runs several",
    )


class CaptureNowArguments(CameraArguments):
    """The payload of ``capture_now``."""

    timeout_s: float = Field(10.0, ge=0.1, le=120, description="how long to wait for a frame")


class SetReferenceArguments(CameraArguments):
    """The payload of ``set_reference``."""

    timeout_s: float = Field(10.0, ge=0.1, le=120, description="how long to wait for a frame")


class CisService:
    """The capture-inference-store module of one camera or several."""

    def __init__(
        self,
        hub: Hub,
        paths: Paths,
        db: Database,
        report_every_s: float = 5.0,
        intra_op_threads: int | None = None,
    ) -> None:
        self.hub = hub
        self.paths = paths
        self.db = db
        self.report_every_s = report_every_s
        self.intra_op_threads = intra_op_threads
        self.settings = DesiredSettings(CisSettings, desired_file(paths.data, hub.module_id))
        self.models = ModelManager(paths.models)
        #: The module's own figures (delivery, receipts; a camera's once it is gone).
        self.metrics = PipelineMetrics(module=hub.module_id, camera_id=None)
        #: The cameras running, by camera id.
        self.pipelines: dict[str, CisPipeline] = {}
        self._parts: ModuleParts | None = None
        self._status_files: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)

    @property
    def pipeline(self) -> CisPipeline | None:
        """The pipeline of a module running one camera (None while none runs, or several do)."""
        pipelines = self._pipelines()
        return next(iter(pipelines.values())) if len(pipelines) == 1 else None

    @property
    def writer(self) -> OutcomeWriter | None:
        """The writer every camera of the module hands its outcomes to (None before the start)."""
        return self._parts.writer if self._parts is not None else None

    def start(self) -> None:
        online = self.hub.connect(wait_s=START_WAIT_S)
        # With the database away the module starts anyway: rows are spooled, and the spool creates
        # the schema when the database is back.
        schema_ready = self.db.create_schema_if_reachable()
        self._parts = ModuleParts(
            models=self.models,
            writer=OutcomeWriter(
                self.paths.images,
                self.db,
                self._send,
                self.metrics,
                owner=self.hub.module_id,
                spool=RowSpool(
                    row_spool_path(self.paths.images), self.db, schema_ready=schema_ready
                ),
                live_dir=self.paths.data / LIVE_FOLDER,
            ),
            send=self._send,
            camera_roots=(self.paths.assets, self.paths.data),
            drift_dir=self.paths.data / DRIFT_FOLDER,
            module=self.hub.module_id,
            intra_op_threads=self.intra_op_threads,
        )
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("capture_now", self._capture_now, CaptureNowArguments)
        self.hub.on_method("reload_model", self._reload_model, CameraArguments)
        self.hub.on_method("trigger", self._trigger, CameraArguments)
        self.hub.on_method("set_reference", self._set_reference, SetReferenceArguments)
        self.hub.on_input(TRIGGER_INPUT, self._on_trigger_message)
        self.hub.on_input(RECEIPTS_INPUT, self._on_receipts)
        self.hub.on_connection_change(self._on_connection_change)
        self._parts.writer.start()  # replays what an earlier run journaled and did not finish
        self.hub.on_desired(self._apply)
        self._apply(self.settings.starting_point(self.hub, online), full=True)
        self._reporter.start()

    def stop(self) -> None:
        """Stop every camera side by side (each finishes its frame in flight), then write and
        announce what they left, and release the models."""
        self._stop.set()
        self._reporter.join(timeout=2)
        with self._lock:
            pipelines = list(self.pipelines.values())
        _stop_side_by_side(pipelines)
        if self._parts is not None:
            self._parts.writer.stop()
        self.models.stop()
        self._report()
        self.hub.disconnect()
        self.db.close()

    def status(self) -> dict[str, Any]:
        """The module's status document: one camera's status as the module's, or, with a
        ``cameras`` list, the status over all of them and each camera's under ``cameras``."""
        config = self._config()
        pipelines = self._pipelines()
        writer = self.writer
        document: dict[str, Any] = {"software_version": __version__}
        if config["settings"]["cameras"] and writer is not None:
            cameras = {camera_id: p.status() for camera_id, p in pipelines.items()}
            document["status"] = module_status(cameras, writer.problems(), self._figures(writer))
            document["cameras"] = cameras
        else:
            document["status"] = self._single_status(next(iter(pipelines.values()), None))
        document["config"] = config
        document["updated"] = datetime.now(timezone.utc).isoformat()
        return document

    def _single_status(self, pipeline: CisPipeline | None) -> dict[str, Any]:
        """The status of a module running one camera: the camera's, with the module's counters."""
        if pipeline is None:
            return {"state": "config_error"}
        status = pipeline.status()
        status["counters"] = dict(Counter(status["counters"]) + Counter(self.metrics.counters))
        return status

    def _figures(self, writer: OutcomeWriter) -> dict[str, Any]:
        """The module's own counters and what waits in its writer."""
        return {
            "counters": dict(self.metrics.counters),
            "pending_rows": writer.pending_rows,
            "unconfirmed": writer.delivery.unconfirmed(),
        }

    def _config(self) -> dict[str, Any]:
        """The ``config`` section, as the pipelines run it (taken under the settings lock)."""
        with self._lock:
            return self.settings.report()

    def _pipelines(self) -> dict[str, CisPipeline]:
        with self._lock:
            return dict(self.pipelines)

    def _apply(self, desired: dict[str, Any], full: bool) -> None:
        """Take a desired patch or whole section; run the cameras on the settings in force (the
        document's when valid, else the last good ones), then report."""
        with self._lock:
            valid = self.settings.apply(desired, full)
            settings, version = self.settings.current, self.settings.applied_version
            assert isinstance(settings, CisSettings) and self._parts is not None
            self._parts.writer.delivery.upload_receipts = settings.upload_receipts
            self._run_cameras(settings.each_camera(), version)
            cameras = list(self.pipelines)
        if valid:
            log.info(
                "settings applied",
                extra={"version": self.settings.applied_version, "cameras": cameras},
            )
        self._report()

    def _run_cameras(self, wanted: list[CisSettings], version: int | None) -> None:
        """Stop the cameras not in ``wanted``, apply their settings to those running, start the
        new ones (under the lock)."""
        assert self._parts is not None
        ids = {s.camera_id for s in wanted}
        gone = [p for camera_id, p in self.pipelines.items() if camera_id not in ids]
        _stop_side_by_side(gone)
        for pipeline in gone:
            camera_id = pipeline.settings.camera_id
            del self.pipelines[camera_id]
            self._parts.writer.detach(camera_id)
            log.info("camera stopped", extra={"camera_id": camera_id})
        for s in wanted:
            running = self.pipelines.get(s.camera_id)
            if running is not None:
                running.apply(s, version)
                continue
            pipeline = CisPipeline(s, self._parts, version)
            pipeline.start()
            self.pipelines[s.camera_id] = pipeline
            log.info("camera started", extra={"camera_id": s.camera_id})

    def _send(self, output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        self.hub.send_to_output(output, HubMessage.from_json(body), on_sent)

    def _on_receipts(self, message: HubMessage) -> None:
        writer = self.writer
        if writer is not None:
            writer.delivery.on_receipts(message)

    def _on_connection_change(self, connected: bool) -> None:
        writer = self.writer
        if writer is not None:
            writer.delivery.on_connection_change(connected)

    def _camera(self, camera_id: str | None) -> CisPipeline:
        """The camera a method is for: the one named, or the module's only one."""
        pipelines = self._pipelines()
        if not pipelines:
            raise MethodError(409, "no valid settings yet")
        if camera_id is None:
            if len(pipelines) == 1:
                return next(iter(pipelines.values()))
            raise MethodError(
                400, f"camera_id is needed: this module runs the cameras {', '.join(pipelines)}"
            )
        pipeline = pipelines.get(camera_id)
        if pipeline is None:
            raise MethodError(
                404, f"no camera {camera_id} in this module (cameras: {', '.join(pipelines)})"
            )
        return pipeline

    def _capture_now(self, arguments: CaptureNowArguments) -> dict[str, Any]:
        pipeline = self._camera(arguments.camera_id)
        try:
            return pipeline.capture_now(arguments.timeout_s)
        except TimeoutError:
            raise MethodError(504, "no frame arrived in time") from None
        except RuntimeError as exc:
            raise MethodError(503, str(exc)) from None

    def _set_reference(self, arguments: SetReferenceArguments) -> dict[str, Any]:
        """The camera is set up: its next inferred frame becomes the drift reference."""
        pipeline = self._camera(arguments.camera_id)
        try:
            return pipeline.drift.set_reference(arguments.timeout_s)
        except TimeoutError:
            raise MethodError(504, "no frame was inferred in time") from None
        except RuntimeError as exc:
            raise MethodError(500, str(exc)) from None

    def _trigger(self, arguments: CameraArguments) -> dict[str, Any]:
        """Fire a camera's software trigger (camera_trigger_mode 'software')."""
        _fire(self._camera(arguments.camera_id))
        return {"triggered": True}

    def _reload_model(self, arguments: CameraArguments) -> dict[str, Any]:
        """Load a camera's model again from disk, for every camera using it; on a module of
        several cameras, without a camera_id, every model."""
        if arguments.camera_id is None and len(self._pipelines()) > 1:
            return {"reloading": self.models.reload()}
        return {"reloading": self._camera(arguments.camera_id).reload_model()}

    def _on_trigger_message(self, message: HubMessage) -> None:
        """A message on the ``trigger`` input, for the camera it names (one of another module is
        ignored; a module of one camera takes one naming none): the next frame is inferred, stored
        and announced with the message's ``trigger_id``, and a camera with
        ``camera_trigger_mode`` ``software`` is triggered. A message without a ``trigger_id``
        only fires the software trigger."""
        target, trigger_id = _trigger_body(message)
        pipeline = self._trigger_target(target)
        if pipeline is None:
            return
        if trigger_id is not None and not (
            isinstance(trigger_id, str) and 0 < len(trigger_id) <= TRIGGER_ID_MAX
        ):
            log.warning(
                "trigger message refused", extra={"error": "trigger_id is not a short text"}
            )
            return
        if trigger_id is not None:
            pipeline.inspect_for(trigger_id)
        if trigger_id is None or pipeline.settings.camera_trigger_mode == "software":
            try:
                _fire(pipeline)
            except MethodError as exc:
                log.warning("trigger message not applied", extra={"error": str(exc)})

    def _trigger_target(self, target: Any) -> CisPipeline | None:
        """The camera a trigger message names; None when it is not one of this module's (logged
        when the message cannot say which)."""
        pipelines = self._pipelines()
        if target is None and len(pipelines) == 1:
            return next(iter(pipelines.values()))
        if target is None:
            error = "no valid settings yet" if not pipelines else "it names no camera_id"
            log.warning("trigger message not applied", extra={"error": error})
            return None
        return pipelines.get(target) if isinstance(target, str) else None

    def _report(self) -> None:
        try:
            document = self.status()
        except Exception:
            log.exception("status not built")
            return
        self.hub.report(lambda: reported(document))
        self._write_status_files(document)

    def _write_status_files(self, document: dict[str, Any]) -> None:
        """Mirror each camera's status into ``<data>/status/<camera_id>.json``, which the dashboard
        reads; the file of a camera no longer running goes."""
        folder = self.paths.data / STATUS_FOLDER
        pipelines = self._pipelines()
        if "cameras" in document:
            files = {
                camera_id: camera_file(document, camera_id, p.settings.model_dump())
                for camera_id, p in pipelines.items()
                if camera_id in document["cameras"]
            }
        else:
            only = next(iter(pipelines.values()), None)
            files = {only.settings.camera_id if only else self.hub.module_id: document}
        for camera_id, body in files.items():
            write_status(folder, camera_id, self.hub.module_id, body)
        for camera_id in self._status_files - files.keys():
            remove_status(folder, camera_id)
        self._status_files = set(files)

    def _report_loop(self) -> None:
        while not self._stop.wait(self.report_every_s):
            self._report()


def _fire(pipeline: CisPipeline) -> None:
    """Fire the camera's software trigger; MethodError 409 when it cannot."""
    try:
        pipeline.trigger()
    except SourceError as exc:
        raise MethodError(409, str(exc)) from None


def _trigger_body(message: HubMessage) -> tuple[Any, Any]:
    """The ``camera_id`` and ``trigger_id`` a trigger message names, as sent (None where it names
    none, or is not a JSON object)."""
    try:
        body = message.json()
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    return body.get("camera_id"), body.get("trigger_id")


def _stop_side_by_side(pipelines: list[CisPipeline]) -> None:
    """Stop pipelines at once, each on a thread of its own; one that fails is logged."""
    if not pipelines:
        return

    def stop(pipeline: CisPipeline) -> None:
        try:
            pipeline.stop()
        except Exception:
            log.exception(
                "camera did not stop cleanly", extra={"camera_id": pipeline.settings.camera_id}
            )

    with ThreadPoolExecutor(len(pipelines), thread_name_prefix="camera-stop") as pool:
        list(pool.map(stop, pipelines))
