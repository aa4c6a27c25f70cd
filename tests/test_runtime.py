"""Stopping a process's modules: all at once, one failing or hanging does not hold up the others."""

from __future__ import annotations

import threading

from mfgvision.runtime import stop_all


class Module:
    """A service whose stop waits at a barrier: it only gets through when every module stops at
    the same time."""

    def __init__(self, barrier: threading.Barrier, fail: bool = False, hang: bool = False) -> None:
        self.barrier = barrier
        self.fail = fail
        self.hang = hang
        self.stopped = threading.Event()
        self.release = threading.Event()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.barrier.wait(timeout=5)
        if self.hang:
            self.release.wait(30)
        if self.fail:
            raise RuntimeError("stop failed")
        self.stopped.set()


def test_every_module_stops_at_the_same_time() -> None:
    barrier = threading.Barrier(12)
    modules = [Module(barrier) for _ in range(12)]
    stop_all(modules, wait_s=10)  # one by one, the first would wait at the barrier in vain
    assert all(m.stopped.is_set() for m in modules)
    assert not barrier.broken


def test_a_module_that_fails_or_hangs_does_not_hold_up_the_others(caplog) -> None:
    barrier = threading.Barrier(4)
    failing, hanging = Module(barrier, fail=True), Module(barrier, hang=True)
    good = [Module(barrier), Module(barrier)]
    try:
        stop_all([failing, *good, hanging], wait_s=1)
        assert all(m.stopped.is_set() for m in good)
        assert not failing.stopped.is_set() and not hanging.stopped.is_set()
        assert "service did not stop cleanly" in caplog.text
        assert "services still stopping" in caplog.text
    finally:
        hanging.release.set()
