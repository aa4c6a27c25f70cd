"""The OPC UA client sink against a real asyncua server standing in for the plant's (a PLC's), whose
address space records every value written to it, in order."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.line_bridge.opcua_client import OpcUaClientSink
from mfgvision.line_bridge.results import CameraState
from mfgvision.settings import (
    OPCUA_CLIENT_FIELDS,
    LineBridgeSettings,
    OpcUaClientSettings,
    SettingsError,
    parse_settings,
)
from tests.factories import run_coroutine, wait_for
from tests.line_bridge.conftest import Line, eventually, inference_body
from tests.line_bridge.test_service import ROUTES, deliver, start_bridge
from tests.services import free_port, wait_port

V = ua.VariantType
NS = "urn:mfgvision:test:line1"
#: The plant server's variables: name -> initial value and type; those in ARRAYS are String arrays.
VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "Cam1.Verdict": ("", V.String),
    "Cam1.InspectionId": ("", V.String),
    "Cam1.Defects": ([], V.String),
    "Cam1.Inspections": (0, V.UInt32),
    "Cam1.NgCount": (0, V.UInt32),
    "Cam1.Sequence": (0, V.UInt16),
    "Cam1.UpdatedAt": (datetime(2000, 1, 1, tzinfo=timezone.utc), V.DateTime),
    "Cam2.Verdict": (0, V.Int16),
    "Cam2.Defects": ("", V.String),
    "Cam2.Inspections": (0, V.Int16),
    "Cam2.Sequence": (0, V.Int32),
    "Cam2.UpdatedAt": ("", V.String),
    "Cam3.Pass": (False, V.Boolean),
    "Cam3.NgCount": (0, V.UInt64),
    "ReadOnly": ("", V.String),
}
ARRAYS = {"Cam1.Defects"}
READ_ONLY = {"ReadOnly"}

CAM1 = {
    "verdict": "ns=2;s=Cam1.Verdict",
    "inspection_id": "ns=2;s=Cam1.InspectionId",
    "defects": "ns=2;s=Cam1.Defects",
    "inspections": "ns=2;s=Cam1.Inspections",
    "ng_count": "ns=2;s=Cam1.NgCount",
    "sequence": "ns=2;s=Cam1.Sequence",
    "updated_at": "ns=2;s=Cam1.UpdatedAt",
}


class PasswordUsers:
    """The server's user manager: one user name and password, nobody else."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, **_: Any
    ) -> User | None:
        if (username, password) == (self.username, self.password):
            return User(role=UserRole.User, name=username)
        return None


