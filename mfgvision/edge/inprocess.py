"""A hub inside one process: modules exchange messages through the manifest's routes.

Used by the single-process demo and by tests. Each module's inputs are delivered on its own thread, in
order, so a slow consumer never blocks the sender. Messages routed to ``$upstream`` are kept (and, when a
path is given, appended to a JSON-lines file) as IoT Hub would receive them.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mfgvision.edge.hub import DesiredHandler, Hub, HubMessage, InputHandler
from mfgvision.edge.routes import Route
from mfgvision.edge.twins import merge

log = logging.getLogger(__name__)

_STOP = object()


class InProcessBroker:
    """Routes messages between in-process hubs and holds their twins."""

    def __init__(self, routes: list[Route], upstream_file: Path | None = None) -> None:
        self.routes = routes
        self.upstream: list[tuple[str, str, HubMessage]] = []
        self._upstream_file = upstream_file
        self._hubs: dict[str, InProcessHub] = {}
        self._lock = threading.Lock()

    def hub(self, module_id: str, desired: dict[str, Any] | None = None) -> InProcessHub:
        """The hub of ``module_id``, created with its desired properties on first use."""
        with self._lock:
            if module_id not in self._hubs:
                self._hubs[module_id] = InProcessHub(module_id, self, desired or {})
            return self._hubs[module_id]

    def route(self, module: str, output: str, message: HubMessage) -> int:
        """Deliver a module output along every matching route; returns the number of deliveries."""
        delivered = 0
        for route in self.routes:
            if not route.matches(module, output):
                continue
            delivered += 1
            if route.to_upstream:
                self._to_upstream(module, output, message)
                continue
            target = self._hubs.get(route.sink_module or "")
            if target is None:
                log.warning("route target not running", extra={"route": route.name})
                continue
            target.deliver(route.sink_input or "", message)
        if not delivered:
            log.debug("no route for output", extra={"source": module, "output": output})
        return delivered

    def patch_desired(self, module_id: str, patch: dict[str, Any]) -> int:
        """Patch a module's desired properties as the cloud would; returns the new ``$version``."""
        return self._hubs[module_id].apply_desired_patch(patch)

    def _to_upstream(self, module: str, output: str, message: HubMessage) -> None:
        with self._lock:
            self.upstream.append((module, output, message))
            if self._upstream_file is not None:
                line = {"module": module, "output": output, "properties": message.properties}
                try:
                    line["body"] = message.json()
                except ValueError:
                    line["body"] = message.body.decode("utf-8", "replace")
                with self._upstream_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\n")


class InProcessHub(Hub):
    """One module's view of the in-process broker."""

    def __init__(self, module_id: str, broker: InProcessBroker, desired: dict[str, Any]) -> None:
        super().__init__(module_id)
        self._broker = broker
        self._desired = dict(desired)
        self._desired.setdefault("$version", 1)
        self.reported: dict[str, Any] = {}
        self._inputs: dict[str, InputHandler] = {}
        self._desired_handlers: list[DesiredHandler] = []
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def connect(self, wait_s: float | None = None) -> bool:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"hub-{self.module_id}", daemon=True
            )
            self._thread.start()
        return True

    def disconnect(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None

    def send_to_output(
        self, output: str, message: HubMessage, on_sent: Callable[[], None] | None = None
    ) -> None:
        self._broker.route(self.module_id, output, message)
        if on_sent is not None:
            on_sent()

    def on_input(self, input_name: str, handler: InputHandler) -> None:
        self._inputs[input_name] = handler

    def get_twin(self) -> dict[str, Any]:
        with self._lock:
            return {
                "desired": copy.deepcopy(self._desired),
                "reported": copy.deepcopy(self.reported),
            }

    def on_desired(self, handler: DesiredHandler) -> None:
        self._desired_handlers.append(handler)

    def patch_reported(self, patch: dict[str, Any]) -> None:
        with self._lock:
            merge(self.reported, patch)

    def deliver(self, input_name: str, message: HubMessage) -> None:
        """Queue a message for one of this module's inputs."""
        self._queue.put(("input", input_name, message))

    def apply_desired_patch(self, patch: dict[str, Any]) -> int:
        """Merge a desired patch, bump ``$version`` and notify the module."""
        with self._lock:
            version = int(self._desired.get("$version", 1)) + 1
            merge(self._desired, patch)
            self._desired["$version"] = version
            body = {**copy.deepcopy(patch), "$version": version}
        self._queue.put(("desired", False, body))
        return version

    def reconnect(self) -> None:
        """What a module sees after IoT Hub reconnects it: the whole desired section again, and its
        next report sends the whole reported document."""
        self._quiet.forget()
        self._queue.put(("desired", True, self.get_twin()["desired"]))

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            kind, name, payload = item
            calls: list[Callable[[], None]]
            if kind == "desired":
                calls = [partial(h, payload, name) for h in self._desired_handlers]
            else:
                handler = self._inputs.get(name)
                if handler is None:
                    log.warning("message on an input nobody handles", extra={"input": name})
                    continue
                payload.input_name = name
                calls = [partial(handler, payload)]
            for call in calls:
                try:
                    call()
                except Exception:
                    log.exception(
                        "handler failed", extra={"hub_module": self.module_id, "kind": kind}
                    )
