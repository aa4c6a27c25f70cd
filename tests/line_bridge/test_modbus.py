"""The Modbus TCP sink against a real pymodbus server standing in for the PLC, read back with an
independent pymodbus client."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from mfgvision.line_bridge.modbus import (
    VERDICT_NG,
    VERDICT_OK,
    ModbusSink,
    sequence_number,
)
from mfgvision.line_bridge.results import CameraState, Inspection
from mfgvision.settings import ModbusSettings
from tests.line_bridge.conftest import Line, eventually
from tests.services import free_port, wait_port

UNIT = 3
BASE_1, BASE_2 = 100, 200
COIL_1 = 10


class Plc:
    """A pymodbus TCP server on its own event loop thread; stopped and started on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.device = SimDevice(
            id=UNIT,
            simdata=(
                [SimData(0, count=100, values=False, datatype=DataType.BITS)],  # coils
                [SimData(0, values=False, datatype=DataType.BITS)],  # discrete inputs
                [SimData(0, count=1000, values=0, datatype=DataType.REGISTERS)],  # holding
                [SimData(0, values=0, datatype=DataType.REGISTERS)],  # input registers
            ),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        async def serve() -> None:
            self._server = ModbusTcpServer(self.device, address=("127.0.0.1", self.port))
            await self._server.serve_forever()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(serve(),), daemon=True
        )
        self._thread.start()
        assert wait_port(self.port, 10), "the Modbus server did not start"

    def stop(self) -> None:
        assert self._loop is not None and self._server is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def plc() -> Iterator[Plc]:
    server = Plc()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def reader(plc: Plc) -> Iterator[Callable[[int, int], list[int]]]:
    client = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=2)
    assert client.connect()

    def read(address: int, count: int) -> list[int]:
        try:
            response = client.read_holding_registers(address, count=count, device_id=UNIT)
        except ConnectionException:  # the PLC restarted since the last read
            client.close()
            assert client.connect()
            response = client.read_holding_registers(address, count=count, device_id=UNIT)
        assert not response.isError(), response
        return list(response.registers)

    yield read
    client.close()


def settings(plc: Plc, **extra: object) -> ModbusSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": plc.port,
        "unit_id": UNIT,
        "timeout_s": 0.5,
        "cameras": {"cam1": BASE_1, "cam2": BASE_2},
        "defect_bits": {"scratch": 0, "dent": 3},
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    values.update(extra)
    return ModbusSettings.model_validate(values)


def test_each_inspection_writes_its_block_sequence_last(plc, reader, started) -> None:
    sink = started(ModbusSink(settings(plc)))
    line = Line(sink)
    seen: list[list[int]] = []
    for defects in [(), ("scratch",), ("dent", "scratch", "crack"), ()]:
        line.part("cam1", *defects)
        written = len(seen) + 1
        eventually(lambda n=written: sink.status()["written"] == n)
        seen.append(reader(BASE_1, 7))
    assert seen == [
        [VERDICT_OK, 0, 0, 1, 0, 0, 1],
        [VERDICT_NG, 0b1, 0, 2, 0, 1, 2],
        [VERDICT_NG, 0b1000_0000_0000_1001, 0, 3, 0, 2, 3],
        [VERDICT_OK, 0, 0, 4, 0, 2, 4],
    ]
    assert reader(BASE_2, 7) == [0] * 7, "another camera's block is untouched"
    line.part("cam2", "dent")
    eventually(lambda: reader(BASE_2, 7) == [VERDICT_NG, 0b1000, 0, 1, 0, 1, 1])
    assert sink.status()["connected"] is True


def test_without_counters_the_block_is_verdict_mask_sequence(plc, reader, started) -> None:
    sink = started(ModbusSink(settings(plc, counters=False)))
    Line(sink).part("cam1", "unknown-class")
    eventually(lambda: reader(BASE_1, 4) == [VERDICT_NG, 1 << 15, 1, 0])


def test_counters_in_little_word_order(plc, reader, started) -> None:
    sink = started(ModbusSink(settings(plc, word_order="little")))
    line = Line(sink)
    line.states["cam1"] = CameraState("cam1", inspections=0x1_0002 - 1, ng_count=0x3_0004)
    line.part("cam1", "dent")
    eventually(lambda: reader(BASE_1, 7) == [VERDICT_NG, 0b1000, 2, 1, 5, 3, 1])