class PlantServer:
    """An asyncua server on its own event loop thread, with the variables above. ``stop`` and
    ``start`` again make a restarted PLC: same port, same variables, their initial values."""

    def __init__(
        self, users: PasswordUsers | None = None, certificates: tuple[Path, Path] | None = None
    ) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}"
        self.users = users
        self.certificates = certificates
        #: Every value written to a variable, in the order the server applied them.
        self.writes: list[tuple[str, Any, ua.VariantType]] = []
        self._names: dict[int, str] = {}
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.writes.clear()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start())
        assert wait_port(self.port, 10), "the OPC UA server did not start"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        assert self._loop is not None and self._server is not None and self._thread is not None
        self.call(self._server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def call(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(20)

    def read(self, name: str) -> tuple[Any, ua.VariantType]:
        """A variable's value and variant type."""

        async def read() -> ua.DataValue:
            assert self._server is not None
            node = self._server.get_node(ua.NodeId(name, 2))
            return await node.read_data_value()

        value = self.call(read()).Value
        return value.Value, value.VariantType

    def reset(self) -> None:
        """Every variable back to its initial value, and no writes recorded."""

        async def reset() -> None:
            assert self._server is not None
            for name, (value, vtype) in VARIABLES.items():
                variant = ua.Variant(value, vtype, Dimensions=[0] if name in ARRAYS else None)
                await self._server.get_node(ua.NodeId(name, 2)).write_value(variant)

        self.call(reset())
        self.writes.clear()

    def written(self, name: str) -> list[Any]:
        return [value for written, value, _ in list(self.writes) if written == name]

    async def _start(self) -> None:
        server = Server(user_manager=self.users)
        await server.init()
        server.set_endpoint(self.endpoint)
        if self.certificates is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            cert, key = self.certificates
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        assert await server.register_namespace(NS) == 2
        for name, (value, vtype) in VARIABLES.items():
            variant = ua.Variant(value, vtype, Dimensions=[0] if name in ARRAYS else None)
            variable = await server.nodes.objects.add_variable(ua.NodeId(name, 2), name, variant)
            if name in ARRAYS:
                await variable.write_value_rank(ua.ValueRank.OneDimension)
            if name not in READ_ONLY:
                await variable.set_writable()
            _, handle = server.iserver.aspace.add_datachange_callback(
                variable.nodeid, ua.AttributeIds.Value, self._changed
            )
            self._names[handle] = name
        await server.start()
        self._server = server

    async def _changed(self, handle: int, value: ua.DataValue) -> None:
        assert value.Value is not None
        self.writes.append((self._names[handle], value.Value.Value, value.Value.VariantType))


@pytest.fixture
def new_plant() -> Iterator[Callable[..., PlantServer]]:
    """Makes plant servers of a test's own (not started); stops those left running."""
    made: list[PlantServer] = []

    def make(**options: Any) -> PlantServer:
        made.append(PlantServer(**options))
        return made[-1]

    yield make
    for server in made:
        if server.running:
            server.stop()


@pytest.fixture(scope="module")
def shared_plant() -> Iterator[PlantServer]:
    server = PlantServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def plant(shared_plant: PlantServer) -> PlantServer:
    """The plant server as freshly started (a server start takes seconds)."""
    shared_plant.reset()
    return shared_plant


def settings(plant: PlantServer, **extra: Any) -> OpcUaClientSettings:
    values: dict[str, Any] = {
        "endpoint": plant.endpoint,
        "timeout_s": 2,
        "cameras": {"cam1": CAM1},
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    values.update(extra)
    return OpcUaClientSettings.model_validate(values)


def test_each_update_arrives_with_its_values_and_types(plant, started) -> None:
    sink = started(OpcUaClientSink(settings(plant)))
    line = Line(sink)
    parts = [(), ("scratch",), ("dent", "scratch")]
    for number, defects in enumerate(parts, 1):
        inspection = line.part("cam1", *defects)
        eventually(lambda n=number: sink.status()["written"] == n)
        assert plant.read("Cam1.Verdict") == (inspection.verdict, V.String)
        assert plant.read("Cam1.InspectionId") == (inspection.unique_id, V.String)
        assert plant.read("Cam1.Defects") == (list(inspection.defects), V.String)
        assert plant.read("Cam1.Inspections") == (number, V.UInt32)
        assert plant.read("Cam1.NgCount") == (number - 1, V.UInt32)
        assert plant.read("Cam1.Sequence") == (number, V.UInt16)
        assert plant.read("Cam1.UpdatedAt") == (inspection.created, V.DateTime)
    status = sink.status()
    assert status["connected"] is True and status["endpoint"] == plant.endpoint
    assert (status["refused"], status["queued"], status["last_error"]) == (0, 0, "")


def test_int_verdicts_scalar_texts_wrapping_counters_and_a_boolean_pass(plant, started) -> None:
    cameras = {
        "cam2": {
            "verdict": "ns=2;s=Cam2.Verdict",
            "defects": "ns=2;s=Cam2.Defects",
            "inspections": "ns=2;s=Cam2.Inspections",
            "sequence": "ns=2;s=Cam2.Sequence",
            "updated_at": "ns=2;s=Cam2.UpdatedAt",
        },
        "cam3": {"verdict": "ns=2;s=Cam3.Pass", "ng_count": "ns=2;s=Cam3.NgCount"},
    }
    sink = started(OpcUaClientSink(settings(plant, cameras=cameras, verdict_as="int")))
    line = Line(sink)
    line.states["cam2"] = CameraState("cam2", inspections=2**15 - 1)
    line.part("cam2", "scratch", "dent")
    eventually(lambda: sink.status()["written"] == 1)
    assert plant.read("Cam2.Verdict") == (2, V.Int16)
    assert plant.read("Cam2.Defects") == ("dent,scratch", V.String)
    assert plant.read("Cam2.Inspections") == (0, V.Int16), "an Int16 counter wraps to 0"
    assert plant.read("Cam2.Sequence") == (1, V.Int32)
    assert plant.read("Cam2.UpdatedAt") == ("2026-03-01T08:30:01Z", V.String)
    line.part("cam2")
    eventually(lambda: plant.read("Cam2.Sequence") == (2, V.Int32))
    assert plant.read("Cam2.Verdict") == (1, V.Int16)

    line.part("cam3", "dent")
    eventually(lambda: sink.status()["written"] == 3)
    assert plant.read("Cam3.Pass") == (False, V.Boolean)
    assert plant.read("Cam3.NgCount") == (1, V.UInt64)
    line.part("cam3")
    eventually(lambda: plant.read("Cam3.Pass") == (True, V.Boolean))
    assert sink.status()["refused"] == 0


def test_the_server_sees_every_verdict_in_order_sequence_last(plant, started) -> None:
    sink = started(OpcUaClientSink(settings(plant)))
    eventually(lambda: sink.status()["connected"])  # before: only the latest would be written
    line = Line(sink)
    sent = [line.part("cam1", *(("dent",) if n % 3 else ())) for n in range(30)]
    eventually(lambda: sink.status()["written"] == 30)
    assert plant.written("Cam1.Verdict") == [i.verdict for i in sent]
    assert plant.written("Cam1.Sequence") == list(range(1, 31))
    # whenever the sequence number changes, every other variable already holds that part's value
    latest: dict[str, Any] = {}
    for name, value, _ in plant.writes:
        if name == "Cam1.Sequence":
            part = sent[value - 1]
            assert latest["Cam1.Verdict"] == part.verdict
            assert latest["Cam1.InspectionId"] == part.unique_id
            assert latest["Cam1.Defects"] == list(part.defects)
            assert latest["Cam1.Inspections"] == value
            assert latest["Cam1.UpdatedAt"] == part.created
        latest[name] = value


def test_the_server_down_at_start_gets_only_the_latest_state(new_plant, started) -> None:
    plant = new_plant()  # not started yet
    sink = started(OpcUaClientSink(settings(plant)))
    line = Line(sink)
    sent = [line.part("cam1", *(("dent",) if n % 2 else ())) for n in range(50)]
    time.sleep(0.3)  # a few connection attempts
    down = sink.status()
    assert down["connected"] is False and down["queued"] == 50 and down["written"] == 0
    assert "no connection" in down["last_error"]
    plant.start()
    eventually(lambda: sink.status()["connected"] and sink.status()["written"] == 1)
    assert plant.written("Cam1.Sequence") == [50], "one update, the latest, by its number"
    assert plant.written("Cam1.Verdict") == [sent[-1].verdict]
    assert plant.read("Cam1.InspectionId") == (sent[-1].unique_id, V.String)
    assert plant.read("Cam1.Inspections") == (50, V.UInt32)
    status = sink.status()
    assert (status["superseded"], status["queued"], status["reconnects"]) == (49, 0, 0)


def test_a_server_restart_is_followed_by_the_latest_state_and_the_next_parts(
    new_plant, started
) -> None:
    plant = new_plant()
    plant.start()
    sink = started(OpcUaClientSink(settings(plant)))
    line = Line(sink)
    line.part("cam1")
    eventually(lambda: sink.status()["written"] == 1)

    plant.stop()
    eventually(lambda: sink.status()["connected"] is False)
    for _ in range(10):
        line.part("cam1", "scratch")
    plant.start()
    eventually(lambda: sink.status()["written"] == 2)
    assert plant.written("Cam1.Sequence") == [11], "the restarted server sees the latest part"
    assert plant.read("Cam1.Verdict") == ("NG", V.String)
    line.part("cam1")
    eventually(lambda: plant.written("Cam1.Sequence") == [11, 12])
    status = sink.status()
    assert (status["reconnects"], status["superseded"], status["written"]) == (1, 9, 3)


def test_a_restarted_sink_numbers_on_from_the_servers_sequence(plant, started) -> None:
    first = started(OpcUaClientSink(settings(plant)))
    Line(first).part("cam1")
    eventually(lambda: first.status()["written"] == 1)
    first.stop()
    second = started(OpcUaClientSink(settings(plant)))
    Line(second).part("cam1", "dent")
    eventually(lambda: second.status()["written"] == 1)
    assert plant.written("Cam1.Sequence") == [1, 2]


def test_variables_the_server_refuses_are_counted_and_the_others_written(
    plant, started, caplog
) -> None:
    cam1 = {
        **CAM1,
        "inspection_id": "ns=2;s=Cam1.Missing",
        "defects": "ns=2;s=ReadOnly",
        "ng_count": "ns=2;s=Cam2.Verdict",  # an Int16 fits a counter: written
        "updated_at": "ns=2;s=Cam1.Inspections",  # a time does not fit a UInt32
    }
    caplog.set_level(logging.WARNING, logger="mfgvision.line_bridge.opcua_client")
    sink = started(OpcUaClientSink(settings(plant, cameras={"cam1": cam1})))
    line = Line(sink)
    for number in (1, 2, 3):
        line.part("cam1", "dent")
        eventually(lambda n=number: sink.status()["written"] == n)
    assert plant.read("Cam1.Sequence") == (3, V.UInt16)
    assert plant.read("Cam1.Verdict") == ("NG", V.String)
    assert plant.read("Cam2.Verdict") == (3, V.Int16)
    assert plant.read("ReadOnly") == ("", V.String)
    status = sink.status()
    assert status["refused"] == 9 and status["connected"] is True
    assert "cam1." in status["last_error"]
    errors = [r.error for r in caplog.records if hasattr(r, "error")]
    assert len(errors) == 3, "each variable's error is logged once, not per write"
    assert any("cam1.inspection_id" in e and "BadNodeIdUnknown" in e for e in errors)
    assert any("cam1.defects" in e and "BadUserAccessDenied" in e for e in errors)
    assert any("cam1.updated_at" in e and "UInt32" in e for e in errors)


def test_a_string_verdict_is_not_forced_into_an_int_variable(plant, started) -> None:
    cameras = {"cam2": {"verdict": "ns=2;s=Cam2.Verdict", "sequence": "ns=2;s=Cam2.Sequence"}}
    sink = started(OpcUaClientSink(settings(plant, cameras=cameras)))
    Line(sink).part("cam2")
    eventually(lambda: sink.status()["refused"] == 1)
    assert "cam2.verdict" in sink.status()["last_error"] and "Int16" in sink.status()["last_error"]
    eventually(lambda: plant.read("Cam2.Sequence") == (1, V.Int32))
    assert plant.written("Cam2.Verdict") == []


def test_username_and_password(new_plant, started) -> None:
    plant = new_plant(users=PasswordUsers("line", "s3cret-pw"))
    plant.start()
    good = started(OpcUaClientSink(settings(plant, username="line"), password="s3cret-pw"))
    wrong = started(OpcUaClientSink(settings(plant, username="line"), password="guess"))
    Line(good).part("cam1", "dent")
    Line(wrong).part("cam1")
    eventually(lambda: good.status()["written"] == 1)
    eventually(lambda: "no connection" in wrong.status()["last_error"])
    assert plant.read("Cam1.Verdict") == ("NG", V.String)
    status = wrong.status()
    assert status["connected"] is False and status["written"] == 0 and status["queued"] == 1
    assert "BadUserAccessDenied" in status["last_error"]
    assert "guess" not in status["last_error"]
    Line(wrong).part("cam1")  # still taking updates
    assert wrong.status()["queued"] == 2


def test_publish_never_waits_for_a_server_that_does_not_answer(started) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sink = started(
        OpcUaClientSink(
            OpcUaClientSettings(
                endpoint=f"opc.tcp://127.0.0.1:{port}", timeout_s=20, cameras={"cam1": CAM1}
            )
        )
    )
    connection, _ = listener.accept()
    try:
        assert connection.recv(256).startswith(b"HEL"), "the sink said hello"
        published = threading.Event()
        line = Line(sink)

        def publish_many() -> None:
            for _ in range(100):
                line.part("cam1", "dent")
            published.set()

        threading.Thread(target=publish_many, daemon=True).start()
        assert published.wait(10), "publish returned while the server held the hello"
        assert sink.status()["queued"] == 100 and sink.status()["connected"] is False
        sink.stop()
        assert sink.status()["not_delivered"] == 100 and sink.status()["queued"] == 0
    finally:
        connection.close()
        listener.close()


def test_a_full_queue_keeps_each_cameras_latest_then_drops_the_oldest(new_plant, started) -> None:
    plant = new_plant()  # never started
    sink = started(OpcUaClientSink(settings(plant, queue_size=2, cameras={"c1": CAM1, "c2": CAM1})))
    line = Line(sink)
    line.part("c1")
    line.part("c2")
    line.part("c1")  # full with one update of each camera: the oldest is dropped
    assert (sink.status()["dropped"], sink.status()["superseded"]) == (1, 0)
    line.part("c1")  # c2's update is dropped
    line.part("c1")  # full of c1's: its older one is superseded
    status = sink.status()
    assert (status["dropped"], status["superseded"], status["queued"]) == (2, 1, 2)


def test_unmapped_cameras_and_state_changes_write_nothing(plant, started) -> None:
    sink = started(OpcUaClientSink(settings(plant)))
    Line(sink).part("cam9")
    sink.publish(CameraState("cam1", state="camera_error"), None)
    assert sink.status()["unmapped"] == 1 and sink.status()["queued"] == 0
    time.sleep(0.2)
    assert plant.writes == []


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    files = {
        name: tmp_path / name for name in ("server.der", "server.pem", "client.der", "client.pem")
    }

    async def make() -> None:
        await setup_self_signed_certificate(
            files["server.pem"],
            files["server.der"],
            "urn:mfgvision:test:plant",
            "localhost",
            [ExtendedKeyUsageOID.SERVER_AUTH],
            {},
        )
        await setup_self_signed_certificate(
            files["client.pem"],
            files["client.der"],
            "urn:mfgvision:test:line-bridge",
            "localhost",
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {},
        )

    run_coroutine(make())
    return files


def test_a_signed_and_encrypted_channel(certificates, new_plant, started) -> None:
    plant = new_plant(certificates=(certificates["server.der"], certificates["server.pem"]))
    plant.start()
    secured = settings(
        plant,
        security="Basic256Sha256_SignAndEncrypt",
        certificate_file=str(certificates["client.der"]),
        private_key_file=str(certificates["client.pem"]),
        server_certificate_file=str(certificates["server.der"]),
    )
    sink = started(OpcUaClientSink(secured))
    Line(sink).part("cam1", "dent")
    eventually(lambda: sink.status()["written"] == 1)
    assert plant.read("Cam1.Verdict") == ("NG", V.String)
    unsecured = started(OpcUaClientSink(settings(plant)))
    Line(unsecured).part("cam1")
    eventually(lambda: "no connection" in unsecured.status()["last_error"])
    assert unsecured.status()["written"] == 0


def test_a_missing_certificate_fails_at_construction(certificates, tmp_path: Path) -> None:
    values = {
        "endpoint": "opc.tcp://plc:4840",
        "cameras": {"cam1": CAM1},
        "security": "Basic256Sha256_Sign",
        "certificate_file": str(tmp_path / "missing.der"),
        "private_key_file": str(certificates["client.pem"]),
        "server_certificate_file": str(certificates["server.der"]),
    }
    with pytest.raises(FileNotFoundError):
        OpcUaClientSink(OpcUaClientSettings.model_validate(values))


def test_an_inference_message_lands_in_the_plants_variable(plant, tmp_path: Path) -> None:
    broker = InProcessBroker(ROUTES)
    desired = {"opcua_client": {"endpoint": plant.endpoint, "cameras": {"cam-1": CAM1}}}
    service, _ = start_bridge(tmp_path, broker, desired)
    try:
        body = inference_body("cam-1", ("hole",))
        deliver(broker, body)
        assert wait_for(lambda: plant.read("Cam1.Sequence") == (1, V.UInt16), 15)
        assert plant.read("Cam1.Verdict") == ("NG", V.String)
        assert plant.read("Cam1.InspectionId") == (body["unique_id"], V.String)
        assert plant.read("Cam1.Defects") == (["hole"], V.String)
        sinks = service.status()["status"]["sinks"]
        assert sinks["opcua_client"]["written"] == 1 and sinks["opcua_client"]["connected"]
    finally:
        service.stop()


@pytest.mark.parametrize(
    "extra",
    [
        {"endpoint": "http://plc:4840"},
        {"endpoint": "opc.tcp://user@plc:4840"},
        {"cameras": {}},
        {"cameras": {"cam1": {"sequence": "ns=2;s=Seq"}}},  # no verdict
        {"cameras": {"cam1": {"verdict": "Line1.Verdict"}}},
        {"cameras": {"cam1": {"verdict": "ns=2;i=abc"}}},
        {"cameras": {"cam1": {"verdict": "ns=2;s=V", "colour": "ns=2;s=C"}}},
        {"security": "Basic256Sha256_Sign"},  # without certificates
        {"security": "Basic128Rsa15"},
        {"verdict_as": "bool"},
        {"backoff_initial_s": 5, "backoff_max_s": 1},
        {"password": "pw"},
    ],
)
def test_settings_refuse_what_cannot_work(extra: dict[str, Any]) -> None:
    values: dict[str, Any] = {
        "endpoint": "opc.tcp://plc:4840",
        "cameras": {"cam1": {"verdict": "ns=2;s=V"}},
        **extra,
    }
    with pytest.raises((ValidationError, SettingsError)):
        parse_settings(LineBridgeSettings, {"opcua_client": values})


def test_settings_defaults_and_plc_style_node_ids() -> None:
    parsed = parse_settings(
        LineBridgeSettings,
        {
            "opcua_client": {
                "endpoint": "opc.tcp://192.168.0.10:4840",
                "cameras": {"camera1": {"verdict": 'ns=3;s="DB_Vision"."Verdict"'}},
            }
        },
    )
    assert isinstance(parsed, LineBridgeSettings) and parsed.opcua_client is not None
    client = parsed.opcua_client
    assert (client.security, client.verdict_as, client.username, client.timeout_s) == (
        "none",
        "string",
        "",
        2.0,
    )
    assert client.cameras["camera1"].sequence is None
    assert LineBridgeSettings().opcua_client is None


def test_the_docs_list_every_setting() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "line-integration.md").read_text("utf-8")
    section = text.split("## Writing to your OPC UA server", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert documented == [*OpcUaClientSettings.model_fields, *OPCUA_CLIENT_FIELDS]
    configuration = (docs / "configuration.md").read_text("utf-8")
    for name in OpcUaClientSettings.model_fields:
        assert f"| `opcua_client.{name}` |" in configuration, name
