"""One ONNX Runtime session run for many callers (the cameras of a module that share a model).

Runs go one at a time, in the order the callers came: concurrent runs of one session only fight over
the same cores (on a 2-core machine, eight cameras running at once made each run 8x slower) and a
camera that asks often cannot starve one that asks rarely. There is no thread of its own: the caller
at the head of the line runs the session, for itself and for callers queued behind it, then hands
the turn to the next caller still waiting.

When the model takes a batch (a dynamic first axis on every input and output), the callers that are
waiting when a run starts, up to ``max_batch`` and with inputs of the same shape, go in one run,
each getting its own slice of the outputs. No frame is held back to fill a batch: a batch only holds
frames that arrived while the session was busy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The most callers' inputs one run takes when the model accepts a batch.
MAX_BATCH = 8


def takes_batches(session: Any) -> bool:
    """Whether every input and output of ``session`` has a free (symbolic or unknown) first axis."""
    args = [*session.get_inputs(), *session.get_outputs()]
    return all(a.shape and not isinstance(a.shape[0], int) for a in args)


@dataclass
class _Request:
    feeds: dict[str, np.ndarray]
    queued_at: float
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None
    waited_ms: float = 0.0
    run_ms: float = 0.0
    batch: int = 1

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(v.shape for v in self.feeds.values())


@dataclass(frozen=True)
class RunResult:
    """A caller's outputs, how long it waited for its turn and how long the run took (ms), and how
    many callers' inputs that run took."""

    outputs: list[np.ndarray]
    waited_ms: float
    run_ms: float
    batch: int


class SessionRunner:
    """Runs ``session`` for any number of threads, one run at a time, first come first served."""

    def __init__(self, session: Any, output_names: list[str], max_batch: int = MAX_BATCH) -> None:
        self.session = session
        self.output_names = output_names
        self.max_batch = max_batch if takes_batches(session) else 1
        self.runs = 0
        self.batched = 0  # callers served by a run that took more than one
        self._lock = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._busy = False

    def waiting(self) -> int:
        """Callers queued for a turn, the one running not counted."""
        with self._lock:
            return len(self._pending)

    def run(self, feeds: dict[str, np.ndarray]) -> RunResult:
        """The session's outputs for ``feeds`` (each input with a first axis of 1)."""
        request = _Request(feeds, time.perf_counter())
        with self._lock:
            self._pending.append(request)
            if not self._busy:
                self._busy = request.lead = True
        while True:
            if not request.lead:
                request.wake.wait()
                request.wake.clear()
                if request.finished:
                    return _result(request)
            self._run_next()
            with self._lock:
                if not request.finished:
                    continue  # still queued behind others: run on
                if self._pending:
                    after = self._pending[0]
                    after.lead = True
                    after.wake.set()
                else:
                    self._busy = False
            return _result(request)

    def _run_next(self) -> None:
        """Run the caller at the head of the line, with those behind it that fit in its batch."""
        with self._lock:
            head = self._pending.popleft()
            batch = [head]
            while (
                self._pending
                and len(batch) < self.max_batch
                and self._pending[0].shapes() == head.shapes()
            ):
                batch.append(self._pending.popleft())
        started = time.perf_counter()
        try:
            if len(batch) == 1:
                outputs = [self.session.run(self.output_names, head.feeds)]
            else:
                feeds = {
                    name: np.concatenate([r.feeds[name] for r in batch]) for name in head.feeds
                }
                joined = self.session.run(self.output_names, feeds)
                outputs = [[out[i : i + 1] for out in joined] for i in range(len(batch))]
            error = None
        except BaseException as exc:  # every caller of the run gets the error
            outputs, error = [], exc
        run_ms = (time.perf_counter() - started) * 1000
        self.runs += 1
        if len(batch) > 1:
            self.batched += len(batch)
        for i, request in enumerate(batch):
            request.outputs = outputs[i] if error is None else None
            request.error = error
            request.waited_ms = (started - request.queued_at) * 1000
            request.run_ms = run_ms
            request.batch = len(batch)
            request.finished = True
            request.wake.set()


def _result(request: _Request) -> RunResult:
    if request.error is not None:
        raise request.error
    assert request.outputs is not None
    return RunResult(request.outputs, request.waited_ms, request.run_ms, request.batch)
