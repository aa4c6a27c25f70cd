"""Dashboard API latency with 100k inference rows in SQLite: p50/p95 per endpoint over HTTP.

Seeds a SQLite database with ``--rows`` inferences of 4 cameras spread over the last ``--hours``
(about 30 % NG with 1-2 detections each), starts the dashboard (waitress, as in production) and
requests each endpoint ``--requests`` times on one keep-alive connection, after one warm-up
request. Run it with the machine otherwise idle:

    python benchmarks/dashboard_api.py                 # 100k rows over 24 h
    python benchmarks/dashboard_api.py --rows 20000    # a quicker look
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mfgvision.dashboard.server import DashboardServer
from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord
from mfgvision.web.auth import AuthConfig

LABELS = ["scratch", "hole", "spot"]


def seed(db: Database, rows: int, hours: float, now: datetime) -> list[str]:
    """Write ``rows`` inferences; returns a few unique ids for the detail endpoint."""
    rng = random.Random(0)
    span = timedelta(hours=hours)
    batch: list[InferenceRecord] = []
    ids = []
    for i in range(rows):
        camera = f"line{i % 4 + 1}-top"
        created = now - span + span * (i / rows)
        detections = []
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 2)):
                k = rng.randrange(len(LABELS))
                box = Box(10.0, 20.0, 110.0, 220.0)
                detections.append(
                    Detection(k, LABELS[k], rng.uniform(0.5, 0.99), box, box.normalised(640, 480))
                )
        record = InferenceRecord(
            str(uuid.uuid4()),
            created,
            camera,
            camera,
            "demo-defects",
            "1",
            rng.uniform(20, 40),
            640,
            480,
            detections,
            f"{camera}-{i}-raw.jpg",
            None,
            f"{camera}-{i}-annotated.jpg",
            None,
        )
        batch.append(record)
        if i % 997 == 0:
            ids.append(record.unique_id)
        if len(batch) == 2000:
            db.write(batch)
            batch = []
    db.write(batch)
    return ids


def measure(host: str, port: int, path: str, n: int) -> tuple[float, float, int]:
    """p50 and p95 milliseconds of ``n`` GETs of ``path`` (after one warm-up), and the status."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    times = []
    status = 0
    for i in range(n + 1):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - start) * 1000
        status = response.status
        if i:
            times.append(elapsed)
    conn.close()
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)], status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = Database(f"sqlite:///{root / 'bench.db'}")
        db.create_schema()
        now = datetime.now(timezone.utc)
        started = time.perf_counter()
        ids = seed(db, args.rows, args.hours, now)
        seed_s = time.perf_counter() - started
        server = DashboardServer(db, root / "images", port=0, auth=AuthConfig())
        server.start()
        time.sleep(0.5)
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("GET", "/api/inferences?limit=50")
        cursor = json.loads(conn.getresponse().read())["next_cursor"]
        conn.close()
        since = (now - timedelta(hours=6)).isoformat().replace("+00:00", "Z")
        endpoints = [
            "/api/overview?window=hour",
            "/api/overview?window=day",
            "/api/stats?window=hour",
            "/api/stats?window=shift",
            "/api/stats?window=day",
            f"/api/stats?window=custom&from={since}",
            "/api/stats?window=day&camera=line2-top",
            "/api/inferences?limit=50",
            f"/api/inferences?limit=50&cursor={cursor}",
            "/api/inferences?camera=line3-top&verdict=NG",
            "/api/inferences?label=hole",
            "/api/inferences?label=spot&camera=line1-top&verdict=NG",
            f"/api/inferences/{ids[len(ids) // 2]}",
            "/api/cameras",
            "/api/labels",
            "/healthz",
        ]
        results = []
        for path in endpoints:
            p50, p95, status = measure("127.0.0.1", server.port, path, args.requests)
            results.append({"endpoint": path, "status": status, "p50_ms": p50, "p95_ms": p95})
        server.stop()

    if args.json:
        print(json.dumps({"rows": args.rows, "seed_s": seed_s, "results": results}, indent=2))
        return 0
    print(
        f"{args.rows} rows over {args.hours:g} h (seeded in {seed_s:.1f} s); "
        f"{args.requests} requests each; Python {platform.python_version()}, {platform.machine()}"
    )
    print(f"{'endpoint':62s} {'status':>6s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for r in results:
        name = r["endpoint"] if len(r["endpoint"]) <= 62 else r["endpoint"][:59] + "..."
        print(f"{name:62s} {r['status']:>6d} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
