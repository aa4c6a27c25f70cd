"""OPC UA client to the plant's own OPC UA server (a PLC's, Kepware's, Ignition's): each camera's
verdict and counters written to the variables the settings name (docs/line-integration.md).

One thread runs an asyncio loop that owns the asyncua client: it connects, reads the data type of
every configured variable once, and writes queued updates in order, each value as the variable's
own type (a PLC refuses a write whose variant type differs). The fields of one update go in two
Write requests, the sequence number (else the verdict) alone in the second, so a PLC that polls it
finds the rest of that part already there. After an outage only each camera's latest update is
written, under its own sequence number; the ones in between are counted as superseded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mfgvision.line_bridge.modbus import VERDICT_NG, VERDICT_OK, VERDICT_UNKNOWN, sequence_number
from mfgvision.line_bridge.results import NG, OK, CameraState, Inspection
from mfgvision.settings import OPCUA_CLIENT_FIELDS, OpcUaClientSettings

log = logging.getLogger(__name__)

PASSWORD_ENV = "MFGVISION_OPCUA_CLIENT_PASSWORD"
#: With nothing to write, the connection is checked this often (a read of the server's state).
IDLE_CHECK_S = 1.0
#: At a stop, the queue may drain this long; then the thread is cancelled, for as long again.
STOP_DRAIN_S = 1.0
#: A goodbye to the server (close session and channel) takes at most this long.
CLOSE_S = 0.5
#: The server's ServerStatus.State variable, read to check an idle connection.
SERVER_STATE = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)

_V = ua.VariantType
#: The largest value of each integer type: counters wrap to 0 past it, the sequence number to 1.
INTEGER_MAX = {
    _V.SByte: 2**7 - 1,
    _V.Byte: 2**8 - 1,
    _V.Int16: 2**15 - 1,
    _V.UInt16: 2**16 - 1,
    _V.Int32: 2**31 - 1,
    _V.UInt32: 2**32 - 1,
    _V.Int64: 2**63 - 1,
    _V.UInt64: 2**64 - 1,
}
_SECURITY = {
    "Basic256Sha256_Sign": ua.MessageSecurityMode.Sign,
    "Basic256Sha256_SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
#: What ends a connection: the transport, a timeout, or an error the server answered a service with.
_LOST = (OSError, asyncio.TimeoutError, ua.UaError)


def accepted_types(field: str, verdict_as: str) -> set[ua.VariantType]:
    """The variable types ``field`` can be written as."""
    if field == "verdict":
        return {_V.Boolean, *(INTEGER_MAX if verdict_as == "int" else {_V.String})}
    if field in ("inspections", "ng_count", "sequence"):
        return set(INTEGER_MAX)
    if field == "updated_at":
        return {_V.DateTime, _V.String}
    return {_V.String}


@dataclass(frozen=True)
class _Update:
    """One inspection's values for its camera's variables."""

    camera_id: str
    part: int
    verdict: str
    inspection_id: str
    defects: tuple[str, ...]
    inspections: int
    ng_count: int
    updated_at: datetime


@dataclass(frozen=True)
class _Variable:
    """A configured variable as the server describes it; ``problem`` says why it cannot be written
    (a node the server does not know, a type the field does not fit)."""

    camera_id: str
    field: str
    node_id: ua.NodeId
    vtype: ua.VariantType = _V.Null
    array: bool = False
    problem: str = ""

    @property
    def key(self) -> str:
        return f"{self.camera_id}.{self.field}"


def variable_value(
    variable: _Variable, update: _Update, verdict_as: str, first_sequence: int
) -> Any:
    """The value ``variable`` gets for ``update``, as a Python value of the variable's type."""
    field, vtype = variable.field, variable.vtype
    if field == "verdict":
        if vtype == _V.Boolean:
            return update.verdict == OK  # true passes the part: an unknown verdict does not
        if verdict_as == "string":
            return update.verdict
        return {OK: VERDICT_OK, NG: VERDICT_NG}.get(update.verdict, VERDICT_UNKNOWN)
    if field == "sequence":
        return sequence_number(first_sequence, update.part, INTEGER_MAX[vtype])
    if field in ("inspections", "ng_count"):
        return getattr(update, field) % (INTEGER_MAX[vtype] + 1)
    if field == "defects":
        return list(update.defects) if variable.array else ",".join(update.defects)
    if field == "updated_at":
        at = update.updated_at.astimezone(timezone.utc)
        return at if vtype == _V.DateTime else at.isoformat().replace("+00:00", "Z")
    return update.inspection_id


