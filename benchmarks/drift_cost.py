"""What drift detection costs beside inference: CPU time per checked frame against the model's.

A fixed camera over a generated line (1280x720 frames with sensor noise and a pixel of jitter) is
inferred frame by frame, as the CIS does it (``Model.detect``, ONNX Runtime without spinning), and
each frame is then handed to a running ``DriftMonitor`` with a reference, which checks it (camera
alignment, image quality, model behaviour). CPU time is the whole process's (``time.process_time``:
ONNX Runtime's and OpenCV's threads included). Prints one JSON object; ``share_at_defaults`` is the
drift check's CPU over the inference CPU of the frames it stands for at the default settings
(``inference_fps`` 1, ``drift_every_s`` 5: one check per 5 inferences), plus the hand-over on
every frame.

    python benchmarks/drift_cost.py [MODEL_DIR] --frames 60
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from machine import describe

from mfgvision.capture.base import Frame
from mfgvision.cis.drift.monitor import DriftMonitor
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.outcome import Outcome
from mfgvision.cis.rules import RuleBook
from mfgvision.inference import Model, RuntimeOptions, load_model
from mfgvision.settings import CisSettings
from mfgvision.synthetic import generate_sample

W, H = 1280, 720
DEFAULTS = CisSettings()


def make_frames(count: int, jitter: int = 2) -> list[np.ndarray]:
    """``count`` views of one generated scene, each shifted by up to ``jitter`` px, with noise."""
    rng = np.random.default_rng(11)
    scene, _ = generate_sample(rng, size=(W + 2 * jitter, H + 2 * jitter))
    frames = []
    for _ in range(count):
        x, y = rng.integers(0, 2 * jitter + 1, 2)
        view = scene[y : y + H, x : x + W].astype(np.float32) + rng.normal(0, 3, (H, W, 3))
        frames.append(np.clip(view, 0, 255).astype(np.uint8))
    return frames


def infer(model: Model, image: np.ndarray, s: CisSettings) -> Outcome:
    """One frame through the model, as the inference thread hands it on."""
    result = model.detect(image, s.prob_threshold, s.iou_threshold)
    frame = Frame(0, datetime.now(timezone.utc), "bench.png", W, H, image=image)
    judgement = RuleBook(s).judge(result.detections)
    return Outcome(
        str(uuid.uuid4()),
        frame,
        image,
        result,
        result,
        s,
        model.name,
        model.version,
        None,
        0.0,
        judgement,
    )


def checked(monitor: DriftMonitor, outcome: Outcome) -> None:
    """Hand a frame to the drift thread and wait until it is checked."""
    done = monitor.status()["checks"]
    monitor.observe(outcome)
    while monitor.status()["checks"] == done:
        time.sleep(0.001)


def measure(model_dir: Path, count: int, threads: int | None, work: Path) -> dict[str, Any]:
    model = load_model(model_dir, RuntimeOptions(intra_op_threads=threads, spin_wait=False))
    model.warmup()
    frames = make_frames(count)
    # Every frame handed over is checked; a short baseline and window, so the model's figures are
    # computed at every check too (kept as counts, they cost the same at any size).
    s = CisSettings(drift_every_s=1e-6, drift_baseline=20, drift_window=20)
    infer_cpu, outcomes = [], []
    for image in frames:
        t0 = time.process_time()
        outcomes.append(infer(model, image, s))
        infer_cpu.append(time.process_time() - t0)
    metrics = PipelineMetrics()
    monitor = DriftMonitor(work / "drift", lambda _o, _b, on_sent: on_sent(), s, metrics)
    monitor.start()
    with_reference(monitor, outcomes[0])
    for outcome in outcomes[:25]:  # warm-up: the baseline and window fill
        checked(monitor, outcome)
    t0 = time.process_time()
    for outcome in outcomes:
        checked(monitor, outcome)
    check_cpu = (time.process_time() - t0) / len(outcomes)
    wall = metrics.summary()["drift_check"]
    monitor.apply(
        s.model_copy(update={"drift_every_s": 3600})
    )  # observe only counts: the hand-over's cost
    t0 = time.process_time()
    for outcome in outcomes:
        monitor.observe(outcome)
    observe_cpu = (time.process_time() - t0) / len(outcomes)
    figures = monitor.status()["figures"]
    monitor.stop()
    model.close()
    per_check = DEFAULTS.inference_fps * DEFAULTS.drift_every_s
    infer_ms = 1000 * float(np.mean(infer_cpu))
    check_ms, observe_ms = 1000 * check_cpu, 1000 * observe_cpu
    return {
        "model": str(model_dir),
        "input_size": list(model.input_size),
        "inference_cpu_ms": {
            "mean": round(infer_ms, 2),
            "p50": round(1000 * float(np.median(infer_cpu)), 2),
        },
        "drift_check_cpu_ms": round(check_ms, 2),
        "drift_check_wall_ms": {"mean": wall["mean"], "p50": wall["p50"]},
        "observe_cpu_us": round(1000 * observe_ms, 1),
        "inferences_per_check_at_defaults": per_check,
        "share_at_defaults": round((check_ms / per_check + observe_ms) / infer_ms, 4),
        "share_if_every_frame_is_checked": round((check_ms + observe_ms) / infer_ms, 4),
        "last_figures": figures,
    }


def with_reference(monitor: DriftMonitor, outcome: Outcome) -> None:
    """Take ``outcome``'s frame as the reference (``set_reference`` waits for the next frame)."""
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(monitor.set_reference, 10)
        while not answer.done():
            monitor.observe(outcome)
            time.sleep(0.005)
        answer.result()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "model", nargs="?", type=Path, default=Path("edge_assets/models/demo-defects/1")
    )
    parser.add_argument("--frames", type=int, default=60, help="frames inferred and checked")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.model, args.frames, args.threads, Path(tmp))
    machine = describe()
    print(json.dumps({"machine": machine, "frame": f"{W}x{H}", **result}, indent=2))


if __name__ == "__main__":
    main()
