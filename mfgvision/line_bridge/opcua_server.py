"""The OPC UA server of the line: each camera's latest verdict, defects, counters and module state as
variables, and a ``Trigger()`` method per camera (docs/line-integration.md, "OPC UA server").

Address space, in namespace ``urn:mfgvision:line`` (index ``<ns>``, 2 on this server), every node
with a string node id::

    Objects/Cameras                  ns=<ns>;s=Cameras                     folder
    Objects/Cameras/<camera_id>      ns=<ns>;s=Cameras/<camera_id>         object
        Verdict       String         ns=<ns>;s=Cameras/<camera_id>/Verdict  OK, NG, "" before a result
        Defects       String[]       .../Defects       defect class names of the last result
        Rules         String[]       .../Rules         names of the rules that fired on it
        Inspections   UInt64         .../Inspections   results since LineBridge started
        NgCount       UInt64         .../NgCount       NG results since LineBridge started
        State         String         .../State         the camera module's state
        UpdatedAt     DateTime       .../UpdatedAt     UTC time of the last result (1601-01-01: none)
        InspectionId  String         .../InspectionId  unique_id of the last result, written last
        Trigger()     method         .../Trigger       -> InspectionId (String), Verdict (String)

A camera's object appears when the camera is first seen (a result or a module state change). The
asyncua server runs on an event loop in a thread of its own: ``publish`` only queues the camera's
state (bounded: past ``queue_size`` only each camera's latest is kept, the rest counted as
``dropped``) and wakes the loop, so a stalled loop or a slow client never holds up the bridge.
``Trigger()`` runs the bridge's trigger in a worker thread and answers ``BadTimeout`` when no
inspection came in time. The password of ``username`` comes from ``MFGVISION_OPCUA_PASSWORD``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_server import InternalServer
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
    load_pem_private_key,
)

from mfgvision.line_bridge.results import CameraState, Inspection, Trigger
from mfgvision.settings import OpcUaServerSettings

log = logging.getLogger(__name__)

NAMESPACE = "urn:mfgvision:line"
ENDPOINT_PATH = "/mfgvision"
#: The server's application URI without a certificate, or with one that names none.
APPLICATION_URI = "urn:mfgvision:line-bridge"
PASSWORD_ENV = "MFGVISION_OPCUA_PASSWORD"
CAMERAS = "Cameras"
START_WAIT_S = 10.0
STOP_WAIT_S = 2.0
TRIGGER_WORKERS = 4
#: OPC UA's null DateTime: ``UpdatedAt`` before a camera's first result.
NO_TIME = datetime(1601, 1, 1, tzinfo=timezone.utc)

_POLICIES = {
    "none": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
#: A client certificate must be in date, name the client's application URI and be trusted.
_CLIENT_CHECKS = (
    CertificateValidatorOptions.TIME_RANGE
    | CertificateValidatorOptions.URI
    | CertificateValidatorOptions.TRUSTED
    | CertificateValidatorOptions.PEER_CLIENT
)


def endpoint_url(settings: OpcUaServerSettings) -> str:
    """``opc.tcp://<host>:<port>/mfgvision``."""
    return f"opc.tcp://{settings.host}:{settings.port}{ENDPOINT_PATH}"


def node_id(namespace_index: int, camera_id: str, name: str = "") -> ua.NodeId:
    """The node id of a camera's object (``Cameras/<camera_id>``) or of its ``name`` child."""
    path = f"{CAMERAS}/{camera_id}" + (f"/{name}" if name else "")
    return ua.NodeId(path, namespace_index)


def camera_values(state: CameraState) -> dict[str, ua.Variant]:
    """Each camera variable's value for ``state``, in the order they are written."""
    updated = NO_TIME if state.updated_at is None else state.updated_at.astimezone(timezone.utc)
    return {
        "Verdict": ua.Variant(state.verdict, ua.VariantType.String),
        "Defects": ua.Variant(list(state.defects), ua.VariantType.String),
        "Rules": ua.Variant(list(state.rules), ua.VariantType.String),
        "Inspections": ua.Variant(state.inspections, ua.VariantType.UInt64),
        "NgCount": ua.Variant(state.ng_count, ua.VariantType.UInt64),
        "State": ua.Variant(state.state, ua.VariantType.String),
        "UpdatedAt": ua.Variant(updated, ua.VariantType.DateTime),
        "InspectionId": ua.Variant(state.inspection_id, ua.VariantType.String),
    }


