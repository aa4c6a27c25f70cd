"""What the CIS hot path pays for its metrics: ``PipelineMetrics.time()`` per stage observation and,
where it exists, ``PipelineMetrics.detected()`` per inference, in microseconds.

Run it on two checkouts (``PYTHONPATH=<checkout> python benchmarks/metrics_overhead.py``) to compare
code before and after a change; it prints one JSON object.

    python benchmarks/metrics_overhead.py --calls 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

from mfgvision.cis.metrics import PipelineMetrics

#: The stages one stored frame is timed in: ``write_file`` twice (the annotated and the raw image).
STAGES = (
    "preprocess",
    "infer",
    "postprocess",
    "annotate",
    "encode",
    "write_file",
    "write_file",
    "db_write",
    "frame_to_row",
)


def per_call_us(call: Callable[[int], None], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean microseconds of one ``call(i)``."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(calls):
            call(i)
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    metrics = PipelineMetrics()
    stages = len(STAGES)
    time_us = per_call_us(
        lambda i: metrics.time(STAGES[i % stages], 1.0 + i % 7), args.calls, args.repeats
    )
    count_us = per_call_us(lambda _i: metrics.count("inferences"), args.calls, args.repeats)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "time_us": round(time_us, 3),
        "count_us": round(count_us, 3),
    }
    frame_us = stages * time_us + count_us
    detected = getattr(metrics, "detected", None)
    if detected is not None:
        labels = ["scratch", "hole"]
        detected_us = per_call_us(lambda _i: detected(labels, "NG"), args.calls, args.repeats)
        result["detected_us"] = round(detected_us, 3)
        frame_us += detected_us
    result["per_stored_frame_us"] = round(frame_us, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
