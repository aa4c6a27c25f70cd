"""Line latency: a trigger from the line to the verdict written back, per connection.

A CIS (folder camera of generated frames, the demo model) and the LineBridge run in this process over
the in-process hub, as in ``mfgvision demo``. This process then plays the line, one part at a time:

* ``modbus``: a PLC (a pymodbus server in a process of its own) sets the camera's trigger coil; the part is
  done when the camera's sequence register changes (read by an independent pymodbus client);
* ``mqtt``: a client publishes on ``<prefix>/<location>/<position>/<camera_id>/trigger`` and waits
  for the triggered ``inspection`` message, through a Mosquitto of this run's own configured as
  docs/line-integration.md advises (``set_tcp_nodelay true``; ``--mqtt-stock`` leaves Mosquitto's
  default, ``--mqtt-port`` uses a running broker instead);
* ``opcua``: an asyncua client calls the camera's ``Trigger()`` method; the part is done when the
  call returns with the verdict.

A part is ``lost`` when nothing comes back within ``--deadline`` seconds. ``infer_ms`` is the model's
time (preprocess, run, postprocess) over the same run, from the CIS's own stage timings; ``goal_ms``
is its p50 plus 50 ms. One JSON object is printed.

    python benchmarks/line_latency.py --parts 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from machine import describe
from pymodbus.client import ModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from mfgvision.cis.service import CisService
from mfgvision.deploy.broker import find_mosquitto
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.line_bridge.service import LineBridgeService
from mfgvision.runtime import REPO_ASSETS, Paths
from mfgvision.store.database import Database
from mfgvision.synthetic import generate_sample

CAMERA = "line1-top"
LOCATION, POSITION = "line1", "top"
UNIT, BASE, COIL = 1, 100, 10
#: Register of the sequence number in a block with counters (verdict, mask, 2 x 2 counters, sequence).
SEQUENCE_REGISTER = BASE + 6
PREFIX = "bench"
ROUTES = [
    'FROM /messages/modules/CIS1/outputs/inference INTO BrokeredEndpoint("/modules/LineBridge/inputs/inference")',
    'FROM /messages/modules/LineBridge/outputs/trigger INTO BrokeredEndpoint("/modules/CIS1/inputs/trigger")',
]
MODEL_STAGES = ("preprocess", "infer", "postprocess")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


def make_frames(folder: Path, count: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(11)
    folder.mkdir(parents=True)
    for i in range(count):
        image, _ = generate_sample(rng, size=size)
        cv2.imwrite(str(folder / f"frame_{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


async def _serve_plc(port: int) -> None:
    device = SimDevice(
        id=UNIT,
        simdata=(
            [SimData(0, count=100, values=False, datatype=DataType.BITS)],
            [SimData(0, values=False, datatype=DataType.BITS)],
            [SimData(0, count=1000, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    await ModbusTcpServer(device, address=("127.0.0.1", port)).serve_forever()


def serve_plc(port: int) -> None:
    """Run the PLC's Modbus server (in a process of its own)."""
    asyncio.run(_serve_plc(port))


