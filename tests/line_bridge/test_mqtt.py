"""The MQTT sink against Mosquitto, read by an independent subscriber: every verdict, in order,
through a broker restart; a broker that is away never blocks; triggers from the command topic."""

from __future__ import annotations

import getpass
import json
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from mfgvision.deploy.broker import find_mosquitto
from mfgvision.deploy.certs import ensure_ca, issue_server_cert
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.line_bridge.mqtt import PASSWORD_ENV, MqttSink, camera_topic, topic_level
from mfgvision.line_bridge.results import NG, CameraState, Inspection
from mfgvision.line_bridge.service import LineBridgeService
from mfgvision.runtime import Paths
from mfgvision.settings import MqttSettings
from tests.factories import wait_for
from tests.services import _terminate, free_port, unavailable, wait_port

SHARED_PORT = 1883


class Subscriber:
    """An independent MQTT client keeping every message under ``topic``, with a session of its own
    (QoS 1), so it misses nothing while it is reconnecting."""

    def __init__(
        self, port: int, topic: str, setup: Callable[[mqtt.Client], None] | None = None
    ) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(client_id=f"sub-{uuid.uuid4().hex[:8]}", clean_session=False)
        if setup is not None:
            setup(self.client)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload), message.retain))

    def bodies(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for t, b, _ in self.messages if t.endswith(suffix)]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PrivateMosquitto:
    """A Mosquitto of this test's own, with persistence, that the test may stop and start."""

    def __init__(self, root: Path, listener: str = "") -> None:
        executable = find_mosquitto()
        if executable is None:
            unavailable("mosquitto is not installed")
        self.executable = str(executable)
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\npersistence true\n"
            f"persistence_location {root}/\nuser {getpass.getuser()}\n"
            + (listener or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.executable, "-c", str(self.config)])
        assert wait_port(self.port, 30, self.proc), "mosquitto did not start"

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def shared_broker() -> int:
    if not wait_port(SHARED_PORT, 1):
        unavailable("no MQTT broker on 127.0.0.1:1883")
    return SHARED_PORT


def inspection(i: int, camera_id: str = "cam-1", verdict: str = NG) -> Inspection:
    return Inspection(
        camera_id=camera_id,
        location="line 1",
        position="top",
        unique_id=f"u{i:04d}",
        verdict=verdict,
        defects=("hole",) if verdict == NG else (),
        created=datetime.now(timezone.utc),
        rules=("hole_on_seal",) if verdict == NG else (),
    )


def publish(sink: MqttSink, state: CameraState, part: Inspection) -> None:
    state.record(part)
    sink.publish(state, part)


def no_trigger(camera_id: str, timeout_s: float) -> Inspection:
    raise AssertionError("no trigger expected")


def test_topic_levels_hold_no_separator_or_wildcard() -> None:
    assert topic_level("line 1/a+b#") == "line 1_a_b_" and topic_level("") == "_"
    assert camera_topic("plant", "L/1", "", "cam#2") == "plant/L_1/_/cam_2"


def test_the_sink_sends_each_packet_at_once(shared_broker: int) -> None:
    """Nagle's algorithm off: a verdict published right after an acknowledgement does not wait
    for the broker's delayed ACK."""
    settings = MqttSettings(enabled=True, port=shared_broker, prefix=f"test-{uuid.uuid4().hex[:8]}")
    sink = MqttSink(settings, "LineBridge", no_trigger, 1.0)
    sink.start()
    try:
        assert wait_for(lambda: sink.status()["connected"], 10)
        sock = sink._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sink.stop()


def test_every_verdict_in_order_and_the_state_retained(shared_broker: int) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(shared_broker, f"{prefix}/#")
    settings = MqttSettings(enabled=True, port=shared_broker, prefix=prefix)
    sink = MqttSink(settings, "LineBridge", no_trigger, 1.0)
    sink.start()
    state = CameraState("cam-1")
    try:
        assert wait_for(lambda: sink.status()["connected"], 10)
        parts = [inspection(i, verdict=NG if i % 3 else "OK") for i in range(50)]
        for part in parts:
            publish(sink, state, part)
        assert wait_for(lambda: len(subscriber.bodies("/inspection")) >= 50, 20)
        received = subscriber.bodies("/inspection")
        assert [b["unique_id"] for b in received] == [p.unique_id for p in parts]
        assert [b["verdict"] for b in received] == [p.verdict for p in parts]
        assert received[0]["created"].endswith("Z") and received[1]["defects"] == ["hole"]
        assert (received[0]["rules"], received[1]["rules"]) == ([], ["hole_on_seal"])
        assert subscriber.messages[0][0] == f"{prefix}/line 1/top/cam-1/inspection"
    finally:
        sink.stop()
        subscriber.stop()
    late = Subscriber(shared_broker, f"{prefix}/+/+/+/state")
    try:
        assert wait_for(lambda: late.bodies("/state"), 10)
        [(_, retained, flag)] = late.messages
        assert flag and retained["inspections"] == 50 and retained["inspection_id"] == "u0049"
        assert retained["rules"] == ["hole_on_seal"]  # u0049 is NG
    finally:
        late.stop()
    assert sink.status()["not_delivered"] == 0 and sink.status()["dropped"] == 0


