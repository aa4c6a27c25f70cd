"""Chaos run: the whole suite under load while faults are injected at seeded random moments.

A CIS (camera folder, constant-output model) and ImageUpload run as processes on the real
``azure-iot-device`` client through the edgeHub stand-in, with a private MariaDB server for the rows
and Azurite (persisted on disk) for the blobs. The data folder of both modules is a small tmpfs
when this process may mount one. One fault at a time, at seeded random moments:

* ``kill_cis``, ``kill_image_upload``: SIGKILL of the module, started again as edgeAgent would;
* ``db_outage``, ``blob_outage``: the MariaDB server / Azurite stopped, then started again;
* ``edgehub_restart``: the stand-in and its brokers stopped and started with their MQTT sessions;
* ``edgehub_restart_fresh``: the same, the brokers' sessions deleted (a hub that lost its store);
* ``disk_full``: every free byte of the data volume taken, then given back.

At the end the camera is pointed at an empty folder, the suite is given time to drain, and everything
is counted end to end, independently of the modules' own counters: inferences announced (``inference``
messages in the stand-in's upstream file, by ``unique_id``), rows and detection rows on the MariaDB
server, images named in rows versus blobs listed on Azurite (name and MD5). One JSON line is printed.

Every ``--sample-every`` seconds the resident memory, open files and threads of each module process
and of the stand-in are written to ``samples.jsonl``; the figures' ``resources`` compare the start
of the run after ``--warmup-minutes`` with its end (a soak: run long, without the kill faults, so
each process lives the whole run).

    python benchmarks/chaos.py --minutes 30 --seed 1
    python benchmarks/chaos.py --minutes 1 --seed 7 --faults kill_cis,db_outage --gap 5 10
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mfgvision.deploy.broker import broker_account, broker_root
from mfgvision.deploy.control import wait_until
from tests.cis.conftest import FRAME_H, FRAME_W, LABELS, yolo_model_bytes
from tests.edge.standin_env import StandInProcess, module, write_manifest
from tests.inference.graphs import write_model_dir
from tests.services import REPO, Azurite, PrivateMariaDB, fill, tmpfs

FAULT_KINDS = (
    "kill_cis",
    "kill_image_upload",
    "db_outage",
    "blob_outage",
    "edgehub_restart",
    "edgehub_restart_fresh",
    "disk_full",
)
MODULES = {"ImageUpload": ["image-upload"], "CIS1": ["cis"]}
START_TIMEOUT_S = 180.0


@dataclass
class Options:
    minutes: float
    seed: int
    faults: tuple[str, ...]
    gap_s: tuple[float, float]
    outage_s: tuple[float, float]
    drain_s: float
    inference_fps: float
    tmpfs_mb: int
    workdir: Path | None
    sample_s: float = 60.0
    warmup_s: float = 600.0


@dataclass
class Suite:
    """The services and module processes of one run, and what happened to them."""

    root: Path
    options: Options
    db: PrivateMariaDB
    blob: Azurite
    hub: StandInProcess
    data: Path
    models: Path
    killed: set[str] = field(default_factory=set)
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)

    def module_env(self, name: str) -> dict[str, str]:
        """What a module process gets: the stand-in's endpoint, the data folder, both services."""
        return self.hub.module_env(
            name,
            MFGVISION_DATA=str(self.data),
            MFGVISION_ASSETS=str(self.root),
            MFGVISION_MODELS=str(self.models),
            MFGVISION_DB_URL=self.db.url,
            MFGVISION_STORAGE_CONNECTION_STRING=self.blob.connection_string,
        )

    def start_module(self, name: str) -> None:
        self.hub.run_module(name, MODULES[name], self.module_env(name))

    def kill(self, name: str) -> None:
        """SIGKILL a module; the next supervision pass starts it again."""
        self.killed.add(name)
        self.hub.procs[name].kill()
        self.hub.procs[name].wait(30)

    def supervise(self) -> None:
        """Start every module that is not running; an exit nobody caused is recorded."""
        for name in MODULES:
            proc = self.hub.procs[name]
            if proc.poll() is None:
                continue
            if name in self.killed:
                self.killed.discard(name)
            else:
                self.unexpected_exits.append({"module": name, "code": proc.returncode})
            self.start_module(name)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass while keeping the modules running."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.supervise()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def write_assets(root: Path) -> tuple[Path, Path]:
    """The constant-output model and a few smooth frames (small JPEGs keep the load on the suite)."""
    models = root / "models"
    write_model_dir(models, yolo_model_bytes(), LABELS, name="const", version="1")
    frames = root / "frames"
    frames.mkdir(parents=True)
    ramp = np.linspace(40, 200, FRAME_W, dtype=np.uint8)
    for i in range(4):
        img = np.dstack([np.tile(ramp, (FRAME_H, 1))] * 3)
        cv2.rectangle(img, (100 + 60 * i, 80), (300 + 60 * i, 200), (30, 30, 220), -1)
        cv2.imwrite(str(frames / f"f{i}.jpg"), img)
    (root / "empty").mkdir()
    return models, frames


