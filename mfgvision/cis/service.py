"""The CIS module as a service: twin -> settings -> pipeline, status in reported properties."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.capture.base import SourceError, mask_credentials
from mfgvision.cis.pipeline import CisPipeline
from mfgvision.edge.desired import desired_state
from mfgvision.edge.hub import Hub, HubMessage, MethodError
from mfgvision.runtime import Paths
from mfgvision.settings import CisSettings, SettingsError, parse_settings
from mfgvision.store.database import Database
from mfgvision.store.status import STATUS_FOLDER, remove_status, write_status

log = logging.getLogger(__name__)

#: Input whose messages fire the camera's software trigger (e.g. from a PLC bridge module).
TRIGGER_INPUT = "trigger"


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
        self._desired: dict[str, Any] = {}
        self._applied_version: int | None = None
        self._config_error: dict[str, Any] | None = None
        self._status_camera: str | None = None
        self._schema_ready = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)

    def start(self) -> None:
        self.hub.connect()
        # With the database away the module starts anyway: rows are spooled, and the spool creates
        # the schema when the database is back.
        self._schema_ready = self.db.create_schema_if_reachable()
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("capture_now", self._capture_now)
        self.hub.on_method("reload_model", self._reload_model)
        self.hub.on_method("trigger", self._trigger)
        self.hub.on_input(TRIGGER_INPUT, self._on_trigger_message)
        self.hub.on_desired_patch(self._on_patch)
        self._apply(self.hub.get_twin().get("desired", {}), replace=True)
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
            "config": {
                "applied_version": self._applied_version,
                "settings": _reported_settings(self.pipeline.settings) if self.pipeline else None,
                "error": self._config_error,
            },
            "updated": datetime.now(timezone.utc).isoformat(),
        }

    def _on_patch(self, patch: dict[str, Any]) -> None:
        self._apply(patch, replace=False)

    def _apply(self, desired: dict[str, Any], replace: bool) -> None:
        """Validate the whole resulting desired state; apply it, or refuse it and keep the last good."""
        with self._lock:
            version = desired.get("$version")
            merged = desired_state(self._desired, desired, replace)
            try:
                settings = parse_settings(CisSettings, merged)
            except SettingsError as exc:
                self._config_error = {"version": version, "message": str(exc)}
                log.error(
                    "desired properties refused", extra={"version": version, "error": str(exc)}
                )
                self._report()
                return
            assert isinstance(settings, CisSettings)
            self._desired, self._applied_version, self._config_error = merged, version, None
            if self.pipeline is None:
                self.pipeline = CisPipeline(
                    settings,
                    self.paths.assets,
                    self.paths.models,
                    self.paths.images,
                    self.db,
                    self._emit,
                    self.intra_op_threads,
                    schema_ready=self._schema_ready,
                    owner=self.hub.module_id,
                )
                self.pipeline.start()
            else:
                self.pipeline.apply(settings)
            log.info(
                "settings applied", extra={"version": version, "camera_id": settings.camera_id}
            )
            self._report()

    def _emit(self, output: str, body: dict[str, Any]) -> None:
        self.hub.send_to_output(output, HubMessage.from_json(body))

    def _capture_now(self, payload: Any) -> dict[str, Any]:
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        timeout = float((payload or {}).get("timeout_s", 10)) if isinstance(payload, dict) else 10.0
        try:
            return self.pipeline.capture_now(timeout)
        except TimeoutError:
            raise MethodError(504, "no frame arrived in time") from None
        except RuntimeError as exc:
            raise MethodError(503, str(exc)) from None

    def _trigger(self, _payload: Any) -> dict[str, Any]:
        """Fire the camera's software trigger (camera_trigger_mode 'software')."""
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        try:
            self.pipeline.trigger()
        except SourceError as exc:
            raise MethodError(409, str(exc)) from None
        return {"triggered": True}

    def _on_trigger_message(self, message: HubMessage) -> None:
        """Any message on the ``trigger`` input fires the software trigger."""
        try:
            self._trigger(None)
        except MethodError as exc:
            log.warning("trigger message not applied", extra={"error": str(exc)})

    def _reload_model(self, _payload: Any) -> dict[str, Any]:
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


def _reported_settings(settings: CisSettings) -> dict[str, Any]:
    """The settings in force, for reported properties: credentials in the camera URI masked."""
    dump = settings.model_dump()
    dump["camera_uri"] = mask_credentials(settings.camera_uri)
    return dump