def test_every_verdict_arrives_in_order_through_a_broker_restart(
    private_broker: PrivateMosquitto,
) -> None:
    subscriber = Subscriber(private_broker.port, "mfgvision/+/+/+/inspection")
    settings = MqttSettings(enabled=True, port=private_broker.port, backoff_max_s=1)
    sink = MqttSink(settings, "LineBridge", no_trigger, 1.0)
    sink.start()
    state = CameraState("cam-1")
    parts = [inspection(i) for i in range(90)]
    try:
        assert wait_for(lambda: sink.status()["connected"], 10)
        assert wait_for(lambda: subscriber.client.is_connected(), 10)
        for part in parts[:30]:
            publish(sink, state, part)
        assert wait_for(lambda: len(subscriber.bodies("/inspection")) >= 30, 20)
        private_broker.stop()
        for part in parts[30:60]:
            publish(sink, state, part)  # the broker is away: queued, never blocking
        private_broker.start()
        for part in parts[60:]:
            publish(sink, state, part)
        assert wait_for(
            lambda: (
                {b["unique_id"] for b in subscriber.bodies("/inspection")}
                >= {p.unique_id for p in parts}
            ),
            60,
        )
        first_seen = list(dict.fromkeys(b["unique_id"] for b in subscriber.bodies("/inspection")))
        assert first_seen == [p.unique_id for p in parts]
        assert sink.status()["reconnects"] >= 1
    finally:
        sink.stop()
        subscriber.stop()


def test_a_broker_that_is_away_never_blocks_and_what_does_not_fit_is_counted() -> None:
    settings = MqttSettings(enabled=True, port=free_port(), queue_size=10)
    sink = MqttSink(settings, "LineBridge", no_trigger, 1.0)
    sink.start()
    state = CameraState("cam-1")
    try:
        for i in range(50):
            publish(sink, state, inspection(i))  # one inspection and one state message each
        status = sink.status()
        assert not status["connected"]
        assert status["queued"] == 10 and status["dropped"] == 90
    finally:
        sink.stop()
    assert sink.status()["not_delivered"] == 10


def test_a_message_on_the_trigger_topic_gets_the_part_its_verdict(
    shared_broker: int, tmp_path: Path
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(shared_broker, f"{prefix}/+/+/+/inspection")
    desired = {
        "trigger_timeout_s": 0.3,
        "mqtt": {"enabled": True, "port": shared_broker, "prefix": prefix, "triggers": True},
    }
    hubs = InProcessBroker([])
    paths = Paths(assets=tmp_path, models=tmp_path, data=tmp_path / "data")
    bridge = LineBridgeService(hubs.hub("LineBridge", desired), paths)
    bridge.start()
    try:
        sink = bridge.status()["status"]["sinks"]
        assert "mqtt" in sink
        assert wait_for(lambda: bridge.status()["status"]["sinks"]["mqtt"]["connected"], 10)
        commander = mqtt.Client(client_id=f"cmd-{uuid.uuid4().hex[:8]}")
        commander.connect("127.0.0.1", shared_broker)
        commander.loop_start()
        # no camera answers: the part gets the fail-safe verdict at its deadline
        commander.publish(f"{prefix}/line1/top/cam-5/trigger", b"{}", qos=1).wait_for_publish(5)
        assert wait_for(lambda: subscriber.bodies("/inspection"), 10)
        [body] = subscriber.bodies("/inspection")
        assert body["camera_id"] == "cam-5" and body["fail_safe"] and body["verdict"] == NG
        assert bridge.status()["status"]["sinks"]["mqtt"]["trigger_timeouts"] == 1
        commander.disconnect()
        commander.loop_stop()
    finally:
        bridge.stop()
        subscriber.stop()


def test_tls_with_username_and_a_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_cert, ca_key = ensure_ca(tmp_path / "ca")
    server = issue_server_cert(ca_cert, ca_key, tmp_path / "server", ["127.0.0.1"])
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "line", "s3cret-pw"], check=True
    )
    broker = PrivateMosquitto(
        tmp_path / "mosquitto",
        f"allow_anonymous false\npassword_file {passwords}\n"
        f"cafile {server.ca}\ncertfile {server.cert}\nkeyfile {server.key}\n",
    )
    broker.start()

    def secure(client: mqtt.Client) -> None:
        client.tls_set(ca_certs=str(ca_cert), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.username_pw_set("line", "s3cret-pw")

    subscriber = Subscriber(broker.port, "mfgvision/#", secure)
    settings = MqttSettings(
        enabled=True, port=broker.port, tls=True, ca_file=str(ca_cert), username="line"
    )
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    refused = MqttSink(settings, "LineBridge", no_trigger, 1.0)
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pw")
    sink = MqttSink(settings, "LineBridge2", no_trigger, 1.0)
    refused.start()
    sink.start()
    try:
        assert wait_for(lambda: sink.status()["connected"], 10)
        publish(sink, CameraState("cam-1"), inspection(1))
        assert wait_for(lambda: subscriber.bodies("/inspection"), 10)
        assert subscriber.bodies("/inspection")[0]["unique_id"] == "u0001"
        assert wait_for(lambda: "refused" in (refused.status()["last_error"] or ""), 10)
        assert not refused.status()["connected"]
    finally:
        refused.stop()
        sink.stop()
        subscriber.stop()
        broker.stop()
