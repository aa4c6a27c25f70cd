"""Database writes on MariaDB/MySQL: the project's writer vs the original system's insert pattern.

Both store the same generated inferences (each with 0-3 detections) in their own fresh database on
the same server:

* original: per inference a new connection, ``CREATE TABLE IF NOT EXISTS`` for both tables, one
  ``INSERT`` for the inference and one per detection, autocommit, close (the reference system's
  ``store/mysql_insert.py``);
* mfgvision: ``Database.write`` on the pooled engine in batches of 64 rows (the CIS writer's batch),
  one transaction and one multi-row ``INSERT`` per table per batch.

Prints one JSON object with rows/s of each, the ratio, and whether the connections were encrypted.

    python benchmarks/db_writes.py --url mysql+mysqlconnector://root:@127.0.0.1:3306 --rows 2000
    python benchmarks/db_writes.py --private-server tls    # a throwaway MariaDB serving TLS

A new connection costs far more when the server offers TLS, as MariaDB >= 11.4 (the image the
deployment manifest runs) and MySQL 8.0 (the original's image) do out of the box: the driver then
encrypts by default. ``--private-server`` starts a throwaway MariaDB on a free port, with (``tls``) or
without (``plain``) a self-signed certificate, so that both configurations can be measured on any
machine with the MariaDB server binaries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mysql.connector
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mfgvision.deploy.certs import ensure_ca, issue_server_cert
from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord

# The throwaway server is the one the tests use; the repository root makes it importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.services import PrivateMariaDB

BATCH_ROWS = 64
LABELS = ["scratch", "hole", "spot"]

# The original system's tables and statements (reference spec section 3), verbatim in shape.
ORIGINAL_CREATE = (
    "CREATE TABLE IF NOT EXISTS inference_data (id INT AUTO_INCREMENT PRIMARY KEY, "
    "model_name VARCHAR(60), object_detected BOOLEAN, camera_id VARCHAR(40), "
    "camera_name VARCHAR(40), raw_image_name VARCHAR(100), raw_image_local_path VARCHAR(100), "
    "annotated_image_name VARCHAR(100), annotated_image_path VARCHAR(100), "
    "inferencing_time FLOAT, created DATETIME, unique_id VARCHAR(40))",
    "CREATE TABLE IF NOT EXISTS detection_data (id INT AUTO_INCREMENT PRIMARY KEY, "
    "tag_name VARCHAR(100), tag_id INT, probability FLOAT, bbox VARCHAR(120), "
    "unique_id VARCHAR(40))",
)
ORIGINAL_INSERT_INFERENCE = (
    "INSERT INTO inference_data (model_name, object_detected, camera_id, camera_name, "
    "raw_image_name, raw_image_local_path, annotated_image_name, annotated_image_path, "
    "inferencing_time, created, unique_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
ORIGINAL_INSERT_DETECTION = (
    "INSERT INTO detection_data (tag_name, tag_id, probability, bbox, unique_id) "
    "VALUES (%s, %s, %s, %s, %s)"
)


def make_records(count: int, seed: int = 7) -> list[InferenceRecord]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    records = []
    for i in range(count):
        detections = []
        for _ in range(rng.randint(0, 3)):
            k = rng.randrange(len(LABELS))
            x, y = rng.uniform(0, 1500), rng.uniform(0, 800)
            box = Box(x, y, x + rng.uniform(10, 300), y + rng.uniform(10, 200))
            detections.append(
                Detection(k, LABELS[k], rng.uniform(0.3, 1.0), box, box.normalised(1920, 1080))
            )
        name = f"line1-top-{i:06d}"
        records.append(
            InferenceRecord(
                unique_id=str(uuid.uuid4()),
                created=start + timedelta(milliseconds=100 * i),
                camera_id="camera1",
                camera_name="line1-top",
                model_name="demo-defects",
                model_version="1",
                inferencing_time_ms=rng.uniform(8, 40),
                frame_width=1920,
                frame_height=1080,
                detections=detections,
                raw_image_name=f"{name}-raw.jpg",
                raw_image_path=f"/data/images/{name}-raw.jpg",
                annotated_image_name=f"{name}-annotated.jpg",
                annotated_image_path=f"/data/images/{name}-annotated.jpg",
            )
        )
    return records


def original(server: dict, database: str, records: list[InferenceRecord]) -> float:
    """The reference pattern; returns seconds."""
    start = time.perf_counter()
    for r in records:
        conn = mysql.connector.connect(database=database, autocommit=True, **server)
        cursor = conn.cursor()
        for statement in ORIGINAL_CREATE:
            cursor.execute(statement)
        cursor.execute(
            ORIGINAL_INSERT_INFERENCE,
            (
                r.model_name,
                r.object_detected,
                r.camera_id,
                r.camera_name,
                r.raw_image_name,
                r.raw_image_path,
                r.annotated_image_name,
                r.annotated_image_path,
                r.inferencing_time_ms,
                r.created.strftime("%Y-%m-%d %H:%M:%S"),
                r.unique_id,
            ),
        )
        for d in r.detections:
            bbox = str(dict(zip(("x1", "y1", "x2", "y2"), d.box.as_list(), strict=True)))
            cursor.execute(
                ORIGINAL_INSERT_DETECTION,
                (d.label, d.label_id, round(d.probability, 2), bbox, r.unique_id),
            )
        cursor.close()
        conn.close()
    return time.perf_counter() - start


def project(url: str, records: list[InferenceRecord]) -> tuple[float, str | None]:
    """The project's writer: pooled engine, batched inserts; returns seconds and the TLS cipher."""
    db = Database(url)
    db.create_schema()
    start = time.perf_counter()
    for i in range(0, len(records), BATCH_ROWS):
        db.write(records[i : i + BATCH_ROWS])
    elapsed = time.perf_counter() - start
    with db.engine.connect() as conn:
        cipher = conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1]
    db.close()
    return elapsed, cipher or None


