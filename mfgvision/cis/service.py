"""The CIS module as a service: twin -> settings -> pipeline, status in reported properties."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.cis.pipeline import CisPipeline
from mfgvision.edge.hub import Hub, HubMessage, MethodError
from mfgvision.runtime import Paths
from mfgvision.settings import CisSettings, SettingsError, merge_patch, parse_settings
from mfgvision.store.database import Database

log = logging.getLogger(__name__)


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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)

    def start(self) -> None:
        self.hub.connect()
        self.db.create_schema()
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("capture_now", self._capture_now)
        self.hub.on_method("reload_model", self._reload_model)
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
                "settings": self.pipeline.settings.model_dump() if self.pipeline else None,
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
            merged = (
                {k: v for k, v in desired.items() if not k.startswith("$")}
                if replace
                else merge_patch(self._desired, desired)
            )
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

    def _reload_model(self, _payload: Any) -> dict[str, Any]:
        if self.pipeline is None:
            raise MethodError(409, "no valid settings yet")
        self.pipeline.models.reload()
        return {
            "reloading": f"{self.pipeline.settings.model_name}/{self.pipeline.settings.model_version}"
        }

    def _report(self) -> None:
        try:
            self.hub.patch_reported(self.status())
        except Exception as exc:
            log.warning("reported properties not sent", extra={"error": str(exc)})

    def _report_loop(self) -> None:
        while not self._stop.wait(self.report_every_s):
            self._report()
