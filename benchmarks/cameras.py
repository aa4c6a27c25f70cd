"""Many cameras in one CIS module: memory, CPU per inference, rate per camera and latency.

For each count of ``--cameras``, a process of its own runs one CIS module (over the in-process hub, as
``mfgvision demo`` runs it) with that many folder cameras of 1920x1080 JPEGs, each camera delivering
``--rate`` frames per second (the cameras started 1 / (rate x cameras) s apart, as free-running
cameras deliver at their own phases; ``--aligned`` starts them at once, a burst of frames from every
camera at the same instant), every frame inferred and stored (``store_all_inferences``); a second
module on the same hub takes the ``inference`` messages, as LineBridge does. After the models serve
and a warm-up, it measures for ``--seconds``:

* ``rss_mib`` / ``unique_mib``: the process's resident and private (not shared) memory at the end;
* ``cpu_s_per_inference``: the process's CPU seconds over the inferences made;
* ``rate_min_per_camera`` / ``rate_mean_per_camera``: inferences per second of the slowest camera
  and of the average one;
* ``verdict_p50_ms`` / ``verdict_p99_ms``: frame captured → its ``inference`` message received;
* ``row_p50_ms`` / ``row_p99_ms``: frame captured → its row committed;
* ``infer_ms``: the model's own time (preprocess, run, postprocess), p50;
* ``dropped``: frames a camera delivered while its last one still waited for inference (replaced).

One JSON object on stdout: ``{"rows": [...], "machine": {...}}``.

    python benchmarks/cameras.py --cameras 1,8,16,32 --rate 1 --seconds 60
    python benchmarks/cameras.py --cameras 8 --mariadb mysql+mysqlconnector://root@127.0.0.1:3306
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from machine import describe

from mfgvision.cis.service import CisService
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.runtime import REPO_ASSETS, Paths
from mfgvision.store.database import Database
from mfgvision.synthetic import generate_sample

ROUTE = 'FROM /messages/modules/CIS1/outputs/inference INTO BrokeredEndpoint("/modules/Line/inputs/inference")'
MODEL_STAGES = ("preprocess", "infer", "postprocess")
DISTINCT_FRAMES = 12


def make_frames(folder: Path, count: int) -> None:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for i in range(count):
        image, _ = generate_sample(rng, size=(1920, 1080))
        cv2.imwrite(str(folder / f"frame_{i:03d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def wait_for_cameras(cis: CisService, count: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while len(cis.pipelines) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def memory_mib() -> tuple[float, float]:
    """This process's resident and private memory (Linux ``/proc/self/smaps_rollup``)."""
    fields: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return round(fields["Rss"] / 1024, 1), round(private / 1024, 1)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


