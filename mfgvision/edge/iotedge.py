"""The IoT Edge hub: a module's ``Hub`` on the real ``azure-iot-device`` module client (sync API).

On a device the client is created from the IoT Edge environment (``IOTEDGE_WORKLOADURI`` and friends,
set by the IoT Edge runtime). Off a device the same code reaches a local edgeHub stand-in through
``EdgeHubConnectionString`` + ``EdgeModuleCACertificateFile`` (see ``mfgvision edgehub``).

Behaviour worth knowing:

* **Connecting** retries forever with capped exponential backoff (1 s doubling to 60 s), logging each
  failure, until it succeeds or :meth:`IoTEdgeHub.abort` is called. Once connected, the SDK itself
  re-establishes a dropped connection (``connection_retry``) and this class logs the state changes.
* **Outputs** never block the caller: :meth:`send_to_output` puts the message in an in-memory outbox
  and a sender thread hands it to the SDK, which returns only once edgeHub has acknowledged it. When
  edgeHub is unreachable the message stays at the head of the outbox and is retried with capped
  backoff, so nothing is lost while disconnected; edgeHub then stores and forwards it for the route's
  time-to-live. The outbox holds ``MFGVISION_OUTBOX_MAX`` messages (default 10000); beyond that the
  oldest are dropped and counted (``dropped``) so a long outage cannot exhaust memory. Delivery is
  at-least-once: a message in flight when the connection drops can be sent twice.
* **Inputs** are handed to the module's handlers on one dispatcher thread, one message at a time, in
  the order the SDK delivers them. Messages for an input whose handler is not registered yet (a module
  registers after connecting, and edgeHub may deliver queued messages at once) are held until it is.
* **Desired properties**: :meth:`get_twin` returns the full twin; patches are delivered in ``$version``
  order. The SDK fires the patch handler once right after every (re)connect with the whole desired
  section; modules merge patches, so this is harmless and also catches up on patches missed while
  disconnected.
* **Reported properties** are sent synchronously; when edgeHub is unreachable the patch is logged and
  dropped (modules report their full state periodically).
* **Direct methods** run :meth:`Hub.call_method` on the SDK's handler threads and answer with its status.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.iot.device import IoTHubModuleClient, Message, MethodRequest, MethodResponse
from azure.iot.device import exceptions as sdk_errors

from mfgvision.edge.hub import Hub, HubMessage, InputHandler, MethodHandler, PatchHandler

log = logging.getLogger(__name__)

ClientFactory = Callable[[], IoTHubModuleClient]

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
OUTBOX_MAX = 10_000
HELD_INPUTS_MAX = 1_000
_TRANSIENT = (
    sdk_errors.ClientError,
    sdk_errors.OperationCancelled,
    sdk_errors.OperationTimeout,
    OSError,
)
_STOP = object()


class HubClosed(ConnectionError):
    """The hub was closed (or asked to stop) before the operation could complete."""


def iot_edge_environment(env: dict[str, str] | None = None) -> bool:
    """True when this process runs as an IoT Edge module (on a device, or against a stand-in)."""
    env = dict(os.environ) if env is None else env
    return bool(env.get("IOTEDGE_WORKLOADURI") or env.get("EdgeHubConnectionString"))


def module_id_from_environment(default: str, env: dict[str, str] | None = None) -> str:
    """The module's identity: ``IOTEDGE_MODULEID``, else ``ModuleId`` of ``EdgeHubConnectionString``."""
    env = dict(os.environ) if env is None else env
    if env.get("IOTEDGE_MODULEID"):
        return env["IOTEDGE_MODULEID"]
    for part in env.get("EdgeHubConnectionString", "").split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "ModuleId" and value.strip():
            return value.strip()
    return default


def _default_factory() -> IoTHubModuleClient:
    return IoTHubModuleClient.create_from_edge_environment(
        connection_retry=True, connection_retry_interval=10, keep_alive=60
    )


