"""What the line bridge tests share: a sink that records what the bridge hands it, a line that feeds a
sink parts, sinks started and stopped around a test, and ``inference`` message bodies."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from mfgvision.line_bridge.results import CameraState, Inspection, Sink
from tests.cis.conftest import frames_dir, models_dir  # noqa: F401  (fixtures)


class RecordingSink:
    """Keeps every ``publish`` call, in order."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[CameraState, Inspection | None]] = []
        self.started = self.stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        with self._lock:
            self.calls.append((state, inspection))

    def status(self) -> dict[str, Any]:
        return {"published": len(self.calls)}

    def inspections(self) -> list[Inspection]:
        with self._lock:
            return [i for _, i in self.calls if i is not None]

    def states(self) -> list[CameraState]:
        with self._lock:
            return [s for s, i in self.calls if i is None]


def inference_body(
    camera_id: str = "cam-1", labels: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """An ``inference`` message body as the CIS sends it (the fields the bridge reads)."""
    return {
        "unique_id": str(uuid.uuid4()),
        "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "camera_id": camera_id,
        "location": "line1",
        "position": "top",
        "object_detected": bool(labels),
        "detected_objects": [{"label": label, "probability": 0.9} for label in labels],
        **extra,
    }


class Line:
    """What the bridge's core does for a sink: records each inspection, then publishes it."""

    def __init__(self, sink: Sink, prefix: str = "") -> None:
        self.sink = sink
        self.prefix = prefix
        self.states: dict[str, CameraState] = {}
        self.parts = 0

    def part(self, camera_id: str, *defects: str, rules: tuple[str, ...] = ()) -> Inspection:
        """The next part of ``camera_id`` (NG with ``defects``, else OK; ``rules`` the names of
        the rules that fired), one second after the last."""
        self.parts += 1
        inspection = Inspection(
            camera_id=camera_id,
            location="line1",
            position="top",
            unique_id=f"{self.prefix}{camera_id}-{self.parts}",
            verdict="NG" if defects else "OK",
            defects=tuple(sorted(defects)),
            created=datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)
            + timedelta(seconds=self.parts),
            rules=rules,
        )
        state = self.states.setdefault(camera_id, CameraState(camera_id))
        state.record(inspection)
        self.sink.publish(dataclasses.replace(state), inspection)
        return inspection

    def module_state(self, camera_id: str, module_state: str) -> None:
        """The camera's module changes state, without a new inspection."""
        state = self.states.setdefault(camera_id, CameraState(camera_id))
        state.state = module_state
        self.sink.publish(dataclasses.replace(state), None)


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for ``check`` to hold; fail the test when it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


AnySink = TypeVar("AnySink", bound=Sink)


@pytest.fixture
def started() -> Iterator[Callable[[AnySink], AnySink]]:
    """Starts a sink for the test and stops it after."""
    sinks: list[Sink] = []

    def start(sink: AnySink) -> AnySink:
        sink.start()
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()