class Verdicts:
    """Receives the ``inference`` messages: frame captured → message received, in ms."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.counting = False
        self._lock = threading.Lock()

    def __call__(self, message: HubMessage) -> None:
        body = message.json()
        created = datetime.fromisoformat(body["created"].replace("Z", "+00:00"))
        delay = (datetime.now(timezone.utc) - created).total_seconds() * 1000
        if self.counting:
            with self._lock:
                self.ms.append(delay)


def one_row(
    cameras: int, rate: float, seconds: float, warmup: float, db_url: str | None, aligned: bool
) -> None:
    """Measure ``cameras`` cameras in this process; print the row."""
    with tempfile.TemporaryDirectory(prefix="mfgvision-cameras-") as tmp:
        data = Path(tmp) / "data"
        frames = data / "frames"  # a folder camera reads under the data folder
        make_frames(frames, DISTINCT_FRAMES)
        desired = {
            "camera_type": "folder",
            "camera_uri": str(frames),
            "camera_fps": rate,
            "camera_loop": True,
            "inference_fps": 0,
            "store_all_inferences": True,
            "model_name": "demo-defects",
            "model_version": "1",
        }
        entries = [
            {"camera_id": f"cam-{i:02d}", "camera_position": f"p{i:02d}"} for i in range(cameras)
        ]
        desired["cameras"] = entries if aligned else entries[:1]
        broker = InProcessBroker([parse_route("verdicts", ROUTE)])
        verdicts = Verdicts()
        line = broker.hub("Line", {})
        line.connect()
        line.on_input("inference", verdicts)
        paths = Paths(assets=REPO_ASSETS, models=REPO_ASSETS / "models", data=data)
        cis = CisService(
            broker.hub("CIS1", desired), paths, Database(db_url or f"sqlite:///{data / 'cis.db'}")
        )
        cis.start()
        try:
            if not aligned:  # free-running cameras: each camera's frames at its own phase
                for count in range(2, cameras + 1):
                    time.sleep(1 / rate / cameras)
                    broker.patch_desired("CIS1", {"cameras": entries[:count]})
                assert wait_for_cameras(cis, cameras), "not every camera runs"
            pipelines = list(cis.pipelines.values())
            assert len(pipelines) == cameras, "not every camera runs"
            assert all(p.models.wait_ready(120) for p in pipelines), "the model did not load"
            time.sleep(warmup)
            start = {p.settings.camera_id: p.metrics.counters["inferences"] for p in pipelines}
            seen = {p.settings.camera_id: len(p.metrics.samples("frame_to_row")) for p in pipelines}
            verdicts.counting = True
            cpu0, t0 = time.process_time(), time.perf_counter()
            time.sleep(seconds)
            cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
            verdicts.counting = False
            rss, unique = memory_mib()
            made = {
                p.settings.camera_id: p.metrics.counters["inferences"] - start[p.settings.camera_id]
                for p in pipelines
            }
            rows_ms = [
                ms
                for p in pipelines
                for ms in p.metrics.samples("frame_to_row")[seen[p.settings.camera_id] :]
            ]
            model_ms = sum(
                percentile([ms for p in pipelines for ms in p.metrics.samples(stage)], 50) or 0.0
                for stage in MODEL_STAGES
            )
            dropped = sum(p.status()["camera"]["dropped"] for p in pipelines)
        finally:
            cis.stop()
            line.disconnect()
        inferences = sum(made.values())
        row = {
            "cameras": cameras,
            "rate_per_camera": rate,
            "phases": "aligned" if aligned else "spread",
            "seconds": round(elapsed, 1),
            "rss_mib": rss,
            "unique_mib": unique,
            "cpu_s_per_inference": round(cpu / inferences, 4) if inferences else None,
            "rate_min_per_camera": round(min(made.values()) / elapsed, 3),
            "rate_mean_per_camera": round(inferences / cameras / elapsed, 3),
            "verdict_p50_ms": percentile(verdicts.ms, 50),
            "verdict_p99_ms": percentile(verdicts.ms, 99),
            "row_p50_ms": percentile(rows_ms, 50),
            "row_p99_ms": percentile(rows_ms, 99),
            "infer_ms": round(model_ms, 1),
            "dropped": dropped,
        }
        print(json.dumps(row))


def mariadb_database(server_url: str) -> tuple[str, Any]:
    """A fresh database on the server at ``server_url``: its URL and the engine to drop it with."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_cameras_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, (admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", default="1,8,16,32", help="camera counts, one row each")
    parser.add_argument("--rate", type=float, default=1.0, help="frames per second per camera")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per row")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="every camera delivers at the same instant (default: cameras at spread phases, "
        "as free-running cameras are)",
    )
    parser.add_argument("--mariadb", metavar="SERVER_URL", help="store in MariaDB, not SQLite")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        one_row(args.one, args.rate, args.seconds, args.warmup, args.db_url, args.aligned)
        return
    rows = []
    for count in (int(n) for n in args.cameras.split(",")):
        db_url, drop = mariadb_database(args.mariadb) if args.mariadb else (None, None)
        command = [sys.executable, __file__, "--one", str(count), "--rate", str(args.rate)]
        command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
        command += ["--db-url", db_url] if db_url else []
        command += ["--aligned"] if args.aligned else []
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=True)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{count} cameras failed:\n{exc.stderr[-3000:]}") from None
        finally:
            if drop is not None:
                from sqlalchemy import text

                admin, name = drop
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                admin.dispose()
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    database = "MariaDB" if args.mariadb else "SQLite"
    print(json.dumps({"rows": rows, "database": database, "machine": describe()}))


if __name__ == "__main__":
    main()