def set_register(plc: Plc, address: int, value: int) -> None:
    client = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=2)
    assert client.connect()
    try:
        assert not client.write_register(address, value, device_id=UNIT).isError()
    finally:
        client.close()


def test_sequence_wraps_to_one_never_zero(plc, reader, started) -> None:
    assert [sequence_number(0, 1), sequence_number(65534, 2), sequence_number(65535, 1)] == [
        1,
        1,
        1,
    ]
    set_register(plc, BASE_1 + 6, 65533)
    sink = started(ModbusSink(settings(plc)))
    line = Line(sink)
    line.part("cam1")
    eventually(lambda: reader(BASE_1, 7)[6] == 65534)
    line.part("cam1")
    eventually(lambda: reader(BASE_1, 7)[6] == 65535)
    line.part("cam1", "scratch")
    eventually(lambda: reader(BASE_1, 7)[6] == 1)
    assert reader(BASE_1, 2) == [VERDICT_NG, 1]


def test_a_restarted_bridge_numbers_on_from_the_plc(plc, reader, started) -> None:
    first = started(ModbusSink(settings(plc, counters=False)))
    Line(first).part("cam1")
    Line(first).part("cam2")
    eventually(lambda: reader(BASE_1, 3)[2] == 1 and reader(BASE_2, 3)[2] == 1)
    first.stop()

    second = started(ModbusSink(settings(plc, counters=False)))
    line = Line(second)
    line.part("cam1", "dent")
    eventually(lambda: reader(BASE_1, 3) == [VERDICT_NG, 0b1000, 2])
    assert reader(BASE_2, 3)[2] == 1, "a camera without a new part keeps its number"


def test_trigger_coil_handshake(plc, reader, started) -> None:
    calls: list[tuple[str, float]] = []
    sink: ModbusSink

    def trigger(camera_id: str, timeout_s: float) -> Inspection:
        calls.append((camera_id, timeout_s))
        return line.part(camera_id, "scratch")

    sink = started(
        ModbusSink(
            settings(plc, trigger_coils={"cam1": COIL_1}, poll_ms=10, trigger_timeout_s=2.5),
            trigger,
        )
    )
    line = Line(sink)
    plc_client = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=2)
    assert plc_client.connect()
    try:
        for part in (1, 2):
            assert not plc_client.write_coil(COIL_1, True, device_id=UNIT).isError()
            eventually(lambda n=part: reader(BASE_1, 7)[6] == n)
            coil = plc_client.read_coils(COIL_1, count=1, device_id=UNIT)
            assert coil.bits[0] is False, "the sink resets the coil it took"
            assert reader(BASE_1, 2) == [VERDICT_NG, 1]
        time.sleep(0.2)
        assert calls == [("cam1", 2.5), ("cam1", 2.5)], "one call per rising edge"
        assert sink.status()["triggers"] == 2
    finally:
        plc_client.close()


def test_trigger_timeout_is_counted(plc, started) -> None:
    def trigger(camera_id: str, timeout_s: float) -> Inspection:
        raise TimeoutError

    sink = started(ModbusSink(settings(plc, trigger_coils={"cam2": COIL_1}, poll_ms=10), trigger))
    plc_client = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=2)
    assert plc_client.connect()
    try:
        plc_client.write_coil(COIL_1, True, device_id=UNIT)
        eventually(lambda: sink.status()["trigger_timeouts"] == 1)
    finally:
        plc_client.close()
    assert sink.status()["written"] == 0


