"""Modbus TCP to a PLC: each camera's verdict, sequence number and defect mask written to a block of
holding registers, and an optional trigger coil per camera read back (docs/line-integration.md).

One thread owns the pymodbus client: it writes queued blocks in order and polls the trigger coils.
Every block goes in one ``write_registers`` request with the sequence number at its highest address,
so a PLC never finds a new sequence number beside the previous part's verdict.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from mfgvision.line_bridge.results import NG, OK, CameraState, Inspection, Trigger
from mfgvision.settings import ModbusSettings, block_size

log = logging.getLogger(__name__)

#: Verdict register values.
VERDICT_UNKNOWN, VERDICT_OK, VERDICT_NG = 0, 1, 2
#: The sequence number runs 1..65535 and then starts at 1 again; 0 means "no part yet".
SEQUENCE_MAX = 0xFFFF


def sequence_number(start: int, part: int, maximum: int = SEQUENCE_MAX) -> int:
    """The number of the ``part``-th part (1, 2, ...) counted on from ``start``: 1..``maximum``,
    wrapping to 1 (0 is never written)."""
    return (start + part - 1) % maximum + 1


def defect_mask(defects: tuple[str, ...], settings: ModbusSettings) -> int:
    """The defect mask: the bit of each class, ``other_bit`` for a class without one."""
    mask = 0
    for name in defects:
        mask |= 1 << settings.defect_bits.get(name, settings.other_bit)
    return mask


def data_registers(
    state: CameraState, inspection: Inspection, settings: ModbusSettings
) -> list[int]:
    """A camera's registers for ``inspection`` from its base address up, all but the sequence
    number that follows them."""
    verdict = {OK: VERDICT_OK, NG: VERDICT_NG}.get(inspection.verdict, VERDICT_UNKNOWN)
    block = [verdict, defect_mask(inspection.defects, settings)]
    if settings.counters:
        for count in (state.inspections, state.ng_count):
            block += ModbusTcpClient.convert_to_registers(
                count & 0xFFFFFFFF, ModbusTcpClient.DATATYPE.UINT32, word_order=settings.word_order
            )
    return block


@dataclass
class _Write:
    camera_id: str
    address: int
    data: list[int]
    part: int


class ModbusSink:
    """Writes each camera's verdicts to a PLC over Modbus TCP and takes triggers from its coils."""

    name = "modbus"

    def __init__(self, settings: ModbusSettings, trigger: Trigger | None = None) -> None:
        self.settings = settings
        self._trigger = trigger
        self._pending: deque[_Write] = deque()
        self._parts: dict[str, int] = {}
        self._first_sequence: dict[str, int] = {}
        self._coil_high: dict[str, bool] = {}
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._triggers = ThreadPoolExecutor(
            max_workers=max(1, len(settings.trigger_coils)), thread_name_prefix="modbus-trigger"
        )
        self._client = ModbusTcpClient(
            settings.host, port=settings.port, timeout=settings.timeout_s, retries=0
        )
        self._connected = self._was_connected = False
        self._counts = dict.fromkeys(
            (
                "written",
                "failed_writes",
                "refused",
                "superseded",
                "dropped",
                "unmapped",
                "reconnects",
                "triggers",
                "trigger_timeouts",
                "trigger_errors",
            ),
            0,
        )
        self._last_error = ""

    def start(self) -> None:
        """Start the thread that talks to the PLC."""
        self._thread = threading.Thread(target=self._run, name="modbus-sink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and writing, and close the connection."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s * 2 + 5)
        self._triggers.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        """Queue the block of ``inspection`` as the camera's next part; never blocks. A state change
        without an inspection changes no register."""
        if inspection is None:
            return
        base = self.settings.cameras.get(state.camera_id)
        with self._wake:
            if base is None:
                self._counts["unmapped"] += 1
                return
            part = self._parts.get(state.camera_id, 0) + 1
            self._parts[state.camera_id] = part
            if len(self._pending) >= self.settings.queue_size:
                self._pending.popleft()
                self._counts["dropped"] += 1
            data = data_registers(state, inspection, self.settings)
            self._pending.append(_Write(state.camera_id, base, data, part))
            self._wake.notify()

    def status(self) -> dict[str, Any]:
        """Connection state and counters (writes, failures, skipped blocks, triggers)."""
        with self._wake:
            return {
                "connected": self._connected,
                "endpoint": f"{self.settings.host}:{self.settings.port}",
                "queued": len(self._pending),
                "last_error": self._last_error,
                **self._counts,
            }

    def _run(self) -> None:
        backoff = self.settings.backoff_initial_s
        next_poll = time.monotonic()
        while not self._stopping.is_set():
            try:
                if not self._connected:
                    self._connect()
                self._write_pending()
                if self.settings.trigger_coils and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.settings.poll_ms / 1000
                    self._poll_triggers()
            except (ModbusException, OSError) as exc:
                self._lost(exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_s)
                continue
            backoff = self.settings.backoff_initial_s
            self._idle(next_poll)

    def _idle(self, next_poll: float) -> None:
        with self._wake:
            if self._pending or self._stopping.is_set():
                return
            wait = next_poll - time.monotonic() if self.settings.trigger_coils else None
            self._wake.wait(wait if wait is None else max(0.0, wait))

    def _connect(self) -> None:
        if not self._client.connect():
            raise ConnectionError(f"cannot connect to {self.settings.host}:{self.settings.port}")
        if not self._first_sequence:
            self._first_sequence = self._read_sequences()
        with self._wake:
            self._counts["reconnects"] += self._was_connected
            self._was_connected = self._connected = True
            self._coil_high.clear()
            self._keep_latest()
        log.info("Modbus: connected to %s:%s", self.settings.host, self.settings.port)

    def _read_sequences(self) -> dict[str, int]:
        """Each camera's sequence number in the PLC when the sink first connects: numbering goes on
        from it, so a restarted bridge never repeats the number the PLC saw last."""
        offset = block_size(self.settings.counters) - 1
        found = {}
        for camera_id, base in self.settings.cameras.items():
            response = self._client.read_holding_registers(
                base + offset, count=1, device_id=self.settings.unit_id
            )
            if response.isError():
                self._error(f"{camera_id}: the PLC refused register {base + offset}: {response}")
            found[camera_id] = 0 if response.isError() else int(response.registers[0])
        return found

    def _keep_latest(self) -> None:
        """After an outage only each camera's latest block is written: the parts in between are
        counted as superseded and the PLC sees the jump in the sequence number."""
        latest = {write.camera_id: write for write in self._pending}
        self._counts["superseded"] += len(self._pending) - len(latest)
        self._pending = deque(write for write in self._pending if latest[write.camera_id] is write)

    def _write_pending(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                if not self._pending:
                    return
                write = self._pending[0]
            sequence = sequence_number(self._first_sequence[write.camera_id], write.part)
            try:
                response = self._client.write_registers(
                    write.address, [*write.data, sequence], device_id=self.settings.unit_id
                )
            except (ModbusException, OSError):
                self._count("failed_writes")
                raise
            refused = response.isError()
            with self._wake:
                if self._pending and self._pending[0] is write:
                    self._pending.popleft()
                self._counts["written"] += not refused
            if refused:
                self._refused(
                    f"{write.camera_id}: the PLC refused registers {write.address}: {response}"
                )

    def _poll_triggers(self) -> None:
        for camera_id, coil in self.settings.trigger_coils.items():
            response = self._client.read_coils(coil, count=1, device_id=self.settings.unit_id)
            if response.isError():
                self._refused(f"{camera_id}: the PLC refused reading coil {coil}: {response}")
                continue
            high = bool(response.bits[0])
            if high and not self._coil_high.get(camera_id, False):
                self._take_trigger(camera_id, coil)
            else:
                self._coil_high[camera_id] = high

    def _take_trigger(self, camera_id: str, coil: int) -> None:
        """Reset the coil (the PLC's sign that the trigger was taken), then inspect in a worker."""
        self._coil_high[camera_id] = True
        response = self._client.write_coil(coil, False, device_id=self.settings.unit_id)
        if response.isError():
            self._refused(f"{camera_id}: the PLC refused resetting coil {coil}: {response}")
            return
        self._coil_high[camera_id] = False
        with self._wake:
            self._counts["triggers"] += 1
        if self._trigger is not None:
            self._triggers.submit(self._inspect, self._trigger, camera_id)

    def _inspect(self, trigger: Trigger, camera_id: str) -> None:
        try:
            trigger(camera_id, self.settings.trigger_timeout_s)
        except TimeoutError:
            self._count("trigger_timeouts")
            log.warning("Modbus: trigger of %s got no inspection in time", camera_id)
        except Exception as exc:  # a failing trigger must not stop the next ones
            self._count("trigger_errors")
            self._error(f"trigger of {camera_id} failed: {exc}")

    def _lost(self, exc: Exception) -> None:
        self._client.close()
        with self._wake:
            self._connected = False
        self._error(f"no connection to the PLC: {exc}")

    def _refused(self, message: str) -> None:
        """A request the PLC answered with an exception: counted, and the next one goes on."""
        self._count("refused")
        self._error(message)

    def _count(self, key: str) -> None:
        with self._wake:
            self._counts[key] += 1

    def _error(self, message: str) -> None:
        with self._wake:
            changed = message != self._last_error
            self._last_error = message
        if changed:
            log.warning("Modbus: %s", message)