class Backoff:
    """Capped exponential backoff: 1, 2, 4, ... seconds, at most ``maximum``."""

    def __init__(self, start: float = BACKOFF_START_S, maximum: float = BACKOFF_MAX_S) -> None:
        self.start = start
        self.maximum = maximum
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.start * (2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class IoTEdgeHub(Hub):
    """A module's hub on the IoT Edge module client."""

    def __init__(
        self,
        module_id: str,
        client_factory: ClientFactory = _default_factory,
        outbox_max: int | None = None,
        backoff_start_s: float = BACKOFF_START_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        flush_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(module_id)
        self._factory = client_factory
        self._client: IoTHubModuleClient | None = None
        self._backoff_start_s = backoff_start_s
        self._backoff_max_s = backoff_max_s
        self._flush_timeout_s = flush_timeout_s
        limit = outbox_max or int(os.environ.get("MFGVISION_OUTBOX_MAX", OUTBOX_MAX))
        self._outbox: collections.deque[tuple[str, HubMessage]] = collections.deque()
        self._outbox_max = max(1, limit)
        self._outbox_cv = threading.Condition()
        self._sending = False
        self._inputs: dict[str, InputHandler] = {}
        self._held: dict[str, list[HubMessage]] = {}
        self._patch_handlers: list[PatchHandler] = []
        self._last_patch_version: int | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._connected = False
        self._sender: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self.counters: dict[str, int] = {"sent": 0, "send_retries": 0, "dropped": 0}
        # The SDK also logs every background exception it hands to on_background_exception, which
        # this class logs with the module's name; keep one line per event.
        logging.getLogger("azure.iot.device.common.handle_exceptions").setLevel(logging.ERROR)

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect (retrying with capped backoff until it works or :meth:`abort` is called)."""
        with self._lock:
            if self._connected:
                return
            backoff = Backoff(self._backoff_start_s, self._backoff_max_s)
            while True:
                if self._closing.is_set():
                    raise HubClosed("the hub was closed before it could connect")
                try:
                    self._open()
                    break
                except _TRANSIENT as exc:
                    delay = backoff.next_delay()
                    log.warning(
                        "cannot reach edgeHub, retrying",
                        extra={
                            "hub_module": self.module_id,
                            "attempt": backoff.attempt,
                            "retry_in_s": delay,
                            "error": f"{type(exc).__name__}: {exc}",
                        },
                    )
                    if self._closing.wait(delay):
                        raise HubClosed("the hub was closed before it could connect") from None
            self._connected = True
            self._dispatcher = threading.Thread(
                target=self._dispatch, name=f"hub-{self.module_id}", daemon=True
            )
            self._dispatcher.start()
            self._sender = threading.Thread(
                target=self._send_loop, name=f"outbox-{self.module_id}", daemon=True
            )
            self._sender.start()
            log.info("connected to edgeHub", extra={"hub_module": self.module_id})

    def _open(self) -> None:
        if self._client is None:
            client = self._factory()
            client.on_connection_state_change = self._on_connection_state
            client.on_background_exception = self._on_background_exception
            self._client = client
        client = self._client
        # Setting the input handler first puts the client in handler mode before any message can
        # arrive (a persistent session may hold queued input messages), then connects.
        client.on_message_received = self._on_sdk_message
        client.connect()
        if self._patch_handlers:
            client.on_twin_desired_properties_patch_received = self._on_sdk_patch
        if self._methods:
            client.on_method_request_received = self._on_sdk_method

    def abort(self) -> None:
        """Stop a :meth:`connect` that is still retrying (e.g. on SIGTERM during start-up)."""
        self._closing.set()

    def disconnect(self) -> None:
        """Send what is in the outbox (up to the flush timeout), then shut the client down."""
        self._closing.set()
        self._wake.set()
        deadline = time.monotonic() + self._flush_timeout_s
        with self._outbox_cv:
            while (self._outbox or self._sending) and self._connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._outbox_cv.wait(min(remaining, 0.2))
            left = len(self._outbox)
            self._outbox_cv.notify_all()
        if left:
            log.warning(
                "outputs not sent before shutdown",
                extra={"hub_module": self.module_id, "messages": left},
            )
        self._events.put(_STOP)
        for thread in (self._sender, self._dispatcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5)
        with self._lock:
            client, self._client = self._client, None
            self._connected = False
        if client is not None:
            try:
                client.shutdown()
            except Exception as exc:
                log.warning("client shutdown failed", extra={"error": str(exc)})

    @property
    def connected(self) -> bool:
        client = self._client
        return bool(self._connected and client is not None and client.connected)

    def _on_connection_state(self) -> None:
        client = self._client
        state = "connected" if client is not None and client.connected else "disconnected"
        log.info("edgeHub connection changed", extra={"hub_module": self.module_id, "state": state})
        if state == "connected":
            self._wake.set()

    def _on_background_exception(self, exc: Exception) -> None:
        log.warning(
            "edgeHub client background error",
            extra={"hub_module": self.module_id, "error": f"{type(exc).__name__}: {exc}"},
        )

    # -- outputs ------------------------------------------------------------------------------

    def send_to_output(self, output: str, message: HubMessage) -> None:
        """Queue ``message`` for ``output``; returns at once (see the module docstring)."""
        with self._outbox_cv:
            if self._closing.is_set() and not self._connected:
                self.counters["dropped"] += 1
                log.warning("output after shutdown dropped", extra={"output": output})
                return
            if len(self._outbox) >= self._outbox_max:
                self._outbox.popleft()
                self.counters["dropped"] += 1
                if self.counters["dropped"] in (1, 10, 100) or self.counters["dropped"] % 1000 == 0:
                    log.warning(
                        "outbox full, oldest output dropped",
                        extra={"hub_module": self.module_id, "dropped": self.counters["dropped"]},
                    )
            self._outbox.append((output, message))
            self._outbox_cv.notify_all()

    @property
    def outbox_size(self) -> int:
        return len(self._outbox)

    def _send_loop(self) -> None:
        backoff = Backoff(min(0.5, self._backoff_start_s), min(30.0, self._backoff_max_s))
        while True:
            with self._outbox_cv:
                while not self._outbox and not self._closing.is_set():
                    self._outbox_cv.wait()
                if not self._outbox:
                    return
                output, message = self._outbox[0]
                self._sending = True
            try:
                self._send_now(output, message)
            except ValueError as exc:  # too large or malformed: retrying cannot help
                log.error(
                    "output refused by the client, dropped",
                    extra={"output": output, "error": str(exc)},
                )
                self._pop_head(output, message, sent=False)
            except _TRANSIENT as exc:
                self.counters["send_retries"] += 1
                delay = backoff.next_delay()
                log.warning(
                    "output not sent, will retry",
                    extra={
                        "hub_module": self.module_id,
                        "output": output,
                        "queued": len(self._outbox),
                        "retry_in_s": delay,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                with self._outbox_cv:
                    self._sending = False
                    self._outbox_cv.notify_all()
                if self._closing.is_set():
                    return
                # Wait out the backoff; a reconnect or shutdown cuts it short.
                self._wake.wait(delay)
                self._wake.clear()
            else:
                backoff.reset()
                self._pop_head(output, message, sent=True)

    def _send_now(self, output: str, message: HubMessage) -> None:
        client = self._client
        if client is None:
            raise sdk_errors.NoConnectionError("client is shut down")
        sdk_message = Message(
            message.body,
            content_type=message.content_type or "application/json",
            content_encoding="utf-8",
        )
        sdk_message.custom_properties.update(message.properties)
        client.send_message_to_output(sdk_message, output)

    def _pop_head(self, output: str, message: HubMessage, sent: bool) -> None:
        with self._outbox_cv:
            if self._outbox and self._outbox[0][1] is message:
                self._outbox.popleft()
            if sent:
                self.counters["sent"] += 1
            else:
                self.counters["dropped"] += 1
            self._sending = False
            self._outbox_cv.notify_all()

    # -- inputs -------------------------------------------------------------------------------

    def on_input(self, input_name: str, handler: InputHandler) -> None:
        self._inputs[input_name] = handler
        self._events.put(("release", input_name, None))

    def _on_sdk_message(self, message: Message) -> None:
        data = message.data
        body = data if isinstance(data, bytes) else str(data).encode("utf-8")
        properties = {str(k): str(v) for k, v in (message.custom_properties or {}).items()}
        hub_message = HubMessage(
            body=body,
            properties=properties,
            content_type=message.content_type or "application/json",
            input_name=message.input_name,
        )
        self._events.put(("input", message.input_name or "", hub_message))

    def _dispatch(self) -> None:
        while (item := self._events.get()) is not _STOP:
            kind, name, payload = item
            try:
                if kind == "input":
                    self._deliver_input(name, payload)
                elif kind == "release":
                    for held in self._held.pop(name, []):
                        self._deliver_input(name, held)
                elif kind == "patch":
                    self._deliver_patch(payload)
            except Exception:
                log.exception("handler failed", extra={"hub_module": self.module_id, "kind": kind})

    def _deliver_input(self, name: str, message: HubMessage) -> None:
        handler = self._inputs.get(name)
        if handler is None:
            held = self._held.setdefault(name, [])
            if len(held) >= HELD_INPUTS_MAX:
                held.pop(0)
                log.warning("message on an input nobody handles dropped", extra={"input": name})
            held.append(message)
            return
        try:
            handler(message)
        except Exception:
            log.exception(
                "input handler failed", extra={"hub_module": self.module_id, "input": name}
            )

    # -- twin ---------------------------------------------------------------------------------

    def get_twin(self) -> dict[str, Any]:
        """The full twin, retried with capped backoff while edgeHub is unreachable."""
        backoff = Backoff(self._backoff_start_s, self._backoff_max_s)
        while True:
            client = self._client
            if client is None:
                raise HubClosed("not connected")
            try:
                twin = client.get_twin()
                break
            except _TRANSIENT as exc:
                delay = backoff.next_delay()
                log.warning(
                    "twin not read, retrying",
                    extra={"hub_module": self.module_id, "retry_in_s": delay, "error": str(exc)},
                )
                if self._closing.wait(delay):
                    raise HubClosed("the hub was closed while reading the twin") from None
        desired = dict(twin.get("desired") or {})
        version = desired.get("$version")
        if isinstance(version, int):
            self._last_patch_version = max(version, self._last_patch_version or 0)
        return {"desired": desired, "reported": dict(twin.get("reported") or {})}

    def on_desired_patch(self, handler: PatchHandler) -> None:
        self._patch_handlers.append(handler)
        client = self._client
        if client is not None and self._connected:
            client.on_twin_desired_properties_patch_received = self._on_sdk_patch

    def _on_sdk_patch(self, patch: dict[str, Any]) -> None:
        self._events.put(("patch", "", dict(patch)))

    def _deliver_patch(self, patch: dict[str, Any]) -> None:
        version = patch.get("$version")
        last = self._last_patch_version
        if isinstance(version, int) and last is not None and version < last:
            # Handled out of order by the SDK's handler threads: the full desired section is at
            # least as new as anything delivered, so it replaces this stale patch.
            log.info("stale desired patch, reading the twin", extra={"version": version})
            patch = self.get_twin()["desired"]
            version = patch.get("$version")
        if isinstance(version, int):
            self._last_patch_version = max(version, last or 0)
        for handler in list(self._patch_handlers):
            try:
                handler(patch)
            except Exception:
                log.exception("desired patch handler failed", extra={"hub_module": self.module_id})

    def patch_reported(self, patch: dict[str, Any]) -> None:
        client = self._client
        if client is None:
            log.debug("reported properties after shutdown skipped")
            return
        client.patch_twin_reported_properties(patch)

    # -- direct methods -----------------------------------------------------------------------

    def on_method(self, name: str, handler: MethodHandler) -> None:
        super().on_method(name, handler)
        client = self._client
        if client is not None and self._connected:
            client.on_method_request_received = self._on_sdk_method

    def _on_sdk_method(self, request: MethodRequest) -> None:
        status, payload = self.call_method(request.name, request.payload)
        client = self._client
        if client is None:
            return
        try:
            client.send_method_response(
                MethodResponse.create_from_method_request(request, status, payload)
            )
        except _TRANSIENT as exc:
            log.warning(
                "method response not sent", extra={"method": request.name, "error": str(exc)}
            )
