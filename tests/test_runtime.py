"""How a process of modules waits for SIGTERM and stops: all at once, one failing or hanging does not
hold up the others."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mfgvision.runtime import stop_all

REPO = Path(__file__).resolve().parents[1]

#: A process whose main thread blocks SIGTERM, so the kernel hands the signal to its other thread:
#: CPython only flags the handler for the main thread, which must wake up to run it.
SIGNAL_ON_ANOTHER_THREAD = """
import signal, sys, threading
from mfgvision.runtime import run_until_signalled

threading.Thread(target=threading.Event().wait, daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


class Service:
    def start(self):
        print("started", flush=True)

    def stop(self):
        print("stopped", flush=True)


sys.exit(run_until_signalled([Service()]))
"""


def test_sigterm_received_by_another_thread_still_stops_the_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_ON_ANOTHER_THREAD],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(0.3)  # the main thread is waiting by now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read().strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


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
