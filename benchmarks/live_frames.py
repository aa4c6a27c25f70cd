"""Live view cost: what the CIS writer adds per frame, and what the dashboard spends per streamed frame.

CIS side, per inferred frame: the look at the watch mark (one ``stat``), and while someone watches,
the atomic replacement of the live frame with JPEG bytes the writer already has (no encoding): the
annotated image at the size the pipeline draws it (960x540 from a 1920x1080 camera) or, for a frame
that is not stored, the camera's own full-HD JPEG (a camera without JPEG output pays one encode of
that frame). For scale, the atomic fsync'd write of the same
annotated image, which the writer does for every stored image anyway.

Dashboard side, once per new frame (shared by every viewer of the camera): scaling to the live
view's ``max_width`` and re-encoding at its JPEG quality (``live_jpeg``), and the bytes each viewer
then receives per frame.

    python benchmarks/live_frames.py --frames 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfgvision.capture.jpeg import encode_jpeg
from mfgvision.dashboard.live import LiveConfig, live_jpeg
from mfgvision.inference.annotate import draw_detections
from mfgvision.inference.types import Box, Detection
from mfgvision.store.images import write_atomic
from mfgvision.store.live import is_watched, mark_watched, write_live_frame
from mfgvision.synthetic import generate_sample

CAMERA = "line1-top"


def frames(count: int) -> list[tuple[bytes, bytes, np.ndarray]]:
    """(camera JPEG 1920x1080 q90, annotated JPEG 960x540 q90, the frame decoded) per generated
    frame."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(count):
        image, boxes = generate_sample(rng, size=(1920, 1080))
        camera = encode_jpeg(image, 90)
        half = cv2.resize(image, (960, 540), interpolation=cv2.INTER_AREA)
        detections = [
            Detection(k, "defect", 0.9, Box(x1 / 2, y1 / 2, x2 / 2, y2 / 2), Box(0, 0, 1, 1))
            for k, x1, y1, x2, y2 in boxes
        ]
        out.append((camera, encode_jpeg(draw_detections(half, detections), 90), image))
    return out


def timed(run: Callable[[int], Any], n: int) -> dict[str, float]:
    """p50, p95 and mean milliseconds of ``run(i)`` for ``i`` in ``range(n)``, after one warm-up."""
    run(0)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        run(i)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 4),
        "mean_ms": round(statistics.fmean(samples), 4),
    }


def streamed(jpegs: list[bytes], width: int, quality: int, fps: float, n: int) -> dict[str, float]:
    """What the dashboard spends making one stream frame of each of ``jpegs``, and its size."""
    sizes = [len(live_jpeg(j, width, quality) or b"") for j in jpegs]
    cost = timed(lambda i: live_jpeg(jpegs[i % len(jpegs)], width, quality), n)
    kb = statistics.fmean(sizes) / 1024
    return {**cost, "kB_per_frame": round(kb, 1), f"kB_per_s_at_{fps:g}_fps": round(kb * fps, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="timed frames per measurement")
    parser.add_argument("--dir", type=Path, default=None, help="folder to write in (default: tmp)")
    args = parser.parse_args()
    pool = frames(12)
    n = args.frames
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        live = Path(tmp) / "live"
        images = Path(tmp) / "images"
        images.mkdir()
        cis = {"unwatched: stat of the watch mark": timed(lambda i: is_watched(live, CAMERA), n)}
        mark_watched(live, CAMERA)

        def watched(data: bytes) -> None:
            if is_watched(live, CAMERA):
                write_live_frame(live, CAMERA, data)

        cis["watched: annotated 960x540 frame"] = timed(lambda i: watched(pool[i % 12][1]), n)
        cis["watched: camera's 1920x1080 JPEG"] = timed(lambda i: watched(pool[i % 12][0]), n)
        cis["watched: a raw (not JPEG) camera's frame, encoded"] = timed(
            lambda i: watched(encode_jpeg(pool[i % 12][2], 90)), n
        )
        cis["for scale: stored annotated image (fsync)"] = timed(
            lambda i: write_atomic(images / f"a{i}.jpg", pool[i % 12][1]), n
        )
    config = LiveConfig()
    dashboard = {}
    for width in (config.max_width, 640):
        for name, index in (("annotated 960x540", 1), ("camera 1920x1080", 0)):
            dashboard[f"{name} -> {width} px, q{config.quality}"] = streamed(
                [f[index] for f in pool], width, config.quality, config.max_fps, n
            )
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "frames": n,
        "annotated_kB": round(statistics.fmean(len(f[1]) for f in pool) / 1024, 1),
        "camera_kB": round(statistics.fmean(len(f[0]) for f in pool) / 1024, 1),
        "cis_per_frame": cis,
        "dashboard_per_new_frame": dashboard,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
