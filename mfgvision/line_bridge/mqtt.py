"""The MQTT connection to the line: every result as JSON, each camera's state retained, triggers from
a command topic.

Topics, under ``<prefix>/<location>/<position>/<camera_id>/`` (each level with ``/``, ``+`` and ``#``
replaced by ``_``, an empty one as ``_``):

* ``inspection``: one message per result (QoS of the settings, 1 by default), in order;
* ``state``: the camera's :class:`CameraState`, retained, after every result and module state change;
* ``trigger`` (subscribed when ``triggers`` is on): any message makes the camera inspect now; the
  result is published on ``inspection`` like every other, or the fail-safe verdict at the deadline.

``publish`` never blocks: messages wait in a bounded queue (a full queue drops the new message and
counts it) and a thread of their own hands them to the client while it is connected, at most
``IN_FLIGHT`` unacknowledged at a time. The client reconnects with a growing delay capped at
``backoff_max_s`` and sends the unacknowledged messages again after a reconnection (QoS 1: a
subscriber may see one twice, and drops it by ``unique_id``). The password comes from
``MFGVISION_MQTT_PASSWORD`` in the environment, never from the twin.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt

from mfgvision.line_bridge.results import CameraState, Inspection, Trigger
from mfgvision.settings import MqttSettings

log = logging.getLogger(__name__)

PASSWORD_ENV = "MFGVISION_MQTT_PASSWORD"
#: Messages handed to the client and not yet acknowledged by the broker, at most.
IN_FLIGHT = 100
STOP_WAIT_S = 2.0
TRIGGER_WORKERS = 4
_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")


def topic_level(text: str) -> str:
    """``text`` as one topic level: no separator or wildcard, never empty."""
    return _TOPIC_UNSAFE.sub("_", text) or "_"


def camera_topic(prefix: str, location: str, position: str, camera_id: str) -> str:
    """``<prefix>/<location>/<position>/<camera_id>``."""
    parts = (location, position, camera_id)
    return "/".join([prefix, *(topic_level(p) for p in parts)])


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def inspection_json(inspection: Inspection) -> dict[str, Any]:
    """The body of an ``inspection`` message."""
    return {
        "camera_id": inspection.camera_id,
        "location": inspection.location,
        "position": inspection.position,
        "unique_id": inspection.unique_id,
        "verdict": inspection.verdict,
        "defects": list(inspection.defects),
        "rules": list(inspection.rules),
        "created": _iso(inspection.created),
        "trigger_id": inspection.trigger_id,
        "fail_safe": inspection.fail_safe,
    }


def state_json(state: CameraState) -> dict[str, Any]:
    """The body of a retained ``state`` message."""
    return {
        "camera_id": state.camera_id,
        "location": state.location,
        "position": state.position,
        "verdict": state.verdict,
        "inspection_id": state.inspection_id,
        "defects": list(state.defects),
        "rules": list(state.rules),
        "inspections": state.inspections,
        "ng_count": state.ng_count,
        "state": state.state,
        "updated_at": _iso(state.updated_at),
    }


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    payload: bytes
    retain: bool


class MqttSink:
    """Publishes results and camera states to an MQTT broker; takes triggers from it."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        module_id: str,
        trigger: Trigger,
        trigger_timeout_s: float,
        password: str | None = None,
    ) -> None:
        self.settings = settings
        self.trigger = trigger
        self.trigger_timeout_s = trigger_timeout_s
        self.client_id = settings.client_id or f"mfgvision-{module_id}"
        self._password = password if password is not None else os.environ.get(PASSWORD_ENV)
        self.counters = {
            "sent": 0,
            "acknowledged": 0,
            "dropped": 0,
            "not_delivered": 0,
            "reconnects": 0,
            "triggers": 0,
            "trigger_timeouts": 0,
        }
        self.last_error: str | None = None
        self._queue: queue.Queue[_Outgoing] = queue.Queue(settings.queue_size)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._room = threading.Condition()
        self._ever_connected = False
        self._client = self._new_client()
        self._triggers = ThreadPoolExecutor(TRIGGER_WORKERS, thread_name_prefix="mqtt-trigger")
        self._worker = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(client_id=self.client_id, clean_session=False)
        client.reconnect_delay_set(1, max(1, int(s.backoff_max_s)))
        client.max_inflight_messages_set(IN_FLIGHT)
        if s.username:
            client.username_pw_set(s.username, self._password)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        return client

    def start(self) -> None:
        """Connect in the background (a broker that is away is retried) and start sending."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()
        self._worker.start()
        log.info(
            "mqtt sink started",
            extra={
                "host": self.settings.host,
                "port": self.settings.port,
                "tls": self.settings.tls,
            },
        )

    def stop(self) -> None:
        """Send what is in flight for up to ``STOP_WAIT_S``, then disconnect; count the rest."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        if self._worker.is_alive():
            self._worker.join(STOP_WAIT_S + 1)
        deadline = time.monotonic() + STOP_WAIT_S
        while self._in_flight() and self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.counters["not_delivered"] += self._in_flight() + self._queue.qsize()
        self._triggers.shutdown(wait=False, cancel_futures=True)
        self._client.disconnect()
        self._client.loop_stop()
        log.info("mqtt sink stopped", extra=dict(self.counters))

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        """Queue the inspection (if any) and the camera's state; never blocks."""
        s = self.settings
        base = camera_topic(s.prefix, state.location, state.position, state.camera_id)
        if inspection is not None:
            self._put(_Outgoing(f"{base}/inspection", _dumps(inspection_json(inspection)), False))
        self._put(_Outgoing(f"{base}/state", _dumps(state_json(state)), True))

    def status(self) -> dict[str, Any]:
        return {
            "connected": self._connected.is_set(),
            "broker": f"{self.settings.host}:{self.settings.port}",
            "queued": self._queue.qsize(),
            "in_flight": self._in_flight(),
            **self.counters,
            "last_error": self.last_error,
        }

    def _put(self, item: _Outgoing) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counters["dropped"] += 1

    def _in_flight(self) -> int:
        return self.counters["sent"] - self.counters["acknowledged"]

    # -- the sending thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._connected.wait(0.2):
                continue
            with self._room:
                while self._in_flight() >= IN_FLIGHT and not self._stop.is_set():
                    self._room.wait(0.5)
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            info = self._client.publish(item.topic, item.payload, self.settings.qos, item.retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.counters["dropped"] += 1
                self.last_error = f"publish refused: {mqtt.error_string(info.rc)}"
                continue
            self.counters["sent"] += 1

    # -- client callbacks (on the client's network thread) ----------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, rc: int) -> None:
        if rc != mqtt.CONNACK_ACCEPTED:
            self.last_error = f"connection refused: {mqtt.connack_string(rc)}"
            log.warning("mqtt connection refused", extra={"error": self.last_error})
            return
        if self._ever_connected:
            self.counters["reconnects"] += 1
        self._ever_connected = True
        if self.settings.triggers:
            client.subscribe(f"{self.settings.prefix}/+/+/+/trigger", qos=1)
        self._connected.set()
        log.info("mqtt connected", extra={"host": self.settings.host, "port": self.settings.port})

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, rc: int) -> None:
        self._connected.clear()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.last_error = f"connection lost: {mqtt.error_string(rc)}"
            log.warning("mqtt connection lost, reconnecting", extra={"error": self.last_error})

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, _mid: int) -> None:
        self.counters["acknowledged"] += 1
        with self._room:
            self._room.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        camera_id = message.topic.split("/")[-2]
        self.counters["triggers"] += 1
        try:
            self._triggers.submit(self._run_trigger, camera_id)
        except RuntimeError:  # shutting down
            return

    def _run_trigger(self, camera_id: str) -> None:
        """A trigger's result reaches this sink through ``publish``, like every other."""
        try:
            self.trigger(camera_id, self.trigger_timeout_s)
        except TimeoutError:
            self.counters["trigger_timeouts"] += 1
        except Exception:
            log.exception("mqtt trigger failed", extra={"camera_id": camera_id})


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Send each packet at once: with Nagle's algorithm a publish that follows an acknowledgement
    within a round trip waits for the broker's delayed ACK (40 ms on Linux)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