def manifest(root: Path, frames: Path, fps: float) -> Path:
    """CIS1 → ``$upstream`` and → ImageUpload; every inference stored with its images."""
    return write_manifest(
        root / "deployment.json",
        {
            "CIS1": module(
                MODULES["CIS1"],
                camera_type="folder",
                camera_uri=str(frames),
                camera_id="cam-1",
                camera_location="line7",
                camera_position="top",
                camera_fps=0,
                inference_fps=fps,
                model_name="const",
                model_version="1",
                prob_threshold=0.5,
                retrain_interval_s=86400,
            ),
            "ImageUpload": module(MODULES["ImageUpload"]),
        },
        {
            "CIS1ToUpstream": "FROM /messages/modules/CIS1/outputs/inference INTO $upstream",
            "CIS1ToUpload": "FROM /messages/modules/CIS1/outputs/imageUpload INTO "
            'BrokeredEndpoint("/modules/ImageUpload/inputs/imageUpload")',
            "CIS1Receipts": "FROM /messages/modules/ImageUpload/outputs/uploadReceipts INTO "
            'BrokeredEndpoint("/modules/CIS1/inputs/uploadReceipts")',
        },
    )


# -- faults ------------------------------------------------------------------------------------


def kill_module(name: str) -> Callable[[Suite, random.Random], None]:
    def fault(suite: Suite, rng: random.Random) -> None:
        suite.kill(name)
        suite.wait(rng.uniform(0.0, 2.0))

    return fault


def db_outage(suite: Suite, rng: random.Random) -> None:
    suite.db.stop()
    suite.wait(rng.uniform(*suite.options.outage_s))
    suite.db.start()


def blob_outage(suite: Suite, rng: random.Random) -> None:
    suite.blob.stop()
    suite.wait(rng.uniform(*suite.options.outage_s))
    suite.blob.start()


def edgehub_restart(suite: Suite, rng: random.Random, keep_sessions: bool = True) -> None:
    suite.hub.stop_standin()
    if not keep_sessions:
        for session in broker_root(suite.hub.state, broker_account()).rglob("mosquitto.db"):
            session.unlink()
    suite.wait(rng.uniform(*suite.options.outage_s))
    suite.hub.start(START_TIMEOUT_S)


def edgehub_restart_fresh(suite: Suite, rng: random.Random) -> None:
    edgehub_restart(suite, rng, keep_sessions=False)


def disk_full(suite: Suite, rng: random.Random) -> None:
    filler = fill(suite.data)
    try:
        suite.wait(rng.uniform(*suite.options.outage_s))
    finally:
        filler.unlink()


FAULTS: dict[str, Callable[[Suite, random.Random], None]] = {
    "kill_cis": kill_module("CIS1"),
    "kill_image_upload": kill_module("ImageUpload"),
    "db_outage": db_outage,
    "blob_outage": blob_outage,
    "edgehub_restart": edgehub_restart,
    "edgehub_restart_fresh": edgehub_restart_fresh,
    "disk_full": disk_full,
}


