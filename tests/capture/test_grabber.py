"""The capture thread's trigger waits and its watchdog for reads that never return."""

from __future__ import annotations

import threading
import time

import numpy as np

from mfgvision.capture.base import FrameSource, NoFrameYet, SourceError
from mfgvision.capture.grabber import FrameGrabber
from tests.capture.conftest import wait_for


class ScriptedSource(FrameSource):
    """Reads follow a script: 'f' = a frame, 'wait' = NoFrameYet, 'hang' = block until released."""

    def __init__(self, script: list[str], name: str = "src", interruptible: bool = True) -> None:
        self.script = list(script)
        self.name = name
        self.interruptible = interruptible
        self.release = threading.Event()
        self.opens = self.closes = self.reads = 0

    @property
    def description(self) -> str:
        return self.name

    def open(self) -> None:
        self.opens += 1

    def read(self):
        self.reads += 1
        step = self.script.pop(0) if self.script else "f"
        if step == "wait":
            time.sleep(0.01)
            raise NoFrameYet
        if step == "hang":
            self.release.wait()
            raise SourceError("read aborted")
        time.sleep(0.01)
        return f"{self.name}-{self.reads}", None, np.zeros((4, 4, 3), np.uint8)

    def close(self) -> None:
        self.closes += 1

    def interrupt(self) -> None:
        if self.interruptible:
            self.release.set()


def test_waiting_for_a_trigger_is_not_a_failure():
    src = ScriptedSource(["wait"] * 20 + ["f"])
    grabber = FrameGrabber(src, fps=0, keep=16)
    grabber.start()
    frame = grabber.next_frame(timeout=30)
    assert frame is not None and frame.name == "src-21"
    assert grabber.stats.reconnects == 0 and grabber.stats.state == "streaming"
    grabber.stop()
    assert src.opens == src.closes == 1


def test_watchdog_aborts_a_blocked_read_and_the_source_reconnects(caplog):
    src = ScriptedSource(["f", "hang"])
    grabber = FrameGrabber(src, fps=0, backoff=(0.01, 0.05), stall_timeout=0.3)
    grabber.start()
    assert wait_for(lambda: src.opens >= 2, timeout=30)  # the read was aborted, then reopened
    assert wait_for(lambda: grabber.stats.frames >= 5, timeout=30)
    assert grabber.stats.reconnects == 1 and grabber.stats.state == "streaming"
    assert "camera blocked" in caplog.text
    grabber.stop()
    assert not grabber._thread.is_alive()


def test_watchdog_replaces_a_read_that_cannot_be_aborted():
    stuck = ScriptedSource(["f", "hang"], name="stuck", interruptible=False)
    fresh: list[ScriptedSource] = []

    def reopen() -> FrameSource:
        fresh.append(ScriptedSource([], name=f"fresh{len(fresh)}"))
        return fresh[-1]

    before = threading.active_count()
    grabber = FrameGrabber(stuck, fps=0, stall_timeout=0.3, reopen=reopen)
    grabber.start()
    assert wait_for(lambda: bool(fresh) and grabber.stats.frames >= 3, timeout=30)
    frame = grabber.next_frame(timeout=10)
    assert frame is not None and frame.name.startswith("fresh0")
    assert grabber.source is fresh[0] and grabber.stats.reconnects == 1
    assert grabber.stats.state == "streaming"
    # the blocked read returns at last: its thread ends without publishing anything
    stuck.release.set()
    assert wait_for(lambda: stuck.closes == 1, timeout=30)
    grabber.stop()
    assert wait_for(lambda: threading.active_count() <= before, timeout=30)
    assert len(fresh) == 1 and fresh[0].closes == 1
