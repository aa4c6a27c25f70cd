"""The CIS module as a service: twin -> settings -> pipeline, status in reported properties."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import Field

from mfgvision import __version__
from mfgvision.capture.base import SourceError
from mfgvision.cis.messages import RECEIPTS_INPUT, TRIGGER_INPUT
from mfgvision.cis.pipeline import CisPipeline
from mfgvision.edge.desired import DesiredSettings, desired_file
from mfgvision.edge.hub import START_WAIT_S, Hub, HubMessage, MethodArguments, MethodError
from mfgvision.runtime import Paths
from mfgvision.settings import CisSettings
from mfgvision.store.database import Database
from mfgvision.store.live import LIVE_FOLDER
from mfgvision.store.status import STATUS_FOLDER, remove_status, write_status

log = logging.getLogger(__name__)

TRIGGER_ID_MAX = 128


class CaptureNowArguments(MethodArguments):
    """The payload of ``capture_now``."""

    timeout_s: float = Field(10.0, ge=0.1, le=120, description="how long to wait for a frame")


class SetReferenceArguments(MethodArguments):
    """The payload of ``set_reference``."""

    timeout_s: float = Field(10.0, ge=0.1, le=120, description="how long to wait for a frame")


class CisService:
    """One camera's capture-inference-store module."""

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
        self.pipeline: CisPipeline | None = None
        self.settings = DesiredSettings(CisSettings, desired_file(paths.data, hub.module_id))
        self._status_camera: str | None = None
        self._schema_ready = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)

    def start(self) -> None:
        online = self.hub.connect(wait_s=START_WAIT_S)
        # With the database away the module starts anyway: rows are spooled, and the spool creates
        # the schema when the database is back.
        self._schema_ready = self.db.create_schema_if_reachable()
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("capture_now", self._capture_now, CaptureNowArguments)
        self.hub.on_method("reload_model", self._reload_model)
        self.hub.on_method("trigger", self._trigger)
        self.hub.on_method("set_reference", self._set_reference, SetReferenceArguments)
        self.hub.on_input(TRIGGER_INPUT, self._on_trigger_message)
        self.hub.on_input(RECEIPTS_INPUT, self._on_receipts)
        self.hub.on_connection_change(self._on_connection_change)
        self.hub.on_desired(self._apply)
        self._apply(self.settings.starting_point(self.hub, online), full=True)
        self._reporter.start()

    def stop(self) -> None:
        self._stop.set()
        self._reporter.join(timeout=2)
        if self.pipeline is not None:
            self.pipeline.stop()
        self._report()
        self.hub.disconnect()
        self.db.close()

    def status(self) -> dict[str, Any]:
        pipeline = self.pipeline.status() if self.pipeline else {"state": "config_error"}
        return {
            "software_version": __version__,
            "status": pipeline,
            "config": self._config(),
            "updated": datetime.now(timezone.utc).isoformat(),
        }

    def _config(self) -> dict[str, Any]:
        """The ``config`` section, as the pipeline runs it (taken under the settings lock)."""
        with self._lock:
            return self.settings.report()

    def _apply(self, desired: dict[str, Any], full: bool) -> None:
        """Take a desired patch or whole section; run the pipeline on the settings in force (the
        document's when valid, else the last good ones), then report."""
        with self._lock:
            valid = self.settings.apply(desired, full)
            settings, version = self.settings.current, self.settings.applied_version
            assert isinstance(settings, CisSettings)
            if self.pipeline is None:
                self.pipeline = CisPipeline(
                    settings,
                    self.paths.assets,
                    self.paths.models,
                    self.paths.images,
                    self.db,
                    self._send,
                    self.intra_op_threads,
                    schema_ready=self._schema_ready,
                    owner=self.hub.module_id,
                    data_dir=self.paths.data,
                    settings_version=version,
                    live_dir=self.paths.data / LIVE_FOLDER,
                )
                self.pipeline.start()
            else:
                self.pipeline.apply(settings, version)
        if valid:
            log.info(
                "settings applied",
                extra={"version": self.settings.applied_version, "camera_id": settings.camera_id},
            )
        self._report()

    def _send(self, output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        self.hub.send_to_output(output, HubMessage.from_json(body), on_sent)

    def _on_receipts(self, message: HubMessage) -> None:
        if self.pipeline is not None:
            self.pipeline.writer.delivery.on_receipts(message)

    def _on_connection_change(self, connected: bool) -> None:
        if self.pipeline is not None:
            self.pipeline.writer.delivery.on_connection_change(connected)

    def _capture_now(self, arguments: CaptureNowArguments) -> dict[str, Any]:
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        try:
            return self.pipeline.capture_now(arguments.timeout_s)
        except TimeoutError:
            raise MethodError(504, "no frame arrived in time") from None
        except RuntimeError as exc:
            raise MethodError(503, str(exc)) from None

    def _set_reference(self, arguments: SetReferenceArguments) -> dict[str, Any]:
        """The camera is set up: its next inferred frame becomes the drift reference."""
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        try:
            return self.pipeline.drift.set_reference(arguments.timeout_s)
        except TimeoutError:
            raise MethodError(504, "no frame was inferred in time") from None
        except RuntimeError as exc:
            raise MethodError(500, str(exc)) from None

    def _trigger(self, _arguments: MethodArguments) -> dict[str, Any]:
        """Fire the camera's software trigger (camera_trigger_mode 'software')."""
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        try:
            self.pipeline.trigger()
        except SourceError as exc:
            raise MethodError(409, str(exc)) from None
        return {"triggered": True}

    def _on_trigger_message(self, message: HubMessage) -> None:
        """A message on the ``trigger`` input: the next frame is inferred, stored and announced with
        the message's ``trigger_id`` (a message naming another camera is ignored), and a camera
        with ``camera_trigger_mode`` ``software`` is triggered. A message without a ``trigger_id``
        only fires the software trigger."""
        pipeline = self.pipeline
        if pipeline is None:
            log.warning("trigger message not applied", extra={"error": "no valid settings yet"})
            return
        trigger_id = _trigger_id(message, pipeline.settings.camera_id)
        if trigger_id is False:
            return
        if trigger_id is not None:
            pipeline.inspect_for(trigger_id)
        if trigger_id is None or pipeline.settings.camera_trigger_mode == "software":
            try:
                self._trigger(None)
            except MethodError as exc:
                log.warning("trigger message not applied", extra={"error": str(exc)})

    def _reload_model(self, _arguments: MethodArguments) -> dict[str, Any]:
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        self.pipeline.models.reload()
        return {
            "reloading": f"{self.pipeline.settings.model_name}/{self.pipeline.settings.model_version}"
        }

    def _report(self) -> None:
        status = self.hub.report(self.status)
        if status is not None:
            self._write_status_file(status)

    def _write_status_file(self, status: dict[str, Any]) -> None:
        """Mirror the status into ``<data>/status/<camera_id>.json``, which the dashboard reads."""
        camera_id = self.pipeline.settings.camera_id if self.pipeline else self.hub.module_id
        folder = self.paths.data / STATUS_FOLDER
        if self._status_camera not in (None, camera_id):
            remove_status(folder, self._status_camera)
        write_status(folder, camera_id, self.hub.module_id, status)
        self._status_camera = camera_id

    def _report_loop(self) -> None:
        while not self._stop.wait(self.report_every_s):
            self._report()


def _trigger_id(message: HubMessage, camera_id: str) -> str | Literal[False] | None:
    """The ``trigger_id`` of a trigger message; None when it names none, False when the message is
    for another camera or its ``trigger_id`` is not a short text (logged)."""
    try:
        body = message.json()
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    target, trigger_id = body.get("camera_id"), body.get("trigger_id")
    if target is not None and target != camera_id:
        return False
    if trigger_id is None:
        return None
    if not isinstance(trigger_id, str) or not 0 < len(trigger_id) <= TRIGGER_ID_MAX:
        log.warning("trigger message refused", extra={"error": "trigger_id is not a short text"})
        return False
    return trigger_id
