"""The OPC UA server sink against asyncua's own client over TCP on 127.0.0.1: the address space,
subscriptions, the Trigger method, security, restarts, a stalled loop, and the bridge feeding it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import Client, Node, Server, ua
from asyncua.crypto import cert_gen, security_policies
from asyncua.crypto.uacrypto import CertProperties
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.line_bridge.opcua_server import (
    NAMESPACE,
    NO_TIME,
    PASSWORD_ENV,
    OpcUaServerSink,
    endpoint_url,
)
from mfgvision.line_bridge.results import NG, OK, Inspection
from mfgvision.settings import OpcUaServerSettings
from tests.factories import wait_for
from tests.line_bridge.conftest import Line, inference_body
from tests.line_bridge.test_service import ROUTES, deliver, start_bridge
from tests.services import free_port

T = TypeVar("T")
VARIABLES = [
    "Verdict",
    "Defects",
    "Rules",
    "Inspections",
    "NgCount",
    "State",
    "UpdatedAt",
    "InspectionId",
]
CLIENT_URI = "urn:mfgvision:test-client"
SERVER_URI = "urn:mfgvision:test-server"
PASSWORD = "s3cret-for-the-line"


class Background:
    """An event loop on a thread of its own for the clients, so a client stays connected between
    the synchronous steps of a test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def bg() -> Iterator[Background]:
    background = Background()
    yield background
    background.close()


def settings(**extra: Any) -> OpcUaServerSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), "anonymous": True}
    values.update(extra)
    return OpcUaServerSettings.model_validate(values)


def no_trigger(camera_id: str, timeout_s: float) -> Inspection:
    raise AssertionError(f"no trigger expected ({camera_id})")


def client_for(sink: OpcUaServerSink) -> Client:
    return Client(endpoint_url(sink.settings), timeout=10)


async def camera_node(client: Client, camera_id: str) -> tuple[int, Node]:
    ns = await client.get_namespace_index(NAMESPACE)
    return ns, await client.nodes.objects.get_child([f"{ns}:Cameras", f"{ns}:{camera_id}"])


async def read_camera(client: Client, camera_id: str) -> dict[str, Any]:
    """Every variable of the camera, found by browse names in the namespace."""
    ns, camera = await camera_node(client, camera_id)
    found = {}
    for name in VARIABLES:
        node = await camera.get_child(f"{ns}:{name}")
        found[name] = await node.read_value()
    return found