def _output(name: str, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name,
        DataType=ua.NodeId(ua.ObjectIds.String),
        ValueRank=ua.ValueRank.Scalar,
        Description=ua.LocalizedText(description),
    )


TRIGGER_OUTPUTS = [
    _output("InspectionId", "unique_id of the fresh inspection"),
    _output("Verdict", "OK or NG"),
]


def load_certificate(path: str) -> x509.Certificate:
    """A certificate from a PEM or DER file."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_private_key(path: str, certificate: x509.Certificate) -> rsa.RSAPrivateKey:
    """The unencrypted RSA private key of ``certificate`` from a PEM or DER file."""
    data = Path(path).read_bytes()
    pem = data.lstrip().startswith(b"-----BEGIN")
    key = load_pem_private_key(data, None) if pem else load_der_private_key(data, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: Basic256Sha256 needs an RSA key")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():
        raise ValueError(f"{path} is not the private key of the certificate")
    return key


def application_uri(certificate: x509.Certificate | None) -> str:
    """The certificate's URI (subjectAltName), which clients expect as the server's application
    URI; ``APPLICATION_URI`` without one."""
    if certificate is None:
        return APPLICATION_URI
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return APPLICATION_URI
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else APPLICATION_URI


#: What ``Trigger()`` of a camera calls on the loop: (camera_id, object node id) -> outputs or status.
TriggerMethod = Callable[[str, ua.NodeId], Awaitable[list[ua.Variant] | ua.StatusCode]]


class _Users(UserManager):
    """Who may open a session: the user of the settings with the right password, a client whose
    certificate the trust store trusts, or anyone when anonymous access is on. (A token type the
    settings do not allow is refused before it gets here.)"""

    def __init__(
        self, settings: OpcUaServerSettings, password: str, trust: TrustStore | None
    ) -> None:
        self._username = settings.username.encode()
        self._password = password.encode()
        self._anonymous = settings.anonymous
        self._trust = trust

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None:
            right = hmac.compare_digest(username.encode(), self._username) & hmac.compare_digest(
                (password or "").encode(), self._password
            )
            return User(role=UserRole.User, name=username) if right and self._username else None
        if self._anonymous:
            return User(role=UserRole.User)
        trusted = (
            bool(certificate)
            and self._trust is not None
            and self._trust.is_trusted(x509.load_der_x509_certificate(certificate))
        )
        return User(role=UserRole.User) if trusted else None


class _Space:
    """The server's address space: the Cameras folder, one object per camera seen (on the loop)."""

    def __init__(self, server: Server, namespace_index: int, on_trigger: TriggerMethod) -> None:
        self.server = server
        self.ns = namespace_index
        self._on_trigger = on_trigger
        self._cameras: set[str] = set()

    async def update(self, state: CameraState) -> None:
        """Write ``state`` to its camera's variables (creating the camera first if it is new)."""
        if state.camera_id not in self._cameras:
            await self._add_camera(state.camera_id)
        now = datetime.now(timezone.utc)
        for name, value in camera_values(state).items():
            await self.server.write_attribute_value(
                node_id(self.ns, state.camera_id, name),
                ua.DataValue(value, SourceTimestamp=now, ServerTimestamp=now),
            )

    async def _add_camera(self, camera_id: str) -> None:
        folder = self.server.get_node(ua.NodeId(CAMERAS, self.ns))
        camera = await folder.add_object(
            node_id(self.ns, camera_id), ua.QualifiedName(camera_id, self.ns)
        )
        for name, value in camera_values(CameraState(camera_id)).items():
            variable = await camera.add_variable(
                node_id(self.ns, camera_id, name),
                ua.QualifiedName(name, self.ns),
                value.Value,
                value.VariantType,
            )
            if name in ("Defects", "Rules"):
                await variable.write_value_rank(ua.ValueRank.OneDimension)
                await variable.write_array_dimensions([0])

        async def trigger(parent: ua.NodeId) -> list[ua.Variant] | ua.StatusCode:
            return await self._on_trigger(camera_id, parent)

        await camera.add_method(
            node_id(self.ns, camera_id, "Trigger"),
            ua.QualifiedName("Trigger", self.ns),
            trigger,
            [],
            TRIGGER_OUTPUTS,
        )
        self._cameras.add(camera_id)


