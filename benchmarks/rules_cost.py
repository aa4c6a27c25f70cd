"""What judging one inference by a camera's zones and rules costs on the inference thread
(``RuleBook.judge``, right after NMS), in milliseconds per frame.

A 1280x720 camera with ``--zones`` concave star-shaped zones of ``--points`` points each on a grid,
one rule per zone (defect, count, absent and required_with in turn, membership by box centre and by
overlap in turn) and ``--detections`` boxes of five classes per frame, scattered at random (a fixed
seed; every frame's boxes differ). Prints one JSON line: the settings, the machine, and the mean,
p50 and p99 per frame, with the cost of the same frames without rules beside it.

    python benchmarks/rules_cost.py --zones 20 --detections 50 --frames 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mfgvision.cis.rules import RuleBook
from mfgvision.inference.types import Box, Detection
from mfgvision.settings import CisSettings, parse_settings

W, H = 1280, 720
CLASSES = ("scratch", "hole", "screw", "person", "helmet")
KINDS = ("defect", "count", "absent", "required_with")


def zones(count: int, points: int) -> dict[str, list[list[float]]]:
    """``count`` star-shaped (concave) zones of ``points`` points, on a grid over the frame."""
    columns = math.ceil(math.sqrt(count * W / H))
    rows = math.ceil(count / columns)
    cell_w, cell_h = W / columns, H / rows
    found = {}
    for k in range(count):
        cx, cy = (k % columns + 0.5) * cell_w, (k // columns + 0.5) * cell_h
        found[f"zone{k}"] = [
            [
                round(cx + 0.45 * cell_w * math.cos(a) * (1.0 if i % 2 else 0.55), 2),
                round(cy + 0.45 * cell_h * math.sin(a) * (1.0 if i % 2 else 0.55), 2),
            ]
            for i in range(points)
            for a in [2 * math.pi * i / points]
        ]
    return found


def rules(zone_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One rule per zone, the kinds and memberships in turn."""
    found = {}
    for k, zone in enumerate(zone_names):
        kind = KINDS[k % len(KINDS)]
        rule: dict[str, Any] = {
            "kind": kind,
            "classes": [CLASSES[k % 4]],
            "zones": [zone],
            "membership": "overlap" if k % 2 else "centre",
            "min_probability": 0.3,
        }
        if kind == "count":
            rule.update(min=1, max=3)
        if kind == "required_with":
            rule["with_classes"] = ["helmet"]
        found[f"rule{k}"] = rule
    return found


def frames(count: int, detections: int, rng: np.random.Generator) -> list[list[Detection]]:
    """``count`` frames of ``detections`` random boxes each (3 to 15 % of the frame wide)."""
    out = []
    for _ in range(count):
        frame = []
        for _ in range(detections):
            w, h = rng.uniform(0.03, 0.15) * W, rng.uniform(0.03, 0.15) * H
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            box = Box(x, y, x + w, y + h)
            label = int(rng.integers(len(CLASSES)))
            frame.append(
                Detection(
                    label, CLASSES[label], float(rng.uniform(0.3, 1.0)), box, box.normalised(W, H)
                )
            )
        out.append(frame)
    return out


def per_frame_ms(book: RuleBook, batch: list[list[Detection]], repeats: int) -> list[float]:
    """Milliseconds of each ``judge`` call over ``repeats`` passes of ``batch``."""
    for detections in batch[:50]:  # warm up
        book.judge(detections)
    times = []
    for _ in range(repeats):
        for detections in batch:
            start = time.perf_counter()
            book.judge(detections)
            times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "mean_ms": round(statistics.fmean(ordered), 4),
        "p50_ms": round(ordered[len(ordered) // 2], 4),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zones", type=int, default=20)
    parser.add_argument("--points", type=int, default=8, help="points per zone (3..64)")
    parser.add_argument("--detections", type=int, default=50)
    parser.add_argument("--frames", type=int, default=2000, help="different frames judged")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    drawn = zones(args.zones, args.points)
    settings = parse_settings(
        CisSettings, {"zones_frame": [W, H], "zones": drawn, "rules": rules(list(drawn))}
    )
    assert isinstance(settings, CisSettings)
    batch = frames(args.frames, args.detections, np.random.default_rng(7))
    with_rules = RuleBook(settings)
    fired = sum(len(with_rules.judge(d).fired or ()) for d in batch) / len(batch)
    result = {
        "benchmark": "rules_cost",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "numpy": np.__version__,
        "zones": args.zones,
        "points_per_zone": args.points,
        "rules": len(settings.rules),
        "detections": args.detections,
        "frames": args.frames * args.repeats,
        "fired_per_frame": round(fired, 2),
        **summary(per_frame_ms(with_rules, batch, args.repeats)),
        "without_rules": summary(per_frame_ms(RuleBook(CisSettings()), batch, args.repeats)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