async def read_when_present(client: Client, camera_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await read_camera(client, camera_id)
        except ua.UaStatusCodeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def eventually(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# -- the address space ------------------------------------------------------------------------------


def test_every_variable_of_a_camera_reads_back_under_its_documented_node_id(bg, started) -> None:
    sink = started(OpcUaServerSink(settings(), no_trigger))
    line = Line(sink)
    line.module_state("cam-1", "running")
    line.part("cam-1", "scratch", "dent")
    last = line.part("cam-1", "scratch", rules=("scratch_on_seal",))
    line.part("cam-2")

    async def check() -> None:
        async with client_for(sink) as client:
            await eventually(lambda: _inspections_are(client, "cam-1", 2))
            values = await read_camera(client, "cam-1")
            assert values["Verdict"] == NG and values["InspectionId"] == last.unique_id
            assert values["Defects"] == ["scratch"] and values["Rules"] == ["scratch_on_seal"]
            assert (values["Inspections"], values["NgCount"], values["State"]) == (2, 2, "running")
            assert values["UpdatedAt"] == last.created
            ns, camera = await camera_node(client, "cam-1")
            assert ns == await client.get_namespace_index(NAMESPACE)
            assert camera.nodeid == ua.NodeId("Cameras/cam-1", ns)
            for name in VARIABLES:
                node = client.get_node(f"ns={ns};s=Cameras/cam-1/{name}")
                assert (await node.read_browse_name()).Name == name
            types = {
                name: (
                    await client.get_node(f"ns={ns};s=Cameras/cam-1/{name}").read_data_value()
                ).Value.VariantType
                for name in VARIABLES
            }
            assert types == {
                "Verdict": ua.VariantType.String,
                "Defects": ua.VariantType.String,
                "Rules": ua.VariantType.String,
                "Inspections": ua.VariantType.UInt64,
                "NgCount": ua.VariantType.UInt64,
                "State": ua.VariantType.String,
                "UpdatedAt": ua.VariantType.DateTime,
                "InspectionId": ua.VariantType.String,
            }
            for array in ("Defects", "Rules"):
                node = client.get_node(f"ns={ns};s=Cameras/cam-1/{array}")
                assert await node.read_value_rank() == ua.ValueRank.OneDimension
            cam2 = await read_camera(client, "cam-2")
            assert (cam2["Verdict"], cam2["Defects"], cam2["NgCount"]) == (OK, [], 0)
            folder = await client.nodes.objects.get_child(f"{ns}:Cameras")
            names = {(await n.read_browse_name()).Name for n in await folder.get_children()}
            assert names == {"cam-1", "cam-2"}

    bg.run(check())
    assert sink.status()["updates"] == 4 and sink.status()["dropped"] == 0


async def _inspections_are(client: Client, camera_id: str, count: int) -> bool:
    try:
        return (await read_camera(client, camera_id))["Inspections"] == count
    except ua.UaStatusCodeError:  # the camera is not there yet
        return False


def test_a_camera_seen_only_by_its_module_state_has_no_verdict_yet(bg, started) -> None:
    sink = started(OpcUaServerSink(settings(), no_trigger))
    Line(sink).module_state("cam-7", "camera_error")

    async def check() -> dict[str, Any]:
        async with client_for(sink) as client:
            return await read_when_present(client, "cam-7")

    assert bg.run(check()) == {
        "Verdict": "",
        "Defects": [],
        "Rules": [],
        "Inspections": 0,
        "NgCount": 0,
        "State": "camera_error",
        "UpdatedAt": NO_TIME,
        "InspectionId": "",
    }


class Changes:
    """Data change notifications, in the order they arrive."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.values.setdefault(str(node.nodeid.Identifier).rsplit("/", 1)[1], []).append(val)


def test_a_subscriber_sees_every_change_in_order(bg, started) -> None:
    sink = started(OpcUaServerSink(settings(), no_trigger))
    line = Line(sink)
    line.module_state("cam-1", "running")
    changes = Changes()

    async def subscribe(client: Client) -> None:
        ns, camera = await camera_node(client, "cam-1")
        nodes = [await camera.get_child(f"{ns}:{name}") for name in ("Verdict", "InspectionId")]
        subscription = await client.create_subscription(20, changes)
        await subscription.subscribe_data_change(nodes, queuesize=100)

    async def connect() -> Client:
        client = client_for(sink)
        await client.connect()
        await read_when_present(client, "cam-1")
        await subscribe(client)
        return client

    client = bg.run(connect())
    try:
        assert wait_for(lambda: changes.values.get("Verdict") == [""], 10)
        parts = [line.part("cam-1", *(("hole",) if n % 3 else ())) for n in range(20)]
        expected = [""] + [
            p.verdict for i, p in enumerate(parts) if i == 0 or p.verdict != parts[i - 1].verdict
        ]
        assert wait_for(lambda: len(changes.values.get("InspectionId", [])) == 21, 10)
        assert changes.values["InspectionId"] == ["", *(p.unique_id for p in parts)]
        assert changes.values["Verdict"] == expected
    finally:
        bg.run(client.disconnect())


# -- the Trigger method -----------------------------------------------------------------------------


def test_trigger_answers_with_the_fresh_inspection(bg, started) -> None:
    calls: list[tuple[str, float]] = []

    def trigger(camera_id: str, timeout_s: float) -> Inspection:
        calls.append((camera_id, timeout_s))
        return line.part(camera_id, "scratch")

    sink = started(OpcUaServerSink(settings(trigger_timeout_s=3.5), trigger))
    line = Line(sink)
    line.module_state("cam-3", "running")

    async def call() -> tuple[list[str], dict[str, Any]]:
        async with client_for(sink) as client:
            await read_when_present(client, "cam-3")
            ns, camera = await camera_node(client, "cam-3")
            outputs = await camera.call_method(f"{ns}:Trigger")
            await eventually(lambda: _inspections_are(client, "cam-3", 1))
            return outputs, await read_camera(client, "cam-3")

    outputs, values = bg.run(call())
    triggered = line.states["cam-3"]
    assert outputs == [triggered.inspection_id, NG]
    assert (values["InspectionId"], values["Verdict"]) == (triggered.inspection_id, NG)
    assert calls == [("cam-3", 3.5)]
    assert sink.status()["triggers"] == 1


@pytest.mark.parametrize(
    "error, status, counter",
    [
        (TimeoutError("no result"), ua.uaerrors.BadTimeout, "trigger_timeouts"),
        (RuntimeError("hub gone"), ua.uaerrors.BadInternalError, "trigger_errors"),
    ],
)
def test_a_trigger_without_an_inspection_is_a_bad_status(
    bg, started, error: Exception, status: type[Exception], counter: str
) -> None:
    def trigger(camera_id: str, timeout_s: float) -> Inspection:
        raise error

    sink = started(OpcUaServerSink(settings(), trigger))
    Line(sink).module_state("cam-4", "running")

    async def call() -> None:
        async with client_for(sink) as client:
            await read_when_present(client, "cam-4")
            ns, camera = await camera_node(client, "cam-4")
            with pytest.raises(status):
                await camera.call_method(f"{ns}:Trigger")
            assert (await read_camera(client, "cam-4"))["State"] == "running"

    bg.run(call())
    assert sink.status()[counter] == 1 and sink.status()["triggers"] == 1


# -- clients and restarts ---------------------------------------------------------------------------


def test_a_client_that_leaves_and_a_restarted_server(bg, started) -> None:
    sink = started(OpcUaServerSink(settings(), no_trigger))
    line = Line(sink)
    line.part("cam-1")

    async def read_and_leave() -> dict[str, Any]:
        client = client_for(sink)
        await client.connect()
        values = await read_when_present(client, "cam-1")
        await client.disconnect()
        return values

    assert bg.run(read_and_leave())["Inspections"] == 1
    assert wait_for(lambda: sink.status()["clients"] == 0, 10)
    line.part("cam-1", "dent")

    sink.stop()
    assert sink.status()["listening"] is False
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sink.settings.port), timeout=2).close()
    with pytest.raises((OSError, asyncio.TimeoutError)):
        bg.run(read_and_leave())

    sink.start()
    last = line.part("cam-1", "scratch")

    async def read_after_restart() -> dict[str, Any]:
        async with client_for(sink) as client:
            await eventually(lambda: _inspections_are(client, "cam-1", 3))
            return await read_camera(client, "cam-1")

    values = bg.run(read_after_restart())
    assert (values["InspectionId"], values["Verdict"], values["NgCount"]) == (
        last.unique_id,
        NG,
        2,
    )
    assert sink.status()["listening"] is True


def test_publish_never_waits_for_a_stalled_server_or_a_slow_client(
    bg, started, monkeypatch
) -> None:
    writing, release = threading.Event(), threading.Event()
    write = Server.write_attribute_value

    async def stalled(
        self: Server, nodeid: ua.NodeId, datavalue: ua.DataValue, attr: Any = ua.AttributeIds.Value
    ) -> None:
        if not release.is_set():
            writing.set()
            release.wait(30)  # holds the server's event loop: nothing else runs on it
        await write(self, nodeid, datavalue, attr)

    sink = started(OpcUaServerSink(settings(queue_size=10), no_trigger))
    first = Line(sink, "first-")
    first.part("cam-0")
    changes = Changes()

    async def slow_client() -> Client:
        client = client_for(sink)
        await client.connect()
        await read_when_present(client, "cam-0")
        ns, camera = await camera_node(client, "cam-0")
        subscription = await client.create_subscription(20, changes)
        await subscription.subscribe_data_change(await camera.get_child(f"{ns}:InspectionId"))
        return client

    client = bg.run(slow_client())
    client_waits = threading.Event()
    bg.loop.call_soon_threadsafe(client_waits.wait, 30)  # the client reads nothing meanwhile
    monkeypatch.setattr(Server, "write_attribute_value", stalled)
    first.part("cam-0", "dent")
    assert writing.wait(10), "the server's loop took the update"

    lines = [Line(sink, f"t{n}-") for n in range(1, 9)]
    threads = [
        threading.Thread(target=lambda ln=ln, n=n: [ln.part(f"cam-{n}") for _ in range(200)])
        for n, ln in enumerate(lines, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(t.is_alive() for t in threads), "publish waited for the stalled server"
    status = sink.status()
    assert status["queued"] <= 10 and status["dropped"] > 0
    assert status["queued"] + status["dropped"] == 8 * 200

    release.set()
    client_waits.set()

    async def read_all() -> list[dict[str, Any]]:
        async with client_for(sink) as reader:
            for n in range(1, 9):
                await eventually(lambda n=n: _inspections_are(reader, f"cam-{n}", 200))
            return [await read_camera(reader, f"cam-{n}") for n in range(1, 9)]

    for n, values in enumerate(bg.run(read_all()), 1):
        assert (values["Inspections"], values["InspectionId"]) == (200, f"t{n}-cam-{n}-200")
    assert wait_for(
        lambda: changes.values.get("InspectionId") == ["first-cam-0-1", "first-cam-0-2"], 10
    )
    bg.run(client.disconnect())


# -- security -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path
    trusted: Path


def _certificate(
    folder: Path, name: str, uri: str, use: x509.ObjectIdentifier
) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    names = [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]
    cert = cert_gen.generate_self_signed_app_certificate(key, name, {}, names, extended=[use])
    cert_file, key_file = folder / f"{name}.der", folder / f"{name}-key.pem"
    cert_file.write_bytes(cert.public_bytes(Encoding.DER))
    key_file.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    trusted = folder / "trusted"
    trusted.mkdir()
    server = _certificate(folder, "server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH)
    client = _certificate(folder, "client", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _certificate(folder, "stranger", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH)
    (trusted / "client.der").write_bytes(client[0].read_bytes())
    return Pki(*server, *client, *stranger, trusted)


def secure_settings(pki: Pki, **extra: Any) -> OpcUaServerSettings:
    values = {
        "anonymous": False,
        "certificate_file": str(pki.server_cert),
        "private_key_file": str(pki.server_key),
    }
    return settings(**{**values, **extra})


async def secure_client(
    sink: OpcUaServerSink, cert: Path, key: Path, mode: ua.MessageSecurityMode
) -> Client:
    client = client_for(sink)
    client.application_uri = CLIENT_URI
    await client.set_security(
        security_policies.SecurityPolicyBasic256Sha256,
        CertProperties(cert, "der"),
        CertProperties(key, "pem"),
        mode=mode,
    )
    return client


def test_with_anonymous_off_only_the_right_password_gets_in(bg, started, pki) -> None:
    sink = started(
        OpcUaServerSink(
            secure_settings(
                pki, username="line", security=["none", "Basic256Sha256_SignAndEncrypt"]
            ),
            no_trigger,
            password=PASSWORD,
        )
    )
    Line(sink).part("cam-1", "hole")

    async def login(user: str | None, password: str | None) -> dict[str, Any]:
        client = client_for(sink)
        if user is not None:
            client.set_user(user)
        if password is not None:
            client.set_password(password)
        async with client:
            return await read_when_present(client, "cam-1")

    with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
        bg.run(login(None, None))
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        bg.run(login("line", "wrong"))
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        bg.run(login("someone", PASSWORD))
    assert bg.run(login("line", PASSWORD))["Verdict"] == NG

    async def encrypted_login() -> dict[str, Any]:
        client = await secure_client(
            sink, pki.client_cert, pki.client_key, ua.MessageSecurityMode.SignAndEncrypt
        )
        client.set_user("line")
        client.set_password(PASSWORD)
        async with client:
            return await read_camera(client, "cam-1")

    assert bg.run(encrypted_login())["Inspections"] == 1


@pytest.mark.parametrize(
    "policy, mode",
    [
        ("Basic256Sha256_Sign", ua.MessageSecurityMode.Sign),
        ("Basic256Sha256_SignAndEncrypt", ua.MessageSecurityMode.SignAndEncrypt),
    ],
)
def test_a_client_with_a_trusted_certificate_reads_and_a_stranger_does_not(
    bg, started, pki, policy: str, mode: ua.MessageSecurityMode
) -> None:
    sink = started(
        OpcUaServerSink(
            secure_settings(pki, security=[policy], trusted_certs_dir=str(pki.trusted)),
            no_trigger,
        )
    )
    Line(sink).part("cam-1")

    async def endpoints() -> set[tuple[str, ua.MessageSecurityMode]]:
        client = client_for(sink)
        found = await client.connect_and_get_server_endpoints()
        return {(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode) for e in found}

    assert bg.run(endpoints()) == {("Basic256Sha256", mode)}

    async def read_with(cert: Path, key: Path) -> dict[str, Any]:
        client = await secure_client(sink, cert, key, mode)
        await client.load_client_certificate(str(cert))
        await client.load_private_key(key, None, "pem")
        async with client:
            return await read_when_present(client, "cam-1")

    assert bg.run(read_with(pki.client_cert, pki.client_key))["Verdict"] == OK
    with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
        bg.run(read_with(pki.stranger_cert, pki.stranger_key))

    async def anonymous_on_secure_channel() -> None:
        client = await secure_client(sink, pki.client_cert, pki.client_key, mode)
        async with client:
            await read_camera(client, "cam-1")

    with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
        bg.run(anonymous_on_secure_channel())


def test_a_user_without_a_password_in_the_environment_is_refused_at_build(pki, monkeypatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    line_user = secure_settings(pki, username="line", security=["Basic256Sha256_SignAndEncrypt"])
    with pytest.raises(ValueError, match=PASSWORD_ENV):
        OpcUaServerSink(line_user, no_trigger)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert OpcUaServerSink(line_user, no_trigger).status()["listening"] is False


def test_a_key_that_is_not_the_certificates_is_refused(pki) -> None:
    wrong = secure_settings(
        pki, private_key_file=str(pki.client_key), security=["Basic256Sha256_Sign"], anonymous=True
    )
    with pytest.raises(ValueError, match="not the private key"):
        OpcUaServerSink(wrong, no_trigger)


@pytest.mark.parametrize(
    "extra, reason",
    [
        ({"anonymous": False}, "no client could log in"),
        ({"security": ["Basic256Sha256_Sign"]}, "needs certificate_file"),
        ({"certificate_file": "server.der"}, "go together"),
        ({"username": "line"}, "username needs Basic256Sha256_SignAndEncrypt"),
        ({"trusted_certs_dir": "trusted"}, "trusted_certs_dir needs a Basic256Sha256"),
        ({"security": ["none", "none"]}, "listed twice"),
        ({"security": []}, "at least 1"),
        ({"security": ["Basic128Rsa15"]}, "literal_error"),
        ({"password": "x"}, "extra"),
    ],
)
def test_settings_refuse_a_server_nobody_could_use_safely(
    extra: dict[str, Any], reason: str
) -> None:
    values = {"anonymous": True, **extra}
    with pytest.raises(ValidationError) as refused:
        OpcUaServerSettings.model_validate(values)
    assert reason in str(refused.value) or reason in str(refused.value.errors()[0]["type"])


def test_settings_defaults() -> None:
    parsed = OpcUaServerSettings(anonymous=True)
    assert (parsed.host, parsed.port, parsed.security, parsed.username) == (
        "0.0.0.0",
        4840,
        ["none"],
        "",
    )
    assert endpoint_url(parsed) == "opc.tcp://0.0.0.0:4840/mfgvision"


# -- through the bridge -------------------------------------------------------------------------------


def test_the_bridge_serves_each_inference_and_a_trigger_nobody_answers(bg, tmp_path: Path) -> None:
    port = free_port()
    broker = InProcessBroker(ROUTES)
    desired = {
        "fail_safe": "NG",
        "opcua_server": {
            "host": "127.0.0.1",
            "port": port,
            "anonymous": True,
            "trigger_timeout_s": 0.3,
        },
    }
    service, _sink = start_bridge(tmp_path, broker, desired)
    try:
        body = inference_body("cam-5", ("scratch",))
        deliver(broker, body)

        async def read() -> tuple[dict[str, Any], dict[str, Any]]:
            async with Client(f"opc.tcp://127.0.0.1:{port}/mfgvision", timeout=10) as client:
                seen = await read_when_present(client, "cam-5")
                ns, camera = await camera_node(client, "cam-5")
                with pytest.raises(ua.uaerrors.BadTimeout):
                    await camera.call_method(f"{ns}:Trigger")
                await eventually(lambda: _inspections_are(client, "cam-5", 2))
                return seen, await read_camera(client, "cam-5")

        seen, after_trigger = bg.run(read())
        assert (seen["Verdict"], seen["InspectionId"], seen["Defects"]) == (
            NG,
            body["unique_id"],
            ["scratch"],
        )
        assert after_trigger["Verdict"] == NG and after_trigger["InspectionId"] != body["unique_id"]
        sinks = service.status()["status"]["sinks"]
        assert sinks["opcua_server"]["listening"] is True
        assert sinks["opcua_server"]["trigger_timeouts"] == 1
    finally:
        service.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_leaves_the_bridge_running_degraded(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = InProcessBroker(ROUTES)
        opcua = {"host": "127.0.0.1", "port": port, "anonymous": True}
        service, sink = start_bridge(tmp_path, broker, {"opcua_server": opcua})
        try:
            status = service.status()["status"]
            assert status["state"] == "degraded" and "opcua_server" not in status["sinks"]
            deliver(broker, inference_body("cam-1"))
            assert wait_for(lambda: len(sink.inspections()) == 1, 10)
        finally:
            service.stop()