class Plc:
    """A pymodbus TCP server with coils and holding registers, in a process of its own as a PLC is:
    its work does not compete with the CIS and the LineBridge for this process's interpreter."""

    def __init__(self) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=serve_plc, args=(self.port,), daemon=True)

    def __enter__(self) -> Plc:
        self._process.start()
        if not wait_until(lambda: _listening(self.port), 30, 0.05):
            raise RuntimeError("the Modbus server did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._process.terminate()
        self._process.join(10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def private_broker(folder: Path, nodelay: bool) -> Iterator[int]:
    """A Mosquitto on a free loopback port, its packets sent at once unless ``nodelay`` is off."""
    executable = find_mosquitto()
    if executable is None:
        raise SystemExit("mosquitto is not installed: give --mqtt-port of a running broker")
    port = free_port()
    folder.mkdir(parents=True)
    config = folder / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    config.write_text("\n".join([*lines, f"set_tcp_nodelay {str(nodelay).lower()}", ""]))
    process = subprocess.Popen([executable, "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        if not wait_until(lambda: _listening(port), 10, 0.05):
            raise RuntimeError("the private Mosquitto did not start")
        yield port
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def suite(
    data: Path, frames: Path, plc_port: int, mqtt_port: int, opcua_port: int | None, poll_ms: int
) -> Iterator[tuple[CisService, LineBridgeService]]:
    """The CIS and the LineBridge, connected to this process's PLC, Mosquitto and OPC UA client."""
    broker = InProcessBroker([parse_route(f"r{i}", r) for i, r in enumerate(ROUTES)])
    paths = Paths(assets=REPO_ASSETS, models=REPO_ASSETS / "models", data=data)
    cis_desired = {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_id": CAMERA,
        "camera_location": LOCATION,
        "camera_position": POSITION,
        "camera_fps": 30,
        "inference_fps": 0.001,
        "model_name": "demo-defects",
        "model_version": "1",
    }
    bridge_desired: dict[str, Any] = {
        "trigger_timeout_s": 5,
        "mqtt": {"enabled": True, "port": mqtt_port, "prefix": PREFIX, "triggers": True},
        "modbus": {
            "host": "127.0.0.1",
            "port": plc_port,
            "unit_id": UNIT,
            "cameras": {CAMERA: BASE},
            "trigger_coils": {CAMERA: COIL},
            "poll_ms": poll_ms,
        },
    }
    if opcua_port is not None:
        bridge_desired["opcua_server"] = {
            "host": "127.0.0.1",
            "port": opcua_port,
            "anonymous": True,
        }
    db = Database(f"sqlite:///{data / 'cis.db'}")
    cis = CisService(broker.hub("CIS1", cis_desired), paths, db)
    bridge = LineBridgeService(broker.hub("LineBridge", bridge_desired), paths)
    cis.start()
    bridge.start()
    try:
        assert cis.pipeline is not None and cis.pipeline.models.wait_ready(60), "model not loaded"
        yield cis, bridge
    finally:
        bridge.stop()
        cis.stop()


def modbus_parts(port: int, parts: int, deadline: float) -> tuple[list[float], int]:
    """Set the trigger coil, wait for a new sequence number; milliseconds per part, parts lost."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()

    def sequence() -> int:
        return int(
            client.read_holding_registers(SEQUENCE_REGISTER, count=1, device_id=UNIT).registers[0]
        )

    times, lost = [], 0
    try:
        for _ in range(parts):
            before = sequence()
            t0 = time.perf_counter()
            client.write_coil(COIL, True, device_id=UNIT)
            if wait_until(lambda before=before: sequence() != before, deadline):
                times.append((time.perf_counter() - t0) * 1000)
            else:
                lost += 1
    finally:
        client.close()
    return times, lost


def mqtt_parts(
    port: int, parts: int, deadline: float, nodelay: bool = True
) -> tuple[list[float], int]:
    """Publish a trigger, wait for the triggered inspection; milliseconds per part, parts lost.
    With ``nodelay`` the client sends each packet at once, as docs/line-integration.md advises."""
    base = f"{PREFIX}/{LOCATION}/{POSITION}/{CAMERA}"
    answers: queue.Queue[dict[str, Any]] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(client_id=f"bench-{os.getpid()}")

    def on_message(_client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if body.get("trigger_id"):
            answers.put(body)

    client.on_message = on_message
    if nodelay:
        client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(f"{base}/inspection", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    times, lost = [], 0
    try:
        assert subscribed.wait(10), "no subscription to the inspection topic"
        for _ in range(parts):
            t0 = time.perf_counter()
            client.publish(f"{base}/trigger", b"{}", qos=1)
            try:
                answers.get(timeout=deadline)
                times.append((time.perf_counter() - t0) * 1000)
            except queue.Empty:
                lost += 1
    finally:
        client.disconnect()
        client.loop_stop()
    return times, lost


def opcua_parts(port: int, parts: int, deadline: float) -> tuple[list[float], int]:
    """Call ``Trigger()`` on the camera's object; milliseconds per part, parts lost."""
    from asyncua import ua
    from asyncua.sync import Client

    times, lost = [], 0
    with Client(f"opc.tcp://127.0.0.1:{port}/", timeout=deadline) as client:
        ns = client.get_namespace_index("urn:mfgvision:line")
        camera = client.nodes.objects.get_child([f"{ns}:Cameras", f"{ns}:{CAMERA}"])
        method = camera.get_child(f"{ns}:Trigger")
        for _ in range(parts):
            t0 = time.perf_counter()
            try:
                camera.call_method(method)
                times.append((time.perf_counter() - t0) * 1000)
            except (ua.UaStatusCodeError, TimeoutError):
                lost += 1
    return times, lost


def percentiles(times: list[float]) -> dict[str, float | None]:
    if not times:
        return {"p50_ms": None, "p99_ms": None}
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p99_ms": round(float(np.percentile(times, 99)), 1),
    }


def model_ms(cis: CisService) -> dict[str, float]:
    """p50/p99 of the model's whole time per inference, from the CIS's stage timings."""
    assert cis.pipeline is not None
    summary = cis.pipeline.metrics.summary()
    p50 = sum(summary[s]["p50"] for s in MODEL_STAGES if s in summary)
    p99 = sum(summary[s]["p99"] for s in MODEL_STAGES if s in summary)
    return {"p50": round(p50, 1), "p99": round(p99, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=200, help="parts per path")
    parser.add_argument("--paths", default="modbus,mqtt,opcua", help="paths to measure, in order")
    parser.add_argument(
        "--mqtt-port", type=int, default=0, help="a running MQTT broker (default: start one)"
    )
    parser.add_argument(
        "--mqtt-stock",
        action="store_true",
        help="Mosquitto and the MQTT client as they come (Nagle's algorithm on)",
    )
    parser.add_argument("--poll-ms", type=int, default=5, help="the Modbus trigger coil poll")
    parser.add_argument("--deadline", type=float, default=5.0, help="seconds before a part is lost")
    parser.add_argument("--size", default="1280x720", help="frame size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    measure: dict[str, Callable[[int, int, float], tuple[list[float], int]]] = {
        "modbus": modbus_parts,
        "mqtt": functools.partial(mqtt_parts, nodelay=not args.mqtt_stock),
        "opcua": opcua_parts,
    }
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mfgvision-latency-"))
        plc = stack.enter_context(Plc())
        mqtt_port = args.mqtt_port or stack.enter_context(
            private_broker(Path(tmp) / "mosquitto", nodelay=not args.mqtt_stock)
        )
        frames = Path(tmp) / "data" / "frames"  # a folder camera reads under the data folder
        make_frames(frames, 16, (width, height))
        opcua_port = free_port() if "opcua" in args.paths.split(",") else None
        ports = {"modbus": plc.port, "mqtt": mqtt_port, "opcua": opcua_port}
        out: dict[str, Any] = {"parts_per_path": args.parts, "frame_size": args.size}
        with suite(Path(tmp) / "data", frames, plc.port, mqtt_port, opcua_port, args.poll_ms) as (
            cis,
            _bridge,
        ):
            for name in args.paths.split(","):
                measure[name](ports[name], 5, args.deadline)  # warm-up, not counted
                times, lost = measure[name](ports[name], args.parts, args.deadline)
                out[name] = {**percentiles(times), "parts": len(times), "lost": lost}
            out["infer_ms"] = model_ms(cis)
        out["goal_ms"] = round(out["infer_ms"]["p50"] + 50, 1)
        out["modbus_poll_ms"] = args.poll_ms
        out["mqtt_client_nodelay"] = not args.mqtt_stock
        out["mqtt_broker"] = (
            f"127.0.0.1:{args.mqtt_port}"
            if args.mqtt_port
            else f"own Mosquitto, set_tcp_nodelay {str(not args.mqtt_stock).lower()}"
        )
        out["machine"] = describe()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
