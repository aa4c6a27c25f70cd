"""CIS throughput: bare ONNX Runtime vs the whole pipeline, on the same model and 1920x1080 JPEGs.

Bare: preprocess + run + postprocess on frames already decoded in memory.
Pipeline: JPEG files -> capture thread -> inference (unbounded rate) -> annotated + raw images and DB rows.
Prints one JSON object; ``ratio`` is pipeline fps / bare fps for each model.

    python benchmarks/cis_pipeline.py edge_assets/models/demo-defects/1 [MODEL_DIR ...] --frames 120

``--sampled CAMERA_FPS:INFERENCE_FPS`` instead runs the pipeline for ``--seconds`` with a paced camera
whose frames the sampler thins, and reports the CPU the whole process used per second of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from machine import cpu_model

from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.models import ModelManager
from mfgvision.cis.pipeline import CisPipeline, ModuleParts
from mfgvision.cis.writer import OutcomeWriter
from mfgvision.inference import RuntimeOptions, load_model
from mfgvision.settings import CisSettings
from mfgvision.store.database import Database
from mfgvision.synthetic import generate_sample


def make_frames(folder: Path, count: int, size: tuple[int, int] = (1920, 1080)) -> list[Path]:
    """Generated line images at full HD, JPEG quality 90."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        image, _ = generate_sample(rng, size=size)
        path = folder / f"frame_{i:04d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def bare(model_dir: Path, frames: list[np.ndarray], n: int, threads: int | None) -> dict:
    model = load_model(model_dir, RuntimeOptions(intra_op_threads=threads))
    model.warmup()
    times = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        model.detect(frames[i % len(frames)], 0.25, 0.45)
        times.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - start
    info = {
        "family": model.family,
        "input_size": list(model.input_size),
        "providers": model.providers,
    }
    model.close()
    return {
        "fps": round(n / elapsed, 2),
        "ms_p50": round(float(np.percentile(times, 50)), 2),
        "ms_p99": round(float(np.percentile(times, 99)), 2),
        **info,
    }


def taken(_output: str, _body: dict[str, Any], on_sent: Callable[[], None]) -> None:
    """A hub that takes every message at once."""
    on_sent()


def start_pipeline(
    model_dir: Path, frames_dir: Path, threads: int | None, work: Path, **settings: Any
) -> tuple[CisPipeline, Database]:
    """The CIS on a folder camera of ``frames_dir`` with ``model_dir``, its model loaded."""
    cis_settings = CisSettings(
        camera_type="folder",
        camera_uri=str(frames_dir),
        model_name=model_dir.parent.name,
        model_version=model_dir.name,
        prob_threshold=0.25,
        retrain_interval_s=0,
        **settings,
    )
    db = Database(f"sqlite:///{work / 'bench.db'}")
    db.create_schema()
    parts = ModuleParts(
        models=ModelManager(model_dir.parent.parent),
        writer=OutcomeWriter(work / "images", db, taken, PipelineMetrics(camera_id=None), "bench"),
        send=taken,
        camera_roots=(frames_dir.parent,),  # the camera folder is read from the assets folder only
        drift_dir=work / "drift",
        intra_op_threads=threads,
    )
    parts.writer.start()
    pipe = CisPipeline(cis_settings, parts)
    pipe.start()
    if not pipe.models.wait_ready(120):
        raise SystemExit(f"model did not load: {pipe.models.error}")
    deadline = time.monotonic() + 120
    while pipe.metrics.counters.get("inferences", 0) < 3:
        if time.monotonic() > deadline:
            raise SystemExit(f"no inference within 120 s: {pipe.status()}")
        time.sleep(0.01)
    return pipe, db


def stop_pipeline(pipe: CisPipeline, db: Database) -> None:
    """Stop the camera, then the writer once it has written what the camera left, the model."""
    pipe.stop()
    pipe.writer.stop()
    pipe.parts.models.stop()
    db.close()


