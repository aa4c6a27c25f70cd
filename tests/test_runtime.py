"""How a process of modules waits for SIGTERM and stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

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