class OpcUaClientSink:
    """Writes each camera's verdict and counters to variables of the plant's OPC UA server."""

    name = "opcua_client"

    def __init__(self, settings: OpcUaClientSettings, password: str | None = None) -> None:
        self.settings = settings
        self._password = password if password is not None else os.environ.get(PASSWORD_ENV, "")
        self._application_uri = _application_uri(settings)
        self._pending: deque[_Update] = deque()
        self._parts: dict[str, int] = {}
        self._first_sequence: dict[str, int] | None = None
        self._variables: dict[str, list[_Variable]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = self._was_connected = False
        self._counts = dict.fromkeys(
            (
                "written",
                "refused",
                "failed_writes",
                "superseded",
                "dropped",
                "unmapped",
                "not_delivered",
                "reconnects",
            ),
            0,
        )
        self._last_error = ""
        self._node_errors: dict[str, str] = {}

    def start(self) -> None:
        """Start the thread that talks to the server."""
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="opcua-client-sink", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued while the connection allows (about a second), then close it; what
        was not written is counted in ``not_delivered``."""
        self._stopping.set()
        self._notify()
        if self._thread is None:
            return
        self._thread.join(STOP_DRAIN_S)
        if self._thread.is_alive() and self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(STOP_DRAIN_S)

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        """Queue ``inspection`` as the camera's next update; never blocks. A state change without
        an inspection changes no variable. A full queue keeps each camera's latest update only,
        and drops the oldest when that is not enough."""
        if inspection is None:
            return
        with self._lock:
            if state.camera_id not in self.settings.cameras:
                self._counts["unmapped"] += 1
                return
            part = self._parts.get(state.camera_id, 0) + 1
            self._parts[state.camera_id] = part
            if len(self._pending) >= self.settings.queue_size:
                self._keep_latest()
            if len(self._pending) >= self.settings.queue_size:
                self._pending.popleft()
                self._counts["dropped"] += 1
            self._pending.append(
                _Update(
                    camera_id=state.camera_id,
                    part=part,
                    verdict=inspection.verdict,
                    inspection_id=inspection.unique_id,
                    defects=inspection.defects,
                    inspections=state.inspections,
                    ng_count=state.ng_count,
                    updated_at=inspection.created,
                )
            )
        self._notify()

    def status(self) -> dict[str, Any]:
        """Connection state and counters (updates written, values refused, updates skipped)."""
        with self._lock:
            return {
                "connected": self._connected,
                "endpoint": self.settings.endpoint,
                "queued": len(self._pending),
                "last_error": self._last_error,
                **self._counts,
            }

    # -- the client's thread ----------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self._task = asyncio.current_task()
        backoff = self.settings.backoff_initial_s
        try:
            while not self._stopping.is_set():
                client, opened = self._client(), False
                try:
                    await self._open(client)
                    opened = True
                    await self._prepare(client)
                    backoff = self.settings.backoff_initial_s
                    await self._serve(client)
                except _LOST as exc:
                    self._lost(exc)
                finally:
                    await self._close(client, opened)
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_s)
        except asyncio.CancelledError:
            pass  # stop() gave up waiting: what is queued is counted below
        finally:
            with self._lock:
                left = len(self._pending)
                self._counts["not_delivered"] += left
                self._pending.clear()
                self._connected = False
            if left:
                log.warning("OPC UA client stopped with updates not written", extra={"left": left})

    def _client(self) -> Client:
        client = Client(self.settings.endpoint, timeout=self.settings.timeout_s)
        if self.settings.username:
            client.set_user(self.settings.username)
            client.set_password(self._password)
        return client

    async def _open(self, client: Client) -> None:
        """Open the secure channel and the session."""
        security = self.settings.security
        if security != "none":
            client.application_uri = self._application_uri
            await client.set_security(
                security_policies.SecurityPolicyBasic256Sha256,
                self.settings.certificate_file,
                self.settings.private_key_file,
                server_certificate=self.settings.server_certificate_file,
                mode=_SECURITY[security],
            )
        await client.connect()

    async def _prepare(self, client: Client) -> None:
        """Learn the variables' types and, the first time, the sequence numbers; then only each
        camera's latest update stays queued."""
        self._variables = await self._describe(client)
        if self._first_sequence is None:
            self._first_sequence = await self._read_sequences(client)
        with self._lock:
            self._counts["reconnects"] += self._was_connected
            self._was_connected = self._connected = True
            self._keep_latest()
        log.info("OPC UA client connected", extra={"endpoint": self.settings.endpoint})

    async def _describe(self, client: Client) -> dict[str, list[_Variable]]:
        """Each camera's variables in writing order, with the type and rank the server gives
        them."""
        wanted = [
            (camera_id, field, ua.NodeId.from_string(node_id))
            for camera_id, nodes in self.settings.cameras.items()
            for field in OPCUA_CLIENT_FIELDS
            if (node_id := getattr(nodes, field)) is not None
        ]
        reads = [
            ua.ReadValueId(NodeId=node_id, AttributeId=attribute)
            for _, _, node_id in wanted
            for attribute in (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank)
        ]
        results = await client.uaclient.read(ua.ReadParameters(NodesToRead=reads))
        found: dict[str, list[_Variable]] = {}
        for index, (camera_id, field, node_id) in enumerate(wanted):
            variable = _Variable(camera_id, field, node_id)
            data_type, rank = results[2 * index], results[2 * index + 1]
            bad = _bad(data_type) or _bad(rank)
            if bad:
                variable = replace(variable, problem=f"the server has no variable there: {bad}")
            else:
                variable = await self._typed(client, variable, data_type, rank)
            found.setdefault(camera_id, []).append(variable)
        return found

    async def _typed(
        self, client: Client, variable: _Variable, data_type: ua.DataValue, rank: ua.DataValue
    ) -> _Variable:
        type_id = data_type.Value.Value if data_type.Value is not None else None
        value_rank = rank.Value.Value if rank.Value is not None else ua.ValueRank.Scalar
        try:
            vtype = await data_type_to_variant_type(client.get_node(type_id))
        except (ua.UaError, ValueError, TypeError):
            return replace(variable, problem=f"its data type {type_id} is not a built-in type")
        array = isinstance(value_rank, int) and value_rank >= 0
        typed = replace(variable, vtype=vtype, array=array)
        if vtype not in accepted_types(variable.field, self.settings.verdict_as):
            return replace(typed, problem=f"a {variable.field} cannot be written to a {vtype.name}")
        if array and variable.field != "defects":
            return replace(typed, problem=f"a {variable.field} cannot be written to an array")
        return typed

    async def _read_sequences(self, client: Client) -> dict[str, int]:
        """Each camera's sequence number in the server when the sink first connects: numbering goes
        on from it, so a restarted bridge never repeats the number the server saw last."""
        sequences = [
            variable
            for variables in self._variables.values()
            for variable in variables
            if variable.field == "sequence" and not variable.problem
        ]
        if not sequences:
            return {}
        reads = [
            ua.ReadValueId(NodeId=v.node_id, AttributeId=ua.AttributeIds.Value) for v in sequences
        ]
        results = await client.uaclient.read(ua.ReadParameters(NodesToRead=reads))
        found = {}
        for variable, result in zip(sequences, results, strict=True):
            value = result.Value.Value if result.Value is not None and not _bad(result) else 0
            found[variable.camera_id] = value if isinstance(value, int) else 0
        return found

    async def _serve(self, client: Client) -> None:
        """Write queued updates in order until stopped with an empty queue."""
        while True:
            with self._lock:
                update = self._pending.popleft() if self._pending else None
            if update is None:
                if self._stopping.is_set():
                    return
                await self._idle(client)
                continue
            try:
                await self._write(client, update)
            except _LOST:
                self._requeue(update, failed=True)  # written again when the server is back
                raise
            except asyncio.CancelledError:
                self._requeue(update, failed=False)  # counted as not delivered at the end
                raise

    async def _write(self, client: Client, update: _Update) -> None:
        """The update's values in two requests, the last variable (sequence, else verdict) alone in
        the second."""
        *first, last = self._variables[update.camera_id]
        await self._write_values(client, first, update)
        if await self._write_values(client, [last], update):
            with self._lock:
                self._counts["written"] += 1

    async def _write_values(
        self, client: Client, variables: list[_Variable], update: _Update
    ) -> bool:
        """Write each variable's value; True when the server took them all."""
        writes: list[tuple[_Variable, ua.WriteValue]] = []
        for variable in variables:
            if variable.problem:
                self._refused(variable, variable.problem)
                continue
            value = variable_value(
                variable,
                update,
                self.settings.verdict_as,
                (self._first_sequence or {}).get(update.camera_id, 0),
            )
            # no timestamps: several PLC servers (S7-1500 among them) refuse a write that has one
            data = ua.DataValue(ua.Variant(value, variable.vtype))
            writes.append(
                (variable, ua.WriteValue(variable.node_id, ua.AttributeIds.Value, Value=data))
            )
        if not writes:
            return False
        results = await client.uaclient.write(
            ua.WriteParameters(NodesToWrite=[write for _, write in writes])
        )
        for (variable, _), result in zip(writes, results, strict=True):
            if result.is_good():
                self._node_errors.pop(variable.key, None)
            else:
                self._refused(variable, f"the server refused the write: {result.name}")
        return len(writes) == len(variables) and all(result.is_good() for result in results)

    async def _idle(self, client: Client) -> None:
        """Wait for an update; check the connection every IDLE_CHECK_S meanwhile."""
        assert self._wake is not None
        self._wake.clear()
        with self._lock:
            if self._pending or self._stopping.is_set():
                return
        try:
            await asyncio.wait_for(self._wake.wait(), IDLE_CHECK_S)
        except asyncio.TimeoutError:
            read = ua.ReadValueId(NodeId=SERVER_STATE, AttributeId=ua.AttributeIds.Value)
            await client.uaclient.read(ua.ReadParameters(NodesToRead=[read]))

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or until stopped."""
        assert self._loop is not None and self._wake is not None
        deadline = self._loop.time() + seconds
        while not self._stopping.is_set() and (left := deadline - self._loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _close(self, client: Client, opened: bool) -> None:
        with self._lock:
            self._connected = False
        if opened:
            try:
                await asyncio.wait_for(client.disconnect(), CLOSE_S)
                return
            except (*_LOST, RuntimeError):
                pass
        client.disconnect_socket()

    def _requeue(self, update: _Update, failed: bool) -> None:
        with self._lock:
            self._pending.appendleft(update)
            self._counts["failed_writes"] += failed

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the sink stopped
                loop.call_soon_threadsafe(wake.set)

    def _keep_latest(self) -> None:
        """Keep each camera's latest update only; the others are counted as superseded."""
        latest = {update.camera_id: update for update in self._pending}
        self._counts["superseded"] += len(self._pending) - len(latest)
        self._pending = deque(u for u in self._pending if latest[u.camera_id] is u)

    def _lost(self, exc: BaseException) -> None:
        """The connection failed or went: logged when the reason changes, not at every attempt."""
        message = f"no connection to {self.settings.endpoint}: {str(exc) or type(exc).__name__}"
        with self._lock:
            self._connected = False
            changed = message != self._last_error
            self._last_error = message
        if changed:
            log.warning("OPC UA client: no connection", extra={"error": message})

    def _refused(self, variable: _Variable, reason: str) -> None:
        """A value the server did not take: counted, logged once per variable and reason."""
        message = f"{variable.key} ({variable.node_id.to_string()}): {reason}"
        with self._lock:
            self._counts["refused"] += 1
            self._last_error = message
        if self._node_errors.get(variable.key) != message:
            self._node_errors[variable.key] = message
            log.warning("OPC UA client: a variable was not written", extra={"error": message})


def _bad(result: ua.DataValue) -> str:
    """The name of ``result``'s status when it is bad, else ''."""
    status = result.StatusCode
    return status.name if status is not None and status.is_bad() else ""


def _application_uri(settings: OpcUaClientSettings) -> str:
    """The application URI in the client certificate (a server checks that the client's matches).
    Reading the files also fails early, when the sink is built, on one that is missing or not what
    its name says (``.pem``: PEM, anything else: DER, as the client reads them)."""
    if settings.security == "none":
        return ""
    key = Path(settings.private_key_file)
    if key.suffix.lower() == ".pem":
        serialization.load_pem_private_key(key.read_bytes(), password=None)
    else:
        serialization.load_der_private_key(key.read_bytes(), password=None)
    _certificate(Path(settings.server_certificate_file))
    try:
        names = _certificate(Path(settings.certificate_file)).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        names = None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier) if names else []
    if not uris:
        raise ValueError("the client certificate has no subjectAltName URI (its application URI)")
    return str(uris[0])


def _certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if path.suffix.lower() == ".pem":
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)