class OpcUaServerSink:
    """Serves each camera's latest state over OPC UA and takes triggers from its clients."""

    name = "opcua_server"

    def __init__(
        self, settings: OpcUaServerSettings, trigger: Trigger, password: str | None = None
    ) -> None:
        self.settings = settings
        self._trigger = trigger
        self._password = password if password is not None else os.environ.get(PASSWORD_ENV, "")
        if settings.username and not self._password:
            raise ValueError(f"opcua_server.username is set but {PASSWORD_ENV} is empty")
        self._certificate = (
            load_certificate(settings.certificate_file) if settings.certificate_file else None
        )
        self._private_key = (
            load_private_key(settings.private_key_file, self._certificate)
            if self._certificate is not None
            else None
        )
        if settings.trusted_certs_dir and not Path(settings.trusted_certs_dir).is_dir():
            raise FileNotFoundError(f"trusted_certs_dir {settings.trusted_certs_dir} is no folder")
        self.endpoint = endpoint_url(settings)
        self._lock = threading.Lock()
        self._pending: deque[CameraState] = deque()
        self._woken = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._triggers: ThreadPoolExecutor | None = None
        self._counts = dict.fromkeys(
            ("updates", "dropped", "triggers", "trigger_timeouts", "trigger_errors"), 0
        )
        self._last_error = ""

    # -- the bridge's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server on a thread of its own; raises what kept it from listening (a port in
        use, a trust folder that cannot be read)."""
        self._triggers = ThreadPoolExecutor(TRIGGER_WORKERS, thread_name_prefix="opcua-trigger")
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="opcua-server", daemon=True
        )
        self._thread.start()
        try:
            self._wait_started(started)
        except BaseException:
            self._triggers.shutdown(wait=False)
            raise
        log.info(
            "opcua server started",
            extra={
                "endpoint": self.endpoint,
                "security": self.settings.security,
                "anonymous": self.settings.anonymous,
                "username": self.settings.username,
                "trusted_certs_dir": self.settings.trusted_certs_dir,
            },
        )

    @staticmethod
    def _wait_started(started: Future[None]) -> None:
        """Wait for the server to listen; one that takes longer than ``START_WAIT_S`` is called off
        (the thread stops it should it start later)."""
        try:
            started.result(START_WAIT_S)
        except concurrent.futures.TimeoutError:  # not yet TimeoutError itself on Python 3.10
            if started.cancel():
                raise TimeoutError(f"the server did not start within {START_WAIT_S} s") from None
            started.result()  # it was starting just then: its outcome follows at once

    def stop(self) -> None:
        """Close every client's connection and stop listening, within about ``STOP_WAIT_S``."""
        with self._lock:
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S + 1)
        if self._triggers is not None:
            self._triggers.shutdown(wait=False, cancel_futures=True)
        log.info("opcua server stopped", extra={"endpoint": self.endpoint, **self._counts})

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        """Queue the camera's state for its variables and wake the server's loop; never waits for
        the loop."""
        with self._lock:
            self._pending.append(state)
            if len(self._pending) > self.settings.queue_size:
                self._keep_latest()
            if self._loop is not None and self._wake is not None and not self._woken:
                self._woken = True
                self._loop.call_soon_threadsafe(self._wake.set)

    def status(self) -> dict[str, Any]:
        """Endpoint, whether it listens, connected clients, queued updates and counters."""
        with self._lock:
            server = self._server
            return {
                "listening": server is not None,
                "endpoint": self.endpoint,
                "clients": len(server.bserver.clients) if server and server.bserver else 0,
                "queued": len(self._pending),
                "last_error": self._last_error,
                **self._counts,
            }

    def _keep_latest(self) -> None:
        """Past ``queue_size`` only each camera's latest state waits: the rest is dropped."""
        latest = {state.camera_id: state for state in self._pending}
        kept = deque(state for state in self._pending if latest[state.camera_id] is state)
        self._counts["dropped"] += len(self._pending) - len(kept)
        self._pending = kept

    # -- the server's loop ------------------------------------------------------------------------

    def _run(self, started: Future[None]) -> None:
        """The server's thread: its own event loop, whose leftover tasks (the sessions of clients
        that were still connected) are cancelled when the server has stopped."""
        asyncio.run(self._serve(started))

    async def _serve(self, started: Future[None]) -> None:
        try:
            server, space = await self._build()
            await server.start()
        except Exception as exc:
            if started.set_running_or_notify_cancel():
                started.set_exception(exc)
            return
        if not started.set_running_or_notify_cancel():  # start() gave up waiting
            await server.stop()
            return
        wake, stop = asyncio.Event(), asyncio.Event()
        with self._lock:
            self._loop, self._wake, self._stop, self._server = (
                asyncio.get_running_loop(),
                wake,
                stop,
                server,
            )
            self._woken = bool(self._pending)
        if self._woken:
            wake.set()
        started.set_result(None)
        writer = asyncio.create_task(self._write_loop(space, wake))
        await stop.wait()
        writer.cancel()
        with self._lock:
            self._loop = self._wake = self._stop = self._server = None
        try:
            await asyncio.wait_for(server.stop(), STOP_WAIT_S)
        except Exception as exc:
            self._error(f"server not stopped cleanly: {exc}")

    async def _build(self) -> tuple[Server, _Space]:
        s = self.settings
        trust = None
        if s.trusted_certs_dir:
            trust = TrustStore([Path(s.trusted_certs_dir)], [])
            await trust.load()
        server = Server(user_manager=_Users(s, self._password, trust))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("mfgvision LineBridge")
        await server.set_application_uri(application_uri(self._certificate))
        if self._certificate is not None and self._private_key is not None:
            await server.load_certificate(self._certificate.public_bytes(Encoding.DER), "der")
            key = self._private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
            await server.load_private_key(key, None, "der")
        server.set_security_policy([_POLICIES[policy] for policy in s.security])
        tokens: list[type] = []
        if s.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if s.username:
            tokens.append(ua.UserNameIdentityToken)
        if trust is not None:
            tokens.append(ua.X509IdentityToken)
            server.set_certificate_validator(CertificateValidator(_CLIENT_CHECKS, trust))
        server.set_identity_tokens(tokens)
        namespace = await server.register_namespace(NAMESPACE)
        await server.nodes.objects.add_folder(
            ua.NodeId(CAMERAS, namespace), ua.QualifiedName(CAMERAS, namespace)
        )
        return server, _Space(server, namespace, self._call_trigger)

    async def _write_loop(self, space: _Space, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            with self._lock:
                batch, self._pending = self._pending, deque()
                self._woken = False
            for state in batch:
                try:
                    await space.update(state)
                except Exception as exc:  # one camera's failure must not stop the others
                    self._error(f"camera {state.camera_id} not updated: {exc}")
                    continue
                with self._lock:
                    self._counts["updates"] += 1

    async def _call_trigger(
        self, camera_id: str, _parent: ua.NodeId
    ) -> list[ua.Variant] | ua.StatusCode:
        """The ``Trigger()`` method of ``camera_id``: the fresh inspection's id and verdict, or
        ``BadTimeout`` when none came within ``trigger_timeout_s``."""
        self._count("triggers")
        loop = asyncio.get_running_loop()
        try:
            inspection = await loop.run_in_executor(
                self._triggers, self._trigger, camera_id, self.settings.trigger_timeout_s
            )
        except TimeoutError:
            self._count("trigger_timeouts")
            log.warning("opcua trigger got no inspection in time", extra={"camera_id": camera_id})
            return ua.StatusCode(ua.StatusCodes.BadTimeout)
        except Exception as exc:  # a failing trigger must not take the server down
            self._count("trigger_errors")
            self._error(f"trigger of {camera_id} failed: {exc}")
            return ua.StatusCode(ua.StatusCodes.BadInternalError)
        return [
            ua.Variant(inspection.unique_id, ua.VariantType.String),
            ua.Variant(inspection.verdict, ua.VariantType.String),
        ]

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _error(self, message: str) -> None:
        with self._lock:
            changed = message != self._last_error
            self._last_error = message
        if changed:
            log.warning("opcua server error", extra={"error": message})
