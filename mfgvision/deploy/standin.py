"""A local edgeHub stand-in: real ``azure-iot-device`` module clients, no Docker, no Azure.

It serves the part of IoT Hub's MQTT protocol that modules use, over Mosquitto with TLS:

* twin GET (``$iothub/twin/GET/?$rid=R`` -> ``$iothub/twin/res/200/?$rid=R``) and reported patches
  (``$iothub/twin/PATCH/properties/reported/?$rid=R`` -> ``$iothub/twin/res/204/?$rid=R&$version=n``);
* desired patches (``$iothub/twin/PATCH/properties/desired/?$version=n``, the body carries ``$version``);
* direct methods (``$iothub/methods/POST/<name>/?$rid=R``, answered on ``$iothub/methods/res/<status>/``);
* module outputs (``devices/<d>/modules/<m>/messages/events/<properties>``) routed by the manifest's
  route table to module inputs (``devices/<d>/modules/<t>/inputs/<input>/<properties>``) or to
  ``$upstream`` (appended to a JSON-lines file).

Every module gets its own Mosquitto broker on its own loopback address (see :mod:`mfgvision.deploy.broker`)
and reaches it through ``EdgeHubConnectionString`` + ``EdgeModuleCACertificateFile``, the variables
``IoTHubModuleClient.create_from_edge_environment`` falls back to outside a real IoT Edge runtime.
Messages to a module input are published with QoS 1 into the module's persistent session and expire
after the route's time-to-live (``storeAndForwardConfiguration.timeToLiveSecs``), so a module that is
down gets them when it comes back, as with edgeHub's store and forward.

Twins live in ``<state>/twins.json``. A small HTTP API on 127.0.0.1 (address and token in
``<state>/control.json``) lets ``mfgvision edgehub twin|patch|call`` read twins, patch desired
properties and call direct methods while the stand-in runs.

This is a development and test tool: it authenticates no one (any local process can reach the
brokers), and it supports no route conditions, priorities or message enrichment.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mfgvision.deploy.broker import (
    MQTT_TLS_PORT,
    BrokerError,
    MosquittoBroker,
    RunAs,
    broker_account,
    broker_root,
    find_mosquitto,
    own,
)
from mfgvision.deploy.certs import ensure_ca, issue_server_cert
from mfgvision.deploy.control import METHOD_TIMEOUT_S, StandInError
from mfgvision.deploy.twin_store import TwinError, TwinStore
from mfgvision.manifest import Manifest
from mfgvision.module_registry import MODULES

log = logging.getLogger(__name__)

DEFAULT_ADDRESS_BASE = "127.0.0.2"
DEFAULT_HUB = "mfgvision-local.azure-devices.net"
DEFAULT_DEVICE_ID = "mfgvision-edge"
DEFAULT_TTL_S = 7200
_SESSION_EXPIRY_S = 7 * 24 * 3600
_SYSTEM_PROPERTIES = {"$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.exp"}


@dataclass(frozen=True)
class Identity:
    """The (made-up) IoT Hub and device every module of the stand-in belongs to."""

    hub: str
    device_id: str
    key: str

    @classmethod
    def default(cls) -> Identity:
        # The key only has to be valid base64: the stand-in checks no credentials (see above).
        return cls(DEFAULT_HUB, DEFAULT_DEVICE_ID, base64.b64encode(b"mfgvision-edgehub").decode())

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["hub"], data["device_id"], data["key"])
        identity = cls.default()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(identity.__dict__, fh)
        return identity


def hub_modules(manifest: Manifest) -> list[str]:
    """Modules of the manifest that run a mfgvision command, i.e. that connect to edgeHub."""
    return sorted(
        name
        for name, spec in manifest.modules.items()
        if spec.command[:1] and spec.command[0] in MODULES
    )


def module_addresses(modules: list[str], base: str = DEFAULT_ADDRESS_BASE) -> dict[str, str]:
    """One loopback address per module, in name order from ``base``."""
    first = ipaddress.ip_address(base)
    out = {}
    for i, name in enumerate(sorted(modules)):
        address = first + i
        if not address.is_loopback:
            raise StandInError(f"address {address} for {name} is not a loopback address")
        out[name] = str(address)
    return out


def connection_string(identity: Identity, module: str, address: str) -> str:
    return (
        f"HostName={identity.hub};GatewayHostName={address};DeviceId={identity.device_id};"
        f"ModuleId={module};SharedAccessKey={identity.key}"
    )


def route_ttls(manifest: Manifest) -> tuple[int, dict[str, int]]:
    """The default time-to-live and the per-route ones, in seconds."""
    hub = manifest.raw.get("modulesContent", {}).get("$edgeHub", {}).get("properties.desired", {})
    default = int(
        (hub.get("storeAndForwardConfiguration") or {}).get("timeToLiveSecs", DEFAULT_TTL_S)
    )
    per_route = {
        name: int(value["timeToLiveSecs"])
        for name, value in (hub.get("routes") or {}).items()
        if isinstance(value, dict) and "timeToLiveSecs" in value
    }
    return default, per_route


def parse_properties(text: str) -> dict[str, str]:
    """``k=v&k2=v2`` as the SDK writes message properties into a topic (no ``+`` decoding)."""
    props: dict[str, str] = {}
    for entry in text.split("&") if text else []:
        key, _, value = entry.partition("=")
        if key:
            props[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return props


def encode_properties(props: dict[str, str]) -> str:
    return "&".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
        for k, v in props.items()
    )


def _query(topic: str) -> dict[str, str]:
    return parse_properties(topic.split("?", 1)[1]) if "?" in topic else {}


class ModuleLink:
    """The stand-in's client on one module's broker."""

    def __init__(self, standin: EdgeHubStandIn, module: str, address: str) -> None:
        self.standin = standin
        self.module = module
        self.address = address
        self.topic_base = f"devices/{standin.identity.device_id}/modules/{module}"
        # What the SDK's module client subscribes to (inputs, twin responses and patches, methods).
        self.module_topics = [
            f"{self.topic_base}/inputs/#",
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
        ]
        self.connected = threading.Event()
        self.client = mqtt.Client(client_id="mfgvision-edgehub", protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(standin.ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self, timeout: float = 20.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = _SESSION_EXPIRY_S
        self.client.connect_async(
            self.address, MQTT_TLS_PORT, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise StandInError(f"cannot reach the broker of {self.module} at {self.address}:8883")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def seed_session(self, timeout: float = 10.0) -> None:
        """Create the module's persistent session on a broker that has none, with the subscriptions
        the module client makes. Messages routed to the module before it (re)connects are then kept
        for it (edgeHub's store and forward), and a module client that reconnects after the broker
        lost its sessions keeps working: the SDK subscribes once and relies on the session."""
        device, module = self.standin.identity.device_id, self.module
        seeded = threading.Event()
        client = mqtt.Client(client_id=f"{device}/{module}", clean_session=False)
        client.tls_set(ca_certs=str(self.standin.ca_file))
        client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self.module_topics])
        client.on_subscribe = lambda *_: seeded.set()
        client.connect(self.address, MQTT_TLS_PORT, keepalive=30)
        client.loop_start()
        try:
            if not seeded.wait(timeout):
                raise StandInError(f"could not prepare the session of {module}")
        finally:
            client.disconnect()
            client.loop_stop()

    def publish(self, topic: str, body: Any, qos: int = 0, ttl_s: int | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        props = None
        if ttl_s is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, ttl_s)
        self.client.publish(topic, payload, qos=qos, properties=props)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, rc: Any, _props: Any = None
    ) -> None:
        if rc != 0:
            log.error(
                "broker refused the stand-in", extra={"module_name": self.module, "rc": str(rc)}
            )
            return
        client.subscribe(
            [
                ("$iothub/twin/GET/#", 1),
                ("$iothub/twin/PATCH/properties/reported/#", 1),
                ("$iothub/methods/res/#", 1),
                (f"{self.topic_base}/messages/events/#", 1),
            ]
        )
        self.connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, rc: Any, _props: Any = None
    ) -> None:
        self.connected.clear()
        if rc != 0:
            log.warning("lost the module broker", extra={"module_name": self.module, "rc": str(rc)})

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg.topic, msg.payload)
        except Exception:
            log.exception("message from module not handled", extra={"module_name": self.module})

    def _handle(self, topic: str, payload: bytes) -> None:
        standin = self.standin
        if topic.startswith("$iothub/twin/GET/"):
            rid = _query(topic).get("$rid", "")
            try:
                twin = standin.twins.twin(self.module)
            except TwinError as exc:
                self.publish(f"$iothub/twin/res/404/?$rid={rid}", {"message": str(exc)})
                return
            self.publish(f"$iothub/twin/res/200/?$rid={rid}", twin)
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            rid = _query(topic).get("$rid", "")
            try:
                version = standin.twins.patch_reported(self.module, json.loads(payload or b"{}"))
            except (ValueError, TwinError) as exc:
                self.publish(f"$iothub/twin/res/400/?$rid={rid}", {"message": str(exc)})
                return
            self.publish(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"")
        elif topic.startswith("$iothub/methods/res/"):
            status = topic.split("/")[3]
            rid = _query(topic).get("$rid", "")
            standin.method_answered(rid, int(status) if status.isdigit() else 500, payload)
        elif topic.startswith(f"{self.topic_base}/messages/events/"):
            props = parse_properties(topic[len(f"{self.topic_base}/messages/events/") :])
            output = props.pop("$.on", "")
            standin.route(self.module, output, payload, props)


class EdgeHubStandIn:
    """Brokers, twins, routes and the control API of one local edge device."""

    def __init__(
        self,
        manifest: Manifest,
        state: Path,
        address_base: str = DEFAULT_ADDRESS_BASE,
        upstream_file: Path | None = None,
        run_brokers: bool = True,
        broker_run_as: RunAs | None = None,
        sessions: bool = True,
    ) -> None:
        self.manifest = manifest
        self.state = state.resolve()
        self.upstream_file = upstream_file or self.state / "upstream.jsonl"
        self.run_brokers = run_brokers
        self.sessions = sessions
        self.account = broker_run_as or broker_account()
        self.modules = hub_modules(manifest)
        self.addresses = module_addresses(self.modules, address_base)
        self.default_ttl, self.route_ttl = route_ttls(manifest)
        self.ca_file = self.state / "ca.pem"
        self.identity: Identity
        self.twins: TwinStore
        self.brokers: dict[str, MosquittoBroker] = {}
        self.links: dict[str, ModuleLink] = {}
        self._rids = itertools.count(1)
        self._pending: dict[str, tuple[threading.Event, list[Any]]] = {}
        self._upstream_lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None
        self._prepared = False

    # -- files --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Write everything the brokers and modules need: CA, server certificate, broker configs,
        identity, twins (from the manifest) and ``endpoints.json``."""
        self.state.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = ensure_ca(self.state)
        self.identity = Identity.load_or_create(self.state / "identity.json")
        self.twins = TwinStore(self.state / "twins.json")
        for module in self.modules:
            if self.twins.deploy(module, self.manifest.modules[module].desired):
                log.info("twin deployed from the manifest", extra={"module_name": module})
        root = broker_root(self.state, self.account)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o750)
        own(root, self.account)
        files = issue_server_cert(ca_cert, ca_key, root, list(self.addresses.values()))
        own(files.key, self.account)
        broker_ca = root / "ca.pem"
        broker_ca.write_bytes(ca_cert.read_bytes())
        own(broker_ca, self.account)
        for module, address in self.addresses.items():
            broker = MosquittoBroker(
                module,
                address,
                root / module,
                broker_ca,
                files.cert,
                files.key,
                self.account,
                persistent=self.sessions,
            )
            broker.write_config()
            self.brokers[module] = broker
        endpoints = {
            module: {
                "address": address,
                "EdgeHubConnectionString": connection_string(self.identity, module, address),
                "EdgeModuleCACertificateFile": str(self.ca_file),
                "broker_config": str(self.brokers[module].config),
            }
            for module, address in self.addresses.items()
        }
        path = self.state / "endpoints.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(endpoints, fh, indent=1)
        self._prepared = True

    def module_environment(self, module: str) -> dict[str, str]:
        """What a module process needs to reach the stand-in."""
        if module not in self.addresses:
            raise StandInError(f"'{module}' is not a module that connects to edgeHub")
        return {
            "EdgeHubConnectionString": connection_string(
                self.identity, module, self.addresses[module]
            ),
            "EdgeModuleCACertificateFile": str(self.ca_file),
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if not self._prepared:
            self.prepare()
        if self.run_brokers:
            executable = find_mosquitto()
            if executable is None:
                raise StandInError(
                    "mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto; "
                    "macOS: brew install mosquitto), or set MFGVISION_MOSQUITTO"
                )
            try:
                for broker in self.brokers.values():
                    fresh = not broker.has_persisted_sessions
                    broker.start(executable)
                    self._link(broker.name, seed=fresh)
            except (BrokerError, StandInError):
                self.stop()
                raise
        else:
            for module, broker in self.brokers.items():
                self._link(module, seed=not broker.has_persisted_sessions)
        self._start_control()
        log.info(
            "edgeHub stand-in running",
            extra={"modules": self.modules, "state": str(self.state)},
        )

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
            (self.state / "control.json").unlink(missing_ok=True)
        for link in self.links.values():
            with contextlib.suppress(Exception):
                link.stop()
        self.links.clear()
        for broker in self.brokers.values():
            broker.stop()
        log.info("edgeHub stand-in stopped")

    def _link(self, module: str, seed: bool) -> None:
        link = ModuleLink(self, module, self.addresses[module])
        if seed and self.sessions:
            link.seed_session()
        link.start()
        self.links[module] = link

    # -- routing ------------------------------------------------------------------------------

    def route(self, module: str, output: str, body: bytes, props: dict[str, str]) -> int:
        """Deliver one module output along every matching route; returns the deliveries."""
        delivered = 0
        forwarded = {
            k: v for k, v in props.items() if k in _SYSTEM_PROPERTIES or not k.startswith("$")
        }
        for route in self.manifest.routes:
            if not route.matches(module, output):
                continue
            delivered += 1
            if route.to_upstream:
                self._upstream(module, output, body, props)
                continue
            target = self.links.get(route.sink_module or "")
            if target is None:
                log.warning(
                    "route target does not connect to edgeHub",
                    extra={"route": route.name, "target": route.sink_module},
                )
                continue
            topic = f"{target.topic_base}/inputs/{route.sink_input}/{encode_properties(forwarded)}"
            target.publish(
                topic, body, qos=1, ttl_s=self.route_ttl.get(route.name, self.default_ttl)
            )
        if not delivered:
            log.debug("no route for output", extra={"source": module, "output": output})
        return delivered

    def _upstream(self, module: str, output: str, body: bytes, props: dict[str, str]) -> None:
        line: dict[str, Any] = {
            "module": module,
            "output": output,
            "enqueued": datetime.now(timezone.utc).isoformat(),
            "properties": props,
        }
        try:
            line["body"] = json.loads(body.decode("utf-8"))
        except ValueError:
            line["body"] = body.decode("utf-8", "replace")
        with self._upstream_lock:
            self.upstream_file.parent.mkdir(parents=True, exist_ok=True)
            with self.upstream_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")

    # -- twins and methods --------------------------------------------------------------------

    def patch_desired(self, module: str, patch: Any) -> int:
        """Merge a desired patch into the twin and send it to the module; returns ``$version``."""
        version, body = self.twins.patch_desired(module, patch)
        link = self.links.get(module)
        if link is not None:
            link.publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}", body)
        return version

    def call_method(
        self, module: str, method: str, payload: Any, timeout: float = METHOD_TIMEOUT_S
    ) -> tuple[int, Any]:
        """Call a direct method and wait for the answer: ``(status, payload)``."""
        link = self.links.get(module)
        if link is None:
            return 404, {"error": f"'{module}' is not a module that connects to edgeHub"}
        rid = str(next(self._rids))
        done, result = threading.Event(), []
        self._pending[rid] = (done, result)
        try:
            name = urllib.parse.quote(method, safe="")
            link.publish(f"$iothub/methods/POST/{name}/?$rid={rid}", payload)
            if not done.wait(timeout):
                return 504, {"error": f"{module} did not answer '{method}' within {timeout:g} s"}
            return result[0], result[1]
        finally:
            self._pending.pop(rid, None)

    def method_answered(self, rid: str, status: int, payload: bytes) -> None:
        pending = self._pending.get(rid)
        if pending is None:
            return
        try:
            body: Any = json.loads(payload.decode("utf-8")) if payload else None
        except ValueError:
            body = payload.decode("utf-8", "replace")
        pending[1].extend([status, body])
        pending[0].set()

    # -- control API --------------------------------------------------------------------------

    def _start_control(self) -> None:
        token = secrets.token_urlsafe(24)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _control_handler(self, token))
        self._http.daemon_threads = True
        threading.Thread(
            target=self._http.serve_forever, name="edgehub-control", daemon=True
        ).start()
        port = self._http.server_address[1]
        path = self.state / "control.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"url": f"http://127.0.0.1:{port}", "token": token, "pid": os.getpid()}, fh)