def pipeline(model_dir: Path, frames_dir: Path, n: int, threads: int | None, work: Path) -> dict:
    pipe, db = start_pipeline(
        model_dir,
        frames_dir,
        threads,
        work,
        camera_fps=0,
        inference_fps=0,
        store_raw_frames=True,
        store_all_inferences=True,
    )
    warm = 5
    while pipe.metrics.counters["rows_written"] < warm:
        time.sleep(0.01)
    start_rows, start = pipe.metrics.counters["rows_written"], time.perf_counter()
    while pipe.metrics.counters["rows_written"] < start_rows + n:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    rows = pipe.metrics.counters["rows_written"] - start_rows
    stages = pipe.metrics.summary()
    capture_decode_ms = pipe.grabber.stats.decode_ms if pipe.grabber else None
    stop_pipeline(pipe, db)
    latency = stages.pop("frame_to_row", {})
    return {
        "fps": round(rows / elapsed, 2),
        "stages_ms": {k: {"mean": v["mean"], "p50": v["p50"]} for k, v in stages.items()},
        "capture_thread_decode_ms": capture_decode_ms,
        "frame_to_row_ms": {"p50": latency.get("p50"), "p99": latency.get("p99")},
        "dropped": pipe.metrics.counters.get("dropped_outcomes", 0),
    }


def sampled(
    model_dir: Path,
    frames_dir: Path,
    camera_fps: float,
    inference_fps: float,
    seconds: float,
    threads: int | None,
    work: Path,
) -> dict:
    """CPU seconds per second for a camera at ``camera_fps`` thinned to ``inference_fps``."""
    pipe, db = start_pipeline(
        model_dir, frames_dir, threads, work, camera_fps=camera_fps, inference_fps=inference_fps
    )
    frames0, inferences0 = pipe.grabber.stats.frames, pipe.metrics.counters["inferences"]
    cpu0, start = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - start
    frames = pipe.grabber.stats.frames - frames0
    inferences = pipe.metrics.counters["inferences"] - inferences0
    stop_pipeline(pipe, db)
    return {
        "camera_fps": camera_fps,
        "inference_fps": inference_fps,
        "seconds": round(elapsed, 1),
        "frames_captured_per_s": round(frames / elapsed, 2),
        "inferences_per_s": round(inferences / elapsed, 2),
        "cpu_s_per_s": round(cpu / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--frames", type=int, default=120, help="timed frames per measurement")
    parser.add_argument("--distinct", type=int, default=24, help="distinct JPEG files")
    parser.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads, bare run"
    )
    parser.add_argument(
        "--pipeline-threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads in the pipeline (default: as --threads)",
    )
    parser.add_argument(
        "--sampled",
        metavar="CAMERA_FPS:INFERENCE_FPS",
        help="measure CPU use with a paced camera thinned by the sampler instead of throughput",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a --sampled run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames_dir = work / "frames"
        frames_dir.mkdir()
        paths = make_frames(frames_dir, args.distinct)
        runs = []
        if args.sampled:
            camera_fps, inference_fps = (float(x) for x in args.sampled.split(":"))
            for model_dir in args.models:
                result = sampled(
                    model_dir,
                    frames_dir,
                    camera_fps,
                    inference_fps,
                    args.seconds,
                    args.pipeline_threads or args.threads,
                    work / f"run{len(runs)}",
                )
                runs.append({"model": str(model_dir), "sampled": result})
        decoded = [] if args.sampled else [cv2.imread(str(p)) for p in paths]
        for model_dir in [] if args.sampled else args.models:
            b = bare(model_dir, decoded, args.frames, args.threads)
            threads = args.pipeline_threads or args.threads
            p = pipeline(model_dir, frames_dir, args.frames, threads, work / f"run{len(runs)}")
            runs.append(
                {
                    "model": str(model_dir),
                    "bare": b,
                    "pipeline": p,
                    "ratio": round(p["fps"] / b["fps"], 3),
                }
            )
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": cpu_model(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "frame": "1920x1080 JPEG q90",
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