def original_cipher(server: dict) -> str | None:
    """The TLS cipher a connection made like the original's gets; None when unencrypted."""
    conn = mysql.connector.connect(**server)
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        cipher = cursor.fetchone()[1]
        cursor.close()
    finally:
        conn.close()
    return cipher or None


@contextlib.contextmanager
def private_server(tls: bool) -> Iterator[str]:
    """A throwaway MariaDB on a free port (TLS with a self-signed certificate when ``tls``)."""
    with tempfile.TemporaryDirectory(prefix="db-writes-") as folder:
        root = Path(folder)
        args: list[str] = []
        if tls:
            ca, ca_key = ensure_ca(root / "tls", common_name="db_writes benchmark CA")
            files = issue_server_cert(ca, ca_key, root / "tls", ["127.0.0.1"])
            args = [f"--ssl-cert={files.cert}", f"--ssl-key={files.key}", f"--ssl-ca={files.ca}"]
        server = PrivateMariaDB(root / "mariadb", extra_args=args)
        server.install()
        try:
            server.sql(
                "CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'benchpw'; "
                "GRANT ALL ON *.* TO 'bench'@'127.0.0.1';"
            )
            yield f"mysql+mysqlconnector://bench:benchpw@127.0.0.1:{server.port}"
        finally:
            server.stop()


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    info["python"] = platform.python_version()
    info["load_average_1m"] = round(os.getloadavg()[0], 2)  # a busy machine slows both sides
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "MFGVISION_TEST_MYSQL_URL", "mysql+mysqlconnector://root:@127.0.0.1:3306"
        ),
        help="server URL without a database; two scratch databases are created and dropped",
    )
    parser.add_argument(
        "--private-server",
        choices=("tls", "plain"),
        help="start a throwaway MariaDB for the run (with or without TLS) instead of using --url",
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument(
        "--driver",
        default=None,
        help="SQLAlchemy driver of the project's writer, e.g. pymysql (default: the URL's)",
    )
    parser.add_argument(
        "--pure-python",
        action="store_true",
        help="run mysql-connector without its C extension on both sides",
    )
    args = parser.parse_args()
    if args.private_server:
        with private_server(tls=args.private_server == "tls") as url:
            run(args, url)
    else:
        run(args, args.url)


def run(args: argparse.Namespace, url: str) -> None:
    """Both patterns on the server at ``url``; prints the result."""
    server_url = make_url(url)
    admin = create_engine(server_url)
    suffix = uuid.uuid4().hex[:8]
    names = {"original": f"bench_original_{suffix}", "mfgvision": f"bench_mfgvision_{suffix}"}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    records = make_records(args.rows)
    detections = sum(len(r.detections) for r in records)
    try:
        server = {
            "host": server_url.host or "127.0.0.1",
            "port": server_url.port or 3306,
            "user": server_url.username or "root",
            "password": server_url.password or "",
            **({"use_pure": True} if args.pure_python else {}),
        }
        cipher = original_cipher(server)
        t_original = original(server, names["original"], records)
        project_url = server_url.set(database=names["mfgvision"])
        if args.driver:
            project_url = project_url.set(drivername=f"mysql+{args.driver}")
        elif args.pure_python:
            project_url = project_url.update_query_dict({"use_pure": "true"})
        t_project, project_cipher = project(
            project_url.render_as_string(hide_password=False), records
        )
        with admin.connect() as conn:
            server_version = conn.execute(text("SELECT VERSION()")).scalar()
            stored = {
                key: conn.execute(text(f"SELECT COUNT(*) FROM `{name}`.inference_data")).scalar()
                for key, name in names.items()
            }
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
    assert stored == {"original": args.rows, "mfgvision": args.rows}, stored
    result = {
        "benchmark": "db_writes",
        "server": server_version,
        "driver": f"mysql+{args.driver}" if args.driver else server_url.drivername,
        "mysql_connector": {
            "version": mysql.connector.__version__,
            "c_extension": mysql.connector.HAVE_CEXT and not args.pure_python,
        },
        "machine": machine(),
        "server_config": args.private_server or "given --url",
        "tls_cipher": {"original": cipher, "mfgvision": project_cipher},
        "rows": args.rows,
        "detections": detections,
        "batch_rows": BATCH_ROWS,
        "original": {
            "seconds": round(t_original, 3),
            "rows_per_s": round(args.rows / t_original, 1),
        },
        "mfgvision": {
            "seconds": round(t_project, 3),
            "rows_per_s": round(args.rows / t_project, 1),
        },
        "speedup": round(t_original / t_project, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
