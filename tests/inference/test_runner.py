"""One session for many callers: runs take turns in arrival order, waiting callers share a batch
where the model takes one, each gets its own outputs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from mfgvision.inference.runner import SessionRunner, takes_batches
from tests.factories import wait_for
from tests.inference.graphs import PROBE_GAIN, PROBE_OFFSET, channel_mean_model


def session(tmp_path: Path, batch: int | str) -> ort.InferenceSession:
    model = channel_mean_model((batch, 3, 8, 8))
    model.graph.output[0].type.tensor_type.shape.dim[0].Clear()
    if isinstance(batch, str):
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = batch
    else:
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = batch
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class Held:
    """A real session whose runs wait until released, noting each run's batch and values."""

    def __init__(self, inner: ort.InferenceSession) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.runs: list[list[float]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def get_inputs(self) -> Any:
        return self.inner.get_inputs()

    def get_outputs(self) -> Any:
        return self.inner.get_outputs()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            assert self.release.wait(10), "never released"
            self.runs.append([float(x[0, 0, 0]) for x in feeds["data"]])
            return self.inner.run(names, feeds)
        finally:
            with self._lock:
                self.running -= 1


def feeds(value: float) -> dict[str, np.ndarray]:
    return {"data": np.full((1, 3, 8, 8), value, dtype=np.float32)}


def expected(value: float) -> float:
    return PROBE_OFFSET + value * PROBE_GAIN


def call_all(runner: SessionRunner, values: list[float], held: Held) -> dict[float, Any]:
    """Each value from a thread of its own, queued in order behind the first, then released."""
    results: dict[float, Any] = {}

    def call(value: float) -> None:
        try:
            results[value] = runner.run(feeds(value))
        except Exception as exc:
            results[value] = exc

    threads = []
    for i, value in enumerate(values):
        thread = threading.Thread(target=call, args=(value,))
        thread.start()
        threads.append(thread)
        if i == 0:
            assert wait_for(lambda: held.running == 1, 10)
        else:
            assert wait_for(lambda i=i: runner.waiting() == i, 10)
    held.release.set()
    for thread in threads:
        thread.join(20)
    return results


def test_a_fixed_batch_model_runs_one_caller_at_a_time_in_arrival_order(tmp_path: Path) -> None:
    held = Held(session(tmp_path, 1))
    runner = SessionRunner(held, ["scores"])
    assert not takes_batches(held) and runner.max_batch == 1
    values = [float(v) for v in range(1, 7)]
    results = call_all(runner, values, held)
    assert held.runs == [[v] for v in values]
    assert held.most_at_once == 1
    for value in values:
        assert results[value].outputs[0][0] == pytest.approx([expected(value)] * 3)
        assert results[value].batch == 1


def test_callers_waiting_for_a_batch_model_share_one_run_each_with_its_own_outputs(
    tmp_path: Path,
) -> None:
    held = Held(session(tmp_path, "N"))
    runner = SessionRunner(held, ["scores"], max_batch=4)
    assert takes_batches(held)
    values = [float(v) for v in range(10, 17)]
    results = call_all(runner, values, held)
    # the first alone (it started before the others came), then the waiting ones, four at most
    assert held.runs == [[10.0], [11.0, 12.0, 13.0, 14.0], [15.0, 16.0]]
    assert runner.batched == 6
    for value in values:
        assert results[value].outputs[0].shape == (1, 3)
        assert results[value].outputs[0][0] == pytest.approx([expected(value)] * 3)
    assert results[12.0].batch == 4 and results[10.0].batch == 1


def test_a_failed_run_fails_every_caller_in_it_and_the_next_run_works(tmp_path: Path) -> None:
    held = Held(session(tmp_path, "N"))
    runner = SessionRunner(held, ["no_such_output"], max_batch=8)
    results = call_all(runner, [1.0, 2.0, 3.0], held)
    assert all(isinstance(r, Exception) for r in results.values())
    runner.output_names = ["scores"]
    assert runner.run(feeds(5.0)).outputs[0][0] == pytest.approx([expected(5.0)] * 3)
