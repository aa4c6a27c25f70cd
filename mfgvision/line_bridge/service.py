"""The LineBridge module: each camera's verdict to the line, triggers from it.

Input ``inference`` (routed from each CIS's ``inference`` output) carries every announced result;
each one updates its camera's :class:`CameraState` and is handed to every enabled sink, which never
blocks. A message that is not an inference is counted as rejected and logged on one line; a
``unique_id`` seen before (a replay) is dropped. Results of triggered parts go through the reject
gate (:mod:`mfgvision.line_bridge.gate`). The cameras' module state comes from the CIS status files
(``<data>/status/<camera_id>.json``), read every ``status_poll_s``; a change is passed on too.

A trigger (:meth:`LineBridgeService.trigger`, the ``Trigger`` every sink is given) sends
``{"trigger_id", "camera_id"}`` on output ``trigger``, routed to the CIS's input ``trigger``; the CIS
infers its next frame and announces it with that ``trigger_id``. Settings come from the module twin
(``LineBridgeSettings``); status goes to reported properties. On SIGTERM the sinks are stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from mfgvision import __version__
from mfgvision.edge.desired import DesiredSettings, desired_file
from mfgvision.edge.hub import START_WAIT_S, Hub, HubMessage
from mfgvision.line_bridge.gate import RejectGate
from mfgvision.line_bridge.results import CameraState, Inspection, Sink, Trigger
from mfgvision.runtime import Paths
from mfgvision.settings import LineBridgeSettings
from mfgvision.store.status import STATUS_FOLDER, read_statuses

__all__ = ["INFERENCE_INPUT", "TRIGGER_OUTPUT", "LineBridgeService"]

log = logging.getLogger(__name__)

INFERENCE_INPUT = "inference"
TRIGGER_OUTPUT = "trigger"
#: ``unique_id``s remembered to drop replayed results.
SEEN_IDS = 10000
SHOWN_CHARS = 200

#: Builds the sinks the settings enable, each given the bridge's trigger.
SinkFactory = Callable[[LineBridgeSettings, str, Trigger], list[Sink]]


def enabled_sinks(settings: LineBridgeSettings, module_id: str, trigger: Trigger) -> list[Sink]:
    """The connections to the line that ``settings`` turn on; each one's library is imported only
    where it is configured (asyncua alone takes 0.4 s and 38 MiB to import)."""
    sinks: list[Sink] = []
    if settings.mqtt.enabled:
        from mfgvision.line_bridge.mqtt import MqttSink

        sinks.append(MqttSink(settings.mqtt, module_id, trigger, settings.trigger_timeout_s))
    if settings.modbus is not None:
        from mfgvision.line_bridge.modbus import ModbusSink

        sinks.append(ModbusSink(settings.modbus, trigger))
    if settings.opcua_client is not None:
        from mfgvision.line_bridge.opcua_client import OpcUaClientSink

        sinks.append(OpcUaClientSink(settings.opcua_client))
    if settings.opcua_server is not None:
        from mfgvision.line_bridge.opcua_server import OpcUaServerSink

        sinks.append(OpcUaServerSink(settings.opcua_server, trigger))
    return sinks


class LineBridgeService:
    """Passes every camera's verdicts and state to the line's connections; triggers the CIS."""

    def __init__(
        self,
        hub: Hub,
        paths: Paths,
        *,
        sink_factory: SinkFactory = enabled_sinks,
        extra_sinks: Sequence[Sink] = (),
    ) -> None:
        self.hub = hub
        self.paths = paths
        self.settings = DesiredSettings(LineBridgeSettings, desired_file(paths.data, hub.module_id))
        self.cameras: dict[str, CameraState] = {}
        self.counters = {"inspections": 0, "rejected": 0, "duplicates": 0, "triggers": 0}
        self.last_rejected: dict[str, str] | None = None
        self.sink_error: str | None = None
        self.gate = RejectGate(self._publish, "NG")
        self._sink_factory = sink_factory
        self._extra_sinks = list(extra_sinks)
        self._sinks: list[Sink] = []
        self._sinks_for: LineBridgeSettings | None = None
        self._seen: OrderedDict[str, bool] = OrderedDict()
        self._state = "starting"
        self._lock = threading.Lock()
        self._sinks_lock = threading.Lock()
        self._stop = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)
        self._watcher = threading.Thread(target=self._watch_loop, name="camera-states", daemon=True)

    def start(self) -> None:
        online = self.hub.connect(wait_s=START_WAIT_S)
        for sink in self._extra_sinks:
            sink.start()
        self.hub.on_input(INFERENCE_INPUT, self.handle)
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_desired(self._apply)
        self._apply(self.settings.starting_point(self.hub, online), full=True)
        self._state = "running"
        self._watcher.start()
        self._reporter.start()
        log.info("line bridge started", extra={"sinks": [s.name for s in self._all_sinks()]})

    def stop(self) -> None:
        """Stop watching, stop every sink (each sends what it can in a short time), report."""
        self._stop.set()
        for thread in (self._watcher, self._reporter):
            if thread.is_alive():
                thread.join(2.0)
        with self._sinks_lock:
            sinks, self._sinks = self._all_sinks(), []
        for sink in sinks:
            sink.stop()
        self._state = "stopped"
        self._report()
        self.hub.disconnect()
        log.info("line bridge stopped", extra=dict(self.counters))

    def status(self) -> dict[str, Any]:
        with self._lock:
            cameras = {cid: _state_json(state) for cid, state in self.cameras.items()}
        return {
            "software_version": __version__,
            "status": {
                "state": "degraded"
                if self._state == "running" and self.sink_error
                else self._state,
                "reasons": [f"connections not built: {self.sink_error}"] if self.sink_error else [],
                **self.counters,
                **self.gate.counters,
                "waiting_parts": self.gate.waiting(),
                "last_rejected": self.last_rejected,
                "cameras": cameras,
                "sinks": {s.name: s.status() for s in self._all_sinks()},
            },
            "config": self.settings.report(),
            "updated": datetime.now(timezone.utc).isoformat(),
        }

    # -- results ----------------------------------------------------------------------------------

    def handle(self, message: HubMessage) -> None:
        """Take one ``inference`` message; whatever is wrong with it is counted, never raised."""
        try:
            inspection = Inspection.from_message(message.json())
        except Exception as exc:
            self._reject(exc)
            return
        with self._lock:
            if inspection.unique_id in self._seen:
                self.counters["duplicates"] += 1
                return
            self._seen[inspection.unique_id] = True
            while len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        if inspection.trigger_id is None:
            self._publish(inspection)
        else:
            self.gate.offer(inspection)

    def _publish(self, inspection: Inspection) -> None:
        """Make ``inspection`` its camera's latest and hand it to every sink."""
        with self._lock:
            state = self._camera(inspection.camera_id)
            state.record(inspection)
            self.counters["inspections"] += 1
            snapshot = dataclasses.replace(state, extra=dict(state.extra))
        self._hand_over(snapshot, inspection)

    def _hand_over(self, state: CameraState, inspection: Inspection | None) -> None:
        for sink in self._all_sinks():
            try:
                sink.publish(state, inspection)
            except Exception:
                log.exception("sink refused a result", extra={"sink": sink.name})

    def _camera(self, camera_id: str) -> CameraState:
        state = self.cameras.get(camera_id)
        if state is None:
            state = self.cameras[camera_id] = CameraState(camera_id)
        return state

    def _reject(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:SHOWN_CHARS]
        self.counters["rejected"] += 1
        self.last_rejected = {"error": error, "at": datetime.now(timezone.utc).isoformat()}
        log.error("inference message rejected", extra={"error": error})

    # -- triggers ---------------------------------------------------------------------------------

    def trigger(self, camera_id: str, timeout_s: float) -> Inspection:
        """Make ``camera_id`` inspect now and wait for that inspection (the ``Trigger`` contract);
        TimeoutError after ``timeout_s``, when the part has been given the fail-safe verdict."""
        trigger_id = uuid.uuid4().hex
        with self._lock:
            known = self.cameras.get(camera_id)
            where = (known.location, known.position) if known else ("", "")
        part = self.gate.open(camera_id, trigger_id, *where)
        self.counters["triggers"] += 1
        body = {"trigger_id": trigger_id, "camera_id": camera_id}
        self.hub.send_to_output(TRIGGER_OUTPUT, HubMessage.from_json(body))
        try:
            inspection = part.verdict.result(timeout_s)
        except TimeoutError:
            self.gate.expire(part)
            inspection = part.verdict.result()
        if inspection.fail_safe:
            raise TimeoutError(f"no result from camera {camera_id} within {timeout_s} s")
        return inspection

    # -- camera module state ----------------------------------------------------------------------

    def poll_camera_states(self) -> None:
        """Read the CIS status files and pass on each camera whose module state changed."""
        changed: list[CameraState] = []
        for camera_id, status in read_statuses(self.paths.data / STATUS_FOLDER).items():
            with self._lock:
                state = self._camera(camera_id)
                if state.state == status.state:
                    continue
                state.state = status.state
                if not state.inspections:  # until its first result, where the status file says
                    state.location, state.position = status.location, status.position
                changed.append(dataclasses.replace(state, extra=dict(state.extra)))
        for state in changed:
            self._hand_over(state, None)

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_camera_states()
            except Exception:
                log.exception("camera states not read")
            self._stop.wait(self._settings().status_poll_s)

    # -- settings ---------------------------------------------------------------------------------

    def _apply(self, desired: dict[str, Any], full: bool) -> None:
        with self._sinks_lock:
            self.settings.apply(desired, full)
            settings = self._settings()
            self.gate.fail_safe = settings.fail_safe
            if self._sinks_for is None or _connections(self._sinks_for) != _connections(settings):
                for sink in self._sinks:
                    sink.stop()
                self._sinks = self._build_sinks(settings)
                self._sinks_for = settings
        self._report()

    def _build_sinks(self, settings: LineBridgeSettings) -> list[Sink]:
        """The enabled connections, started; one that cannot be built (a CA file that is not
        there, a port in use) leaves the module running without connections, ``degraded`` with the
        reason; those already started are stopped again."""
        sinks: list[Sink] = []
        try:
            for sink in self._sink_factory(settings, self.hub.module_id, self.trigger):
                sink.start()
                sinks.append(sink)
        except Exception as exc:
            for sink in sinks:
                sink.stop()
            self.sink_error = f"{type(exc).__name__}: {exc}"[:SHOWN_CHARS]
            log.error("connections to the line not built", extra={"error": self.sink_error})
            return []
        self.sink_error = None
        return sinks

    def _settings(self) -> LineBridgeSettings:
        settings = self.settings.current
        assert isinstance(settings, LineBridgeSettings)
        return settings

    def _all_sinks(self) -> list[Sink]:
        return [*self._extra_sinks, *self._sinks]

    # -- reporting --------------------------------------------------------------------------------

    def _report(self) -> None:
        self.hub.report(self.status)

    def _report_loop(self) -> None:
        while not self._stop.wait(self._settings().report_every_s):
            self._report()


def _connections(settings: LineBridgeSettings) -> dict[str, Any]:
    """The settings a sink is built from (a change rebuilds the sinks)."""
    return settings.model_dump(
        include={"mqtt", "modbus", "opcua_client", "opcua_server", "trigger_timeout_s"}
    )


def _state_json(state: CameraState) -> dict[str, Any]:
    return {
        "verdict": state.verdict,
        "inspection_id": state.inspection_id,
        "inspections": state.inspections,
        "ng_count": state.ng_count,
        "state": state.state,
        "updated_at": None if state.updated_at is None else state.updated_at.isoformat(),
    }
