"""The one way a module talks to the world: outputs, inputs, twin properties and direct methods.

It mirrors the IoT Edge module client of ``azure-iot-device`` so the same module code runs on a device
(through edgeHub) and in a single process (through the in-process hub).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mfgvision.edge.reported import QuietReports
from mfgvision.secrets import mask_secrets
from mfgvision.settings import validation_message

log = logging.getLogger(__name__)

#: How long a module waits for its hub at start before it starts without it.
START_WAIT_S = 5.0


@dataclass
class HubMessage:
    """A message between modules: a body plus string properties (as IoT Hub messages carry)."""

    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    input_name: str | None = None

    @classmethod
    def from_json(cls, obj: Any, properties: dict[str, str] | None = None) -> HubMessage:
        return cls(json.dumps(obj, separators=(",", ":")).encode(), dict(properties or {}))

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError for a broken body."""
        return json.loads(self.body.decode("utf-8"))


class MethodError(Exception):
    """Raised by a direct-method handler to answer with a status other than 200."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


InputHandler = Callable[[HubMessage], None]
DesiredHandler = Callable[[dict[str, Any], bool], None]
MethodHandler = Callable[[Any], Any]


class MethodArguments(BaseModel):
    """A direct method's payload: nothing or an empty object, unless a subclass names its fields
    (bounded, finite numbers); anything else is answered with 400 before the handler runs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def method_arguments(model: type[MethodArguments], payload: Any) -> MethodArguments:
    """``payload`` validated into ``model``; ValueError or ValidationError when it does not fit."""
    if payload is None:
        return model()
    if not isinstance(payload, dict):
        raise ValueError("payload must be a JSON object")
    return model.model_validate(payload)


class Hub(ABC):
    """Base of every hub: keeps the method table and answers calls safely."""

    def __init__(self, module_id: str) -> None:
        self.module_id = module_id
        self._methods: dict[str, tuple[MethodHandler, type[MethodArguments]]] = {}
        self._quiet = QuietReports()
        self._session_lost: list[Callable[[], None]] = []

    @abstractmethod
    def connect(self, wait_s: float | None = None) -> bool:
        """Open the connection: wait until it is open, or at most ``wait_s`` seconds, and say
        whether it is. A hub not connected yet goes on connecting and, once connected, hands the
        whole desired section to the ``on_desired`` handlers."""

    @abstractmethod
    def disconnect(self) -> None:
        """Close the connection; pending outgoing messages are sent first."""

    @abstractmethod
    def send_to_output(
        self, output: str, message: HubMessage, on_sent: Callable[[], None] | None = None
    ) -> None:
        """Send a message on a named output; the hub's routes decide where it goes. ``on_sent``
        is called (on a hub thread) once the hub has acknowledged the message."""

    @abstractmethod
    def on_input(self, input_name: str, handler: InputHandler) -> None:
        """Call ``handler`` for each message that arrives on ``input_name``."""

    @abstractmethod
    def get_twin(self) -> dict[str, Any]:
        """The whole twin: ``{"desired": {...}, "reported": {...}}``."""

    @abstractmethod
    def on_desired(self, handler: DesiredHandler) -> None:
        """Call ``handler(desired, full)``: with each desired-properties patch (``full`` False) and,
        after every reconnection, with the whole desired section (``full`` True, it replaces the
        module's desired document). Both carry ``$version``."""

    @abstractmethod
    def patch_reported(self, patch: dict[str, Any]) -> None:
        """Merge ``patch`` into the reported properties; never blocks on the network."""

    def report(self, build: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Build the module's whole reported document, secrets masked, and send what changed (see
        :mod:`mfgvision.edge.reported`); failures are logged, never raised. Returns what was built
        and masked (sent or not), None if nothing."""
        try:
            properties = mask_secrets(build())
        except Exception:
            log.exception("reported properties not built", extra={"hub_module": self.module_id})
            return None
        patch = self._quiet.patch_for(properties)
        if patch is None:
            return properties
        try:
            self.patch_reported(patch)
        except Exception as exc:
            self._quiet.forget()
            log.warning(
                "reported properties not sent",
                extra={"hub_module": self.module_id, "error": f"{type(exc).__name__}: {exc}"},
            )
        return properties

    def on_session_lost(self, handler: Callable[[], None]) -> None:
        """Call ``handler`` when the hub finds it lost its session (and with it the messages it
        had acknowledged but not passed on yet)."""
        self._session_lost.append(handler)

    def _notify_session_lost(self) -> None:
        for handler in self._session_lost:
            try:
                handler()
            except Exception:
                log.exception("session-lost handler failed", extra={"hub_module": self.module_id})

    def on_method(
        self,
        name: str,
        handler: MethodHandler,
        arguments: type[MethodArguments] = MethodArguments,
    ) -> None:
        """Answer direct method ``name`` with ``handler(arguments)``, its payload validated into
        ``arguments`` first."""
        self._methods[name] = (handler, arguments)

    def call_method(self, name: str, payload: Any) -> tuple[int, Any]:
        """Run a direct method: 404 when unknown, 400 for a bad payload, 500 on failure; never
        raises. The answer has its secrets masked."""
        status, answer = self._answer(name, payload)
        return status, mask_secrets(answer)

    def _answer(self, name: str, payload: Any) -> tuple[int, Any]:
        entry = self._methods.get(name)
        if entry is None:
            return 404, {
                "error": f"unknown method '{name[:100]}'",
                "methods": sorted(self._methods),
            }
        handler, arguments = entry
        try:
            return 200, handler(method_arguments(arguments, payload))
        except MethodError as exc:
            return exc.status, {"error": str(exc)}
        except ValidationError as exc:
            return 400, {"error": f"bad payload: {validation_message(exc, 'payload')}"}
        except (ValueError, TypeError) as exc:
            return 400, {"error": f"bad payload: {exc}"}
        except Exception as exc:
            log.exception("direct method failed", extra={"method": name})
            return 500, {"error": f"{type(exc).__name__}: {exc}"}