def _control_handler(standin: EdgeHubStandIn, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mfgvision-edgehub"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("control request", extra={"request": format % args})

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                return True
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "bad or missing token"})
            return False

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw.strip() else None

        def _parts(self) -> tuple[list[str], dict[str, str]]:
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/") if p]
            return parts, dict(urllib.parse.parse_qsl(url.query))

        def do_GET(self) -> None:
            if not self._authorised():
                return
            parts, _ = self._parts()
            try:
                if parts == ["modules"]:
                    self._reply(200, {"modules": standin.modules, "addresses": standin.addresses})
                elif len(parts) == 2 and parts[0] == "twins":
                    self._reply(200, standin.twins.twin(parts[1]))
                else:
                    self._reply(404, {"error": "not found"})
            except TwinError as exc:
                self._reply(404, {"error": str(exc)})

        def do_PATCH(self) -> None:
            if not self._authorised():
                return
            parts, _ = self._parts()
            if len(parts) != 3 or parts[0] != "twins" or parts[2] != "desired":
                self._reply(404, {"error": "not found"})
                return
            try:
                version = standin.patch_desired(parts[1], self._body())
            except ValueError as exc:  # bad JSON or a patch that is not an object
                self._reply(400, {"error": str(exc)})
                return
            except TwinError as exc:
                self._reply(404, {"error": str(exc)})
                return
            self._reply(200, {"$version": version})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            parts, query = self._parts()
            if len(parts) != 3 or parts[0] != "methods":
                self._reply(404, {"error": "not found"})
                return
            try:
                payload = self._body()
                timeout = float(query.get("timeout", METHOD_TIMEOUT_S))
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})
                return
            status, answer = standin.call_method(parts[1], parts[2], payload, timeout)
            self._reply(200, {"status": status, "payload": answer})

    return Handler