def inject(suite: Suite, kinds: tuple[str, ...], rng: random.Random) -> Counter[str]:
    """Faults one at a time at random moments until the run's time is up; every kind in turn,
    in a shuffled order per round, so each kind comes as often as the others. Each fault's start
    is appended to ``faults.jsonl`` in the run's folder."""
    done: Counter[str] = Counter()
    deadline = time.monotonic() + suite.options.minutes * 60
    order: list[str] = []
    while True:
        suite.wait(min(rng.uniform(*suite.options.gap_s), max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline or not kinds:
            return done
        if not order:
            order = list(kinds)
            rng.shuffle(order)
        kind = order.pop()
        with (suite.root / "faults.jsonl").open("a") as timeline:
            timeline.write(json.dumps({"at": time.time(), "fault": kind}) + "\n")
        FAULTS[kind](suite, rng)
        done[kind] += 1


# -- resources --------------------------------------------------------------------------------


def process_sample(pid: int) -> dict[str, int] | None:
    """Resident memory (KiB), open file descriptors and threads of ``pid``; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


class Sampler(threading.Thread):
    """Samples every process of the suite every ``interval`` seconds into ``samples.jsonl``."""

    def __init__(self, suite: Suite, interval: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.suite = suite
        self.interval = interval
        self.started_at = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.take()

    def take(self) -> None:
        elapsed = time.monotonic() - self.started_at
        for name, proc in list(self.suite.hub.procs.items()):
            sample = process_sample(proc.pid) if proc.poll() is None else None
            if sample is None:
                continue
            sample.update(module=name, pid=proc.pid, at_s=round(elapsed, 1))
            self.samples.append(sample)
            with (self.suite.root / "samples.jsonl").open("a") as out:
                out.write(json.dumps(sample) + "\n")

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def resources(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Per process: resident memory, open files and threads at the end of the warm-up (median of
    the first three samples after it) and at the end (median of the last three), for the process
    that ran longest (a killed module is a new process)."""
    out: dict[str, Any] = {}
    for name in sorted({s["module"] for s in samples}):
        runs = Counter(s["pid"] for s in samples if s["module"] == name)
        pid = runs.most_common(1)[0][0]
        series = [s for s in samples if s["pid"] == pid and s["at_s"] >= warmup_s]
        if len(series) < 6:
            out[name] = {"samples": len(series), "note": "too few samples after the warm-up"}
            continue
        start = {
            k: statistics.median(s[k] for s in series[:3]) for k in ("rss_kib", "fds", "threads")
        }
        end = {
            k: statistics.median(s[k] for s in series[-3:]) for k in ("rss_kib", "fds", "threads")
        }
        out[name] = {
            "samples": len(series),
            "minutes": round((series[-1]["at_s"] - series[0]["at_s"]) / 60, 1),
            "rss_mib": [round(start["rss_kib"] / 1024, 1), round(end["rss_kib"] / 1024, 1)],
            "rss_growth_pct": round(
                100 * (end["rss_kib"] - start["rss_kib"]) / start["rss_kib"], 1
            ),
            "rss_max_mib": round(max(s["rss_kib"] for s in series) / 1024, 1),
            "fds": [start["fds"], end["fds"], max(s["fds"] for s in series)],
            "threads": [start["threads"], end["threads"], max(s["threads"] for s in series)],
        }
    return out


# -- counting ----------------------------------------------------------------------------------


def announced(suite: Suite) -> list[str]:
    """``unique_id`` of every ``inference`` message the stand-in passed upstream, repeats kept."""
    path = suite.hub.state / "upstream.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    messages = [json.loads(line) for line in lines if line.strip()]
    return [m["body"]["unique_id"] for m in messages if m["output"] == "inference"]


def stored(suite: Suite) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
    """Rows on the MariaDB server: inferences by ``unique_id``, detection rows per ``unique_id``."""
    engine = create_engine(suite.db.url)
    try:
        with engine.connect() as conn:
            rows = {
                r.unique_id: r._asdict()
                for r in conn.execute(
                    text(
                        "SELECT unique_id, detection_count, raw_image_name, annotated_image_name "
                        "FROM inference_data"
                    )
                )
            }
            detections = Counter(
                {
                    r.unique_id: r.n
                    for r in conn.execute(
                        text(
                            "SELECT unique_id, COUNT(*) AS n FROM detection_data GROUP BY unique_id"
                        )
                    )
                }
            )
    finally:
        engine.dispose()
    return rows, detections


def uploaded(suite: Suite) -> list[tuple[str, bytes | None]]:
    """Every blob on Azurite as (file name, content MD5)."""
    service = BlobServiceClient.from_connection_string(suite.blob.connection_string)
    blobs = []
    for container in service.list_containers():
        for blob in service.get_container_client(container.name).list_blobs():
            md5 = blob.content_settings.content_md5
            blobs.append((blob.name.rsplit("/", 1)[-1], bytes(md5) if md5 else None))
    return blobs


def count(suite: Suite) -> dict[str, Any]:
    """The end-to-end figures: what was announced, stored and uploaded, and what went missing
    (named in ``lost.json`` in the run's folder)."""
    uids = announced(suite)
    rows, detections = stored(suite)
    expected = {
        name
        for row in rows.values()
        for name in (row["raw_image_name"], row["annotated_image_name"])
        if name
    }
    blobs = uploaded(suite)
    names = Counter(name for name, _ in blobs)
    on_disk = {p.name: p for p in (suite.data / "images").rglob("*.jpg")}
    lost = {
        "rows": sorted(set(uids) - rows.keys()),
        "uploads": sorted(expected - names.keys()),
        "images_on_disk": sorted(on_disk.keys() - names.keys()),
    }
    (suite.root / "lost.json").write_text(json.dumps(lost, indent=1))
    return {
        "inferences_announced": len(set(uids)),
        "announcements_repeated": len(uids) - len(set(uids)),
        "rows": len(rows),
        "rows_lost": len(lost["rows"]),
        "rows_not_announced": len(rows.keys() - set(uids)),
        "detection_rows": sum(detections.values()),
        "detection_rows_lost": sum(
            max(0, r["detection_count"] - detections[u]) for u, r in rows.items()
        ),
        "detection_rows_duplicated": sum(
            max(0, detections[u] - r["detection_count"]) for u, r in rows.items()
        ),
        "images_in_rows": len(expected),
        "images_on_disk": len(on_disk),
        "uploads": len(blobs),
        "uploads_lost": len(lost["uploads"]),
        "uploads_duplicated": sum(n - 1 for n in names.values() if n > 1),
        "images_on_disk_not_uploaded": len(lost["images_on_disk"]),
        "uploads_corrupt": sum(
            1
            for name, md5 in blobs
            if name in on_disk and md5 != hashlib.md5(on_disk[name].read_bytes()).digest()
        ),
    }


def drained(figures: dict[str, Any]) -> bool:
    return (
        figures["rows_lost"] == 0
        and figures["rows_not_announced"] == 0
        and figures["uploads_lost"] == 0
    )


def drain(suite: Suite) -> dict[str, Any]:
    """Stop new inferences (the camera points at an empty folder), then wait until every row is
    announced and every image uploaded, or ``drain_s`` has passed; the last figures."""
    client = suite.hub.client
    assert client is not None
    version = client.patch("CIS1", {"camera_uri": str(suite.root / "empty")})

    def applied() -> bool:
        suite.supervise()
        config = client.twin("CIS1")["reported"].get("config") or {}
        return int(config.get("applied_version") or 0) >= version

    wait_until(applied, START_TIMEOUT_S, interval=1.0)
    figures: list[dict[str, Any]] = []

    def settled() -> bool:
        suite.supervise()
        figures.append(count(suite))
        return drained(figures[-1])

    wait_until(settled, suite.options.drain_s, interval=2.0)
    return figures[-1]


# -- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def data_volume(root: Path, size_mb: int) -> Iterator[tuple[Path, str | None]]:
    """The modules' data folder: a tmpfs of ``size_mb`` when one can be mounted, else a plain
    folder and the reason why not."""
    folder = root / "data"
    try:
        with tmpfs(folder, f"{size_mb}m") as mounted:
            yield mounted, None
    except pytest.skip.Exception as exc:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder, str(exc)


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "nproc": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def run(root: Path, options: Options) -> dict[str, Any]:
    """One chaos run in ``root``; the figures as a dict."""
    models, frames = write_assets(root)
    db = PrivateMariaDB(root / "mariadb")
    db.install()
    blob = Azurite(root / "azurite", location=root / "azurite" / "store")
    blob.start()
    hub = StandInProcess(root, manifest(root, frames, options.inference_fps))
    kinds = options.faults
    skipped: dict[str, str] = {}
    try:
        with data_volume(root, options.tmpfs_mb) as (data, no_tmpfs):
            if no_tmpfs is not None and "disk_full" in kinds:
                skipped["disk_full"] = no_tmpfs
                kinds = tuple(k for k in kinds if k != "disk_full")
            suite = Suite(root, options, db, blob, hub, data, models)
            try:
                hub.start(START_TIMEOUT_S)
                for name in MODULES:
                    suite.start_module(name)
                sampler = Sampler(suite, options.sample_s)
                sampler.start()
                try:
                    faults = inject(suite, kinds, random.Random(options.seed))
                finally:
                    sampler.stop()
                figures = drain(suite)
            finally:
                exit_codes = hub.stop()
    finally:
        blob.stop()
        db.stop()
    return {
        "seed": options.seed,
        "minutes": options.minutes,
        "faults": dict(sorted(faults.items())),
        "faults_skipped": skipped,
        **figures,
        "unexpected_exits": len(suite.unexpected_exits),
        "exit_codes": exit_codes,
        "resources": resources(sampler.samples, options.warmup_s),
        "machine": machine(),
    }


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="time under faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--faults", default=",".join(FAULT_KINDS), help=f"comma-separated, of {FAULT_KINDS}"
    )
    parser.add_argument("--gap", type=float, nargs=2, default=(10.0, 40.0), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--outage", type=float, nargs=2, default=(3.0, 20.0), metavar=("MIN", "MAX")
    )
    parser.add_argument("--drain", type=float, default=300.0, help="seconds allowed to drain")
    parser.add_argument("--inference-fps", type=float, default=4.0)
    parser.add_argument("--tmpfs-mb", type=int, default=1024, help="size of the data volume")
    parser.add_argument("--workdir", type=Path, help="keep services' files and logs here")
    parser.add_argument(
        "--sample-every", type=float, default=60.0, help="seconds between resource samples"
    )
    parser.add_argument(
        "--warmup-minutes", type=float, default=10.0, help="left out of the resource growth"
    )
    args = parser.parse_args(argv)
    faults = tuple(k for k in args.faults.split(",") if k)
    unknown = set(faults) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}")
    return Options(
        minutes=args.minutes,
        seed=args.seed,
        faults=faults,
        gap_s=tuple(args.gap),
        outage_s=tuple(args.outage),
        drain_s=args.drain,
        inference_fps=args.inference_fps,
        tmpfs_mb=args.tmpfs_mb,
        workdir=args.workdir,
        sample_s=args.sample_every,
        warmup_s=args.warmup_minutes * 60,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.workdir is not None:
        options.workdir.mkdir(parents=True)
        report = run(options.workdir.resolve(), options)
    else:
        with tempfile.TemporaryDirectory(prefix="mfgvision-chaos-") as tmp:
            report = run(Path(tmp), options)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
