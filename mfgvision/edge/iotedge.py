"""The IoT Edge hub: a module's ``Hub`` on the real ``azure-iot-device`` module client (sync API).

On a device the client is created from the IoT Edge environment (``IOTEDGE_WORKLOADURI`` and friends,
set by the IoT Edge runtime). Off a device the same code reaches a local edgeHub stand-in through
``EdgeHubConnectionString`` + ``EdgeModuleCACertificateFile`` (see ``mfgvision edgehub``).

Behaviour worth knowing:

* **Connecting** retries forever, on a thread of its own, with capped exponential backoff (1 s
  doubling to 60 s), logging each failure, until it succeeds or :meth:`IoTEdgeHub.abort` is called.
  :meth:`IoTEdgeHub.connect` waits for it, or only ``wait_s``: a module then starts without edgeHub
  (on its last good settings; outputs and reported properties wait in memory), and once connected the
  hub reads the twin and hands its whole desired section over. Once connected, the SDK itself
  re-establishes a dropped connection (``connection_retry``) and this class logs the state changes.
* **Every SDK call has a timeout** (``sdk_timeout_s``, 10 s): it runs on a thread of its own and the
  caller gets ``OperationTimeout`` when the SDK does not answer (the SDK waits forever for a twin
  answer that never comes), so no module thread and no lock ever waits on edgeHub.
* **Reconnections**: after every reconnection the full twin is read and its whole desired section
  handed to the module (``full``), which replaces its desired document: a patch missed or a key
  deleted while disconnected is caught up. When edgeHub lost the session (a restart with a clean
  session), the SDK's subscriptions are gone and the twin read goes unanswered: the client is then
  shut down and a new one connected, which subscribes again, so desired patches, direct methods and
  inputs arrive again. The SDK's own twin refresh (``ensure_desired_properties``) is off: it hands
  the whole section over as if it were a patch.
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
  order on the dispatcher thread. A patch already seen is dropped; a patch that skips a version (one
  was missed) makes the hub read the full twin instead.
* **Reported properties** never block: :meth:`patch_reported` merges the patch into the one pending
  patch (the latest value of a key wins) and a twin thread sends it; while edgeHub is unreachable it
  stays pending, bounded by the size of the module's reported document.
* **Direct methods** run :meth:`Hub.call_method` on the SDK's handler threads and answer with its status.
* **Shutting down** flushes outputs and the pending reported patch for at most ``flush_timeout_s``
  (4 s) and gives the SDK's shutdown 3 s at most, whatever edgeHub's state.
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
from azure.iot.device.common import transport_exceptions as transport_errors

from mfgvision.edge.hub import DesiredHandler, Hub, HubMessage, InputHandler
from mfgvision.edge.twins import combine_patches

log = logging.getLogger(__name__)

ClientFactory = Callable[[], IoTHubModuleClient]

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
SDK_TIMEOUT_S = 10.0
FLUSH_TIMEOUT_S = 4.0
SHUTDOWN_TIMEOUT_S = 3.0
OUTBOX_MAX = 10_000
HELD_INPUTS_MAX = 1_000
# The client lets its transport's own errors through when a call connects it implicitly (a handler
# set or a twin read on a client edgeHub dropped): they are as transient as the SDK's.
_TRANSIENT = (
    sdk_errors.ClientError,
    sdk_errors.OperationCancelled,
    sdk_errors.OperationTimeout,
    OSError,
    transport_errors.ConnectionFailedError,
    transport_errors.ConnectionDroppedError,
    transport_errors.NoConnectionError,
    transport_errors.ProtocolClientError,
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
        connection_retry=True,
        connection_retry_interval=10,
        keep_alive=60,
        ensure_desired_properties=False,
    )


def timed(what: str, timeout: float, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` on a thread of its own; ``OperationTimeout`` when it has not returned within
    ``timeout`` seconds (the call is left to finish, or not, on its daemon thread)."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call(*args)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name=f"sdk-{what}", daemon=True).start()
    if not done.wait(timeout):
        raise sdk_errors.OperationTimeout(f"{what}: no answer from edgeHub within {timeout:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


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
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
        sdk_timeout_s: float = SDK_TIMEOUT_S,
    ) -> None:
        super().__init__(module_id)
        self._factory = client_factory
        self._client: IoTHubModuleClient | None = None
        self._backoff_start_s = backoff_start_s
        self._backoff_max_s = backoff_max_s
        self._flush_timeout_s = flush_timeout_s
        self._sdk_timeout_s = sdk_timeout_s
        limit = outbox_max or int(os.environ.get("MFGVISION_OUTBOX_MAX", OUTBOX_MAX))
        self._outbox: collections.deque[tuple[str, HubMessage, Callable[[], None] | None]] = (
            collections.deque()
        )
        self._outbox_max = max(1, limit)
        self._outbox_cv = threading.Condition()
        self._sending = False
        self._inputs: dict[str, InputHandler] = {}
        self._held: dict[str, list[HubMessage]] = {}
        self._desired_handlers: list[DesiredHandler] = []
        self._last_version: int | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._connector: threading.Thread | None = None
        self._up = threading.Event()
        self._started_offline = False
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._twin_cv = threading.Condition()
        self._twin_wake = threading.Event()
        self._pending_reported: dict[str, Any] | None = None
        self._reporting = False
        self._resync_due = False
        self._dropped = False
        self._connected = False
        self._threads: list[threading.Thread] = []
        self.counters: dict[str, int] = {"sent": 0, "send_retries": 0, "dropped": 0, "renewed": 0}
        # The SDK also logs every background exception it hands to on_background_exception, which
        # this class logs with the module's name; keep one line per event.
        logging.getLogger("azure.iot.device.common.handle_exceptions").setLevel(logging.ERROR)

    # -- connection ---------------------------------------------------------------------------

    def connect(self, wait_s: float | None = None) -> bool:
        """Start connecting (once) and wait until connected, or at most ``wait_s``; whether it is.
        Raises HubClosed when :meth:`abort` ends the wait first."""
        with self._start_lock:
            if self._connector is None:
                self._connector = threading.Thread(
                    target=self._connect_loop, name=f"connect-{self.module_id}", daemon=True
                )
                self._connector.start()
            if wait_s is not None and self._started_offline:  # the module started without it
                return self._up.is_set()
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while not self._up.is_set() and not self._closing.is_set():
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                break
            self._up.wait(left)
        with self._start_lock:
            if self._up.is_set():
                return True
            if self._closing.is_set():
                raise HubClosed("the hub was closed before it could connect")
            self._started_offline = True
        log.warning(
            "starting without edgeHub, still connecting", extra={"hub_module": self.module_id}
        )
        return False

    def _connect_loop(self) -> None:
        """Open the client, retrying with capped backoff; then start the hub's threads."""
        backoff = Backoff(self._backoff_start_s, self._backoff_max_s)
        while True:
            if self._closing.is_set():
                return
            try:
                with self._lock:
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
                    return
        with self._start_lock:
            if self._closing.is_set():
                client, self._client = self._client, None
                if client is not None:
                    self._shutdown(client)
                return
            self._connected = True
            for name, target in (
                ("hub", self._dispatch),
                ("outbox", self._send_loop),
                ("twin", self._twin_loop),
            ):
                thread = threading.Thread(
                    target=target, name=f"{name}-{self.module_id}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            self._up.set()
            if self._started_offline:  # the module started on saved settings: hand it the twin's
                self._request_resync()
        log.info("connected to edgeHub", extra={"hub_module": self.module_id})

    def _open(self) -> None:
        """Create the client if there is none, install every handler and connect."""
        if self._client is None:
            client = self._factory()
            client.on_connection_state_change = self._on_connection_state
            client.on_background_exception = self._on_background_exception
            self._client = client
        client = self._client
        try:
            # Setting the input handler first puts the client in handler mode before any message
            # can arrive (a persistent session may hold queued input messages); on a client not
            # connected yet it connects, then connect() makes sure.
            self._timed("connect", self._receive_inputs, client)
            self._timed("connect", client.connect)
            self._timed("subscribe", self._subscribe, client)
        except _TRANSIENT:
            raise
        except Exception as exc:  # the SDK lets transport errors through when it connects itself
            raise sdk_errors.ConnectionFailedError(f"{type(exc).__name__}: {exc}") from exc

    def _receive_inputs(self, client: IoTHubModuleClient) -> None:
        client.on_message_received = self._on_sdk_message

    def _subscribe(self, client: IoTHubModuleClient) -> None:
        """Setting a handler makes the SDK subscribe to its topics (it returns once subscribed)."""
        client.on_twin_desired_properties_patch_received = self._on_sdk_patch
        client.on_method_request_received = self._on_sdk_method

    def _renew(self) -> None:
        """Replace the client by a new one (its subscriptions were lost with edgeHub's session)."""
        old, self._client = self._client, None
        if old is not None:
            self._shutdown(old)
        if self._closing.is_set():
            raise HubClosed("the hub is closing")
        self.counters["renewed"] += 1
        log.warning("renewing the edgeHub client", extra={"hub_module": self.module_id})
        self._open()
        if self._closing.is_set():
            client, self._client = self._client, None
            if client is not None:
                self._shutdown(client)
            raise HubClosed("the hub is closing")

    def abort(self) -> None:
        """Stop a :meth:`connect` that is still retrying (e.g. on SIGTERM during start-up)."""
        self._closing.set()

    def disconnect(self) -> None:
        """Send the outbox and the pending reported patch (up to the flush timeout), then shut the
        client down."""
        deadline = time.monotonic() + self._flush_timeout_s
        self._closing.set()
        self._wake.set()
        self._twin_wake.set()
        with self._outbox_cv:
            while (self._outbox or self._sending) and self._connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._outbox_cv.wait(min(remaining, 0.2))
            left = len(self._outbox)
            self._outbox_cv.notify_all()
        with self._twin_cv:
            self._twin_cv.notify_all()
            while (self._pending_reported or self._reporting) and self._connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._twin_cv.wait(min(remaining, 0.2))
            unreported = self._pending_reported is not None or self._reporting
            self._twin_cv.notify_all()
        if left or unreported:
            log.warning(
                "not everything sent before shutdown",
                extra={"hub_module": self.module_id, "messages": left, "reported": unreported},
            )
        self._events.put(_STOP)
        for thread in [*self._threads, self._connector]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=1)
        with self._lock:
            client, self._client = self._client, None
            self._connected = False
        if client is not None:
            self._shutdown(client)

    def _shutdown(self, client: IoTHubModuleClient) -> None:
        try:
            timed("shutdown", min(self._sdk_timeout_s, SHUTDOWN_TIMEOUT_S), client.shutdown)
        except Exception as exc:
            log.warning(
                "client shutdown failed",
                extra={"hub_module": self.module_id, "error": f"{type(exc).__name__}: {exc}"},
            )

    def _timed(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        return timed(what, self._sdk_timeout_s, call, *args)

    @property
    def connected(self) -> bool:
        client = self._client
        return bool(self._connected and client is not None and client.connected)

    def _on_connection_state(self) -> None:
        """The SDK's connection callback (its handler thread): note it, never block."""
        client = self._client
        state = "connected" if client is not None and client.connected else "disconnected"
        log.info("edgeHub connection changed", extra={"hub_module": self.module_id, "state": state})
        self._notify_connection(state == "connected")
        if state == "disconnected":
            self._dropped = True
            return
        self._wake.set()
        self._twin_wake.set()
        if self._dropped and self._connected:
            self._dropped = False
            self._request_resync()

    def _request_resync(self) -> None:
        with self._twin_cv:
            self._resync_due = True
            self._twin_cv.notify_all()

    def _on_background_exception(self, exc: Exception) -> None:
        log.warning(
            "edgeHub client background error",
            extra={"hub_module": self.module_id, "error": f"{type(exc).__name__}: {exc}"},
        )

    # -- outputs ------------------------------------------------------------------------------

    def send_to_output(
        self, output: str, message: HubMessage, on_sent: Callable[[], None] | None = None
    ) -> None:
        """Queue ``message`` for ``output``; returns at once (see the module docstring);
        ``on_sent`` runs on the sender thread once edgeHub has acknowledged it."""
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
            self._outbox.append((output, message, on_sent))
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
                output, message, on_sent = self._outbox[0]
                self._sending = True
            try:
                self._send_now(output, message)
            except ValueError as exc:  # too large or malformed: retrying cannot help
                log.error(
                    "output refused by the client, dropped",
                    extra={"output": output, "error": str(exc)},
                )
                self._pop_head(output, message, sent=False)
            except Exception as exc:  # transient, or a client surprise: this thread must go on
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
                if on_sent is not None:
                    self._acknowledged(on_sent)

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
        self._timed("send", client.send_message_to_output, sdk_message, output)

    def _acknowledged(self, on_sent: Callable[[], None]) -> None:
        try:
            on_sent()
        except Exception:
            log.exception("acknowledgement handler failed", extra={"hub_module": self.module_id})

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
                elif kind == "desired":
                    self._deliver_desired(payload, full=name == "full")
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
            try:
                return self._read_twin()
            except _TRANSIENT as exc:
                delay = backoff.next_delay()
                log.warning(
                    "twin not read, retrying",
                    extra={"hub_module": self.module_id, "retry_in_s": delay, "error": str(exc)},
                )
                if self._closing.wait(delay):
                    raise HubClosed("the hub was closed while reading the twin") from None

    def _read_twin(self) -> dict[str, Any]:
        """One twin read (with the SDK timeout); notes the desired ``$version``."""
        client = self._client
        if client is None:
            raise HubClosed("not connected")
        twin = self._timed("get_twin", client.get_twin)
        desired = dict(twin.get("desired") or {})
        version = desired.get("$version")
        if isinstance(version, int):
            self._last_version = version
        return {"desired": desired, "reported": dict(twin.get("reported") or {})}

    def on_desired(self, handler: DesiredHandler) -> None:
        self._desired_handlers.append(handler)

    def _on_sdk_patch(self, patch: dict[str, Any]) -> None:
        self._events.put(("desired", "patch", dict(patch)))

    def _deliver_desired(self, desired: dict[str, Any], full: bool) -> None:
        version = desired.get("$version")
        last = self._last_version
        if not full and isinstance(version, int) and last is not None:
            if version <= last:
                log.debug("desired patch already seen", extra={"version": version})
                return
            if version > last + 1:
                log.info(
                    "desired patch skips a version, reading the twin",
                    extra={"version": version, "last": last},
                )
                self._request_resync()
                return
        if isinstance(version, int):
            self._last_version = version
        for handler in list(self._desired_handlers):
            try:
                handler(desired, full)
            except Exception:
                log.exception("desired handler failed", extra={"hub_module": self.module_id})

    def patch_reported(self, patch: dict[str, Any]) -> None:
        """Merge ``patch`` into the pending reported patch; the twin thread sends it."""
        with self._twin_cv:
            if self._closing.is_set() and not self._connected:
                log.debug("reported properties after shutdown skipped")
                return
            pending = self._pending_reported
            self._pending_reported = patch if pending is None else combine_patches(pending, patch)
            self._twin_cv.notify_all()

    def _twin_loop(self) -> None:
        """Sends the pending reported patch and reads the twin again after reconnections."""
        backoff = Backoff(self._backoff_start_s, self._backoff_max_s)
        while True:
            with self._twin_cv:
                while not (self._resync_due or self._pending_reported or self._closing.is_set()):
                    self._twin_cv.wait()
                closing = self._closing.is_set()
                if closing and not self._pending_reported:
                    return
                resync, self._resync_due = self._resync_due and not closing, False
                patch, self._pending_reported = self._pending_reported, None
                self._reporting = patch is not None
            try:
                if resync:
                    self._resync()
                if patch is not None:
                    client = self._client_or_fail()
                    self._timed("patch_reported", client.patch_twin_reported_properties, patch)
                backoff.reset()
            except Exception as exc:  # whatever the client throws, this thread must go on
                if self._closing.is_set():
                    log.warning(
                        "reported properties not sent before shutdown",
                        extra={"hub_module": self.module_id},
                    )
                    return
                self._retry_later(patch, resync, f"{type(exc).__name__}: {exc}")
                self._twin_wake.wait(backoff.next_delay())
                self._twin_wake.clear()
            finally:
                with self._twin_cv:
                    self._reporting = False
                    self._twin_cv.notify_all()

    def _client_or_fail(self) -> IoTHubModuleClient:
        client = self._client
        if client is None:
            raise sdk_errors.NoConnectionError("client is shut down")
        return client

    def _retry_later(self, patch: dict[str, Any] | None, resync: bool, error: str) -> None:
        """Put back what the twin thread could not do; newer reported values win."""
        with self._twin_cv:
            if patch is not None:
                newer = self._pending_reported
                self._pending_reported = patch if newer is None else combine_patches(patch, newer)
            self._resync_due = self._resync_due or resync
        log.warning(
            "twin update not done, will retry",
            extra={"hub_module": self.module_id, "resync": resync, "error": error},
        )

    def _resync(self) -> None:
        """After a reconnection: read the twin and hand its whole desired section to the module.
        An unanswered read means edgeHub lost the session (and the subscriptions): renew the
        client, then read again."""
        try:
            twin = self._read_twin()
        except sdk_errors.OperationTimeout:
            log.warning(
                "twin read unanswered after reconnecting: the session is lost",
                extra={"hub_module": self.module_id},
            )
            self._renew()
            twin = self._read_twin()
        log.info(
            "desired properties read again",
            extra={"hub_module": self.module_id, "version": twin["desired"].get("$version")},
        )
        self._quiet.forget()
        self._events.put(("desired", "full", twin["desired"]))

    # -- direct methods -----------------------------------------------------------------------

    def _on_sdk_method(self, request: MethodRequest) -> None:
        status, payload = self.call_method(request.name, request.payload)
        client = self._client
        if client is None:
            return
        try:
            self._timed(
                "method_response",
                client.send_method_response,
                MethodResponse.create_from_method_request(request, status, payload),
            )
        except _TRANSIENT as exc:
            log.warning(
                "method response not sent", extra={"method": request.name, "error": str(exc)}
            )