def test_plc_restart_writes_only_the_latest_part(plc, reader, started) -> None:
    sink = started(ModbusSink(settings(plc)))
    line = Line(sink)
    line.part("cam1")
    eventually(lambda: reader(BASE_1, 7)[6] == 1)

    plc.stop()
    line.part("cam1", "scratch")  # written into a dead connection: a failed write
    eventually(lambda: sink.status()["connected"] is False)
    for _ in range(50):
        line.part("cam1", "dent")
    line.part("cam1")
    line.part("cam2", "scratch")
    time.sleep(0.3)  # a few reconnection attempts while the PLC is away
    down = sink.status()
    assert down["connected"] is False and down["failed_writes"] >= 1
    assert down["queued"] == 53 and down["written"] == 1

    plc.start()
    eventually(lambda: sink.status()["connected"] and sink.status()["queued"] == 0)
    assert reader(BASE_1, 7) == [VERDICT_OK, 0, 0, 53, 0, 51, 53], "the latest part, by number"
    assert reader(BASE_2, 7) == [VERDICT_NG, 1, 0, 1, 0, 1, 1]
    status = sink.status()
    assert status["written"] == 3 and status["superseded"] == 51 and status["reconnects"] == 1


def test_publish_does_not_wait_for_a_plc_that_does_not_answer(started) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sink = started(
        ModbusSink(ModbusSettings(host="127.0.0.1", port=port, timeout_s=20, cameras={"cam1": 0}))
    )
    connection, _ = listener.accept()
    try:
        request = connection.recv(256)  # the first request of the sink, never answered
        assert request, "the sink sent its first request"
        published = threading.Event()
        line = Line(sink)

        def publish_many() -> None:
            for _ in range(100):
                line.part("cam1", "dent")
            published.set()

        threading.Thread(target=publish_many, daemon=True).start()
        assert published.wait(10), "publish returned while the PLC held the request"
        assert sink.status()["queued"] == 100 and sink.status()["written"] == 0
    finally:
        connection.close()
        listener.close()


def test_a_full_queue_drops_the_oldest(plc, started) -> None:
    plc.stop()
    sink = started(ModbusSink(settings(plc, queue_size=5)))
    line = Line(sink)
    for _ in range(8):
        line.part("cam1")
    status = sink.status()
    assert status["dropped"] == 3 and status["queued"] == 5
    plc.start()


def test_a_refused_block_is_counted_and_the_next_written(plc, reader, started) -> None:
    sink = started(ModbusSink(settings(plc, cameras={"cam1": BASE_1, "cam3": 5000})))
    line = Line(sink)
    line.part("cam3")  # beyond the PLC's registers: an exception response
    line.part("cam1", "scratch")
    eventually(lambda: reader(BASE_1, 7)[6] == 1)
    status = sink.status()
    assert (status["refused"], status["written"], status["connected"]) == (1, 1, True)
    assert "cam3" in status["last_error"]


def test_a_refused_trigger_coil_leaves_the_writes_going(plc, reader, started) -> None:
    sink = started(ModbusSink(settings(plc, trigger_coils={"cam1": 5000}, poll_ms=10)))
    eventually(lambda: sink.status()["refused"] >= 2)
    Line(sink).part("cam1", "scratch")
    eventually(lambda: reader(BASE_1, 7)[6] == 1)
    assert sink.status()["connected"] is True and sink.status()["reconnects"] == 0


def test_unmapped_cameras_are_counted(plc, started) -> None:
    sink = started(ModbusSink(settings(plc)))
    Line(sink).part("cam9")
    assert sink.status()["unmapped"] == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"cameras": {"a": 0, "b": 6}},  # a 7-register block at 0 overlaps one at 6
        {"cameras": {"a": 65530}},
        {"defect_bits": {"scratch": 15}},  # the "other" bit
        {"defect_bits": {"scratch": 16}},
        {"trigger_coils": {"nobody": 1}},
        {"backoff_initial_s": 5, "backoff_max_s": 1},
        {"cameras": {}},
        {"colour": "red"},
    ],
)
def test_settings_refuse_inconsistent_maps(extra: dict[str, object]) -> None:
    values: dict[str, object] = {"host": "plc", "cameras": {"a": 0}, **extra}
    with pytest.raises(ValidationError):
        ModbusSettings.model_validate(values)


def test_settings_defaults() -> None:
    parsed = ModbusSettings.model_validate({"host": "plc", "cameras": {"a": 0, "b": 7}})
    assert (parsed.port, parsed.unit_id, parsed.other_bit, parsed.word_order) == (502, 1, 15, "big")


def test_the_docs_list_every_setting() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "line-integration.md").read_text("utf-8")
    section = text.split("## Modbus TCP", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert documented == list(ModbusSettings.model_fields)
