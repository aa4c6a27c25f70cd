"""FileCleanup: retention by age and by disk watermark, never a queued image, never with an empty
database, dry runs, leftovers of crashed writes, and old database rows.

The disk is either simulated (a ``disk_usage`` that counts the files of the folder against a small
fixed size) or real (a 4 MiB tmpfs mounted for the test, where the machine allows it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.file_cleanup.policy import DiskUsage, run_pass
from mfgvision.file_cleanup.service import FileCleanupService
from mfgvision.runtime import Paths
from mfgvision.settings import FileCleanupSettings
from mfgvision.store.database import Database
from mfgvision.store.outbox import OutboxItem, OutboxReader, UploadOutbox, outbox_path
from tests import services
from tests.factories import make_record, recent

NOW = time.time()
HOUR = 3600.0


def add_rows(db: Database, *ages_days: float) -> None:
    db.write(
        [
            make_record(
                created=datetime.now(timezone.utc) - timedelta(days=age),
                inferencing_time_ms=1.0,
                frame_width=64,
                frame_height=48,
            )
            for age in ages_days
        ]
    )


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = Paths(assets=tmp_path, models=tmp_path / "models", data=tmp_path / "data")
    paths.images.mkdir(parents=True)
    return paths


@pytest.fixture
def db(paths: Paths) -> Iterator[Database]:
    database = Database(f"sqlite:///{paths.default_db_path}")
    database.create_schema()
    add_rows(database, 0)
    yield database
    database.close()


def image(folder: Path, name: str, size: int, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    stamp = NOW - age_s
    os.utime(path, (stamp, stamp))
    return path


def queue(paths: Paths, *names: str) -> None:
    box = UploadOutbox(outbox_path(paths.images))
    for name in names:
        box.enqueue(OutboxItem("images-frame", f"l/p/{name}", name, "raw"))
    box.close()


def small_disk(folder: Path, total: int, baseline: int = 0):
    """A volume of ``total`` bytes whose use is ``baseline`` plus the files in ``folder``."""

    def usage(_path: Path) -> DiskUsage:
        used = baseline + sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return DiskUsage(total, used, total - used)

    return usage


def settings(**values) -> FileCleanupSettings:
    return FileCleanupSettings(**{"min_age_s": 60, **values})


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_age_retention_keeps_young_and_queued_images(paths: Paths, db: Database) -> None:
    old = image(paths.images, "a-old-raw.jpg", 1000, 10 * HOUR)
    queued = image(paths.images, "b-old-queued-raw.jpg", 1000, 10 * HOUR)
    young = image(paths.images, "c-young-raw.jpg", 1000, 1 * HOUR)
    queue(paths, queued.name)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=5),
        disk_usage=small_disk(paths.images, 10**9),
        now=NOW,
    )
    assert names(paths.images) == {queued.name, young.name}
    assert not old.exists()
    assert (report.deleted_by_age, report.freed_bytes, report.kept_waiting_upload) == (1, 1000, 1)
    assert report.guard is None and report.errors == []


def test_watermark_frees_oldest_first_to_the_low_mark_skipping_queued(
    paths: Paths, db: Database
) -> None:
    """Simulated 100 kB volume with 20 kB of other data; 16 images of 5 kB fill it to 100 %."""
    for i in range(16):
        image(paths.images, f"img-{i:02d}-raw.jpg", 5000, (100 - i) * 60.0)
    queue(paths, "img-00-raw.jpg", "img-03-raw.jpg")
    disk = small_disk(paths.images, 100_000, baseline=20_000)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=0, high_watermark_pct=90, low_watermark_pct=60),
        disk_usage=disk,
        now=NOW,
    )
    # 100 % -> at most 60 %: 8 images (40 kB) go, the oldest ones except the two queued
    gone = {f"img-{i:02d}-raw.jpg" for i in (1, 2, 4, 5, 6, 7, 8, 9)}
    assert names(paths.images).isdisjoint(gone)
    assert {"img-00-raw.jpg", "img-03-raw.jpg"} <= names(paths.images)
    assert len(names(paths.images)) == 8
    assert report.deleted_by_watermark == 8 and report.freed_bytes == 40_000
    assert report.kept_waiting_upload == 2
    assert (report.disk_used_pct_before, report.disk_used_pct_after) == (100.0, 60.0)
    assert disk(paths.images).used <= 60_000


def test_watermark_never_deletes_images_younger_than_min_age(paths: Paths, db: Database) -> None:
    for i in range(4):
        image(paths.images, f"new-{i}-raw.jpg", 10_000, 5.0)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=0, min_age_s=300),
        disk_usage=small_disk(paths.images, 40_000),
        now=NOW,
    )
    assert len(names(paths.images)) == 4 and report.deleted_files == 0
    assert "still" in report.errors[0]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB volume (tmpfs); skipped where this process may not mount."""
    with services.tmpfs(tmp_path / "volume", "4m") as volume:
        yield volume


def test_full_real_volume_is_brought_below_the_low_watermark(tmpfs: Path, db: Database) -> None:
    images = tmpfs / "images"
    images.mkdir()
    i = 0
    while shutil.disk_usage(tmpfs).used < 0.95 * shutil.disk_usage(tmpfs).total:
        image(images, f"frame-{i:04d}-raw.jpg", 64 * 1024, 1000.0 - i)
        i += 1
    box = UploadOutbox(tmpfs / "upload-outbox.db")
    box.enqueue(OutboxItem("images-frame", "x/frame-0000-raw.jpg", "frame-0000-raw.jpg", "raw"))
    box.close()
    report = run_pass(
        images,
        OutboxReader(tmpfs / "upload-outbox.db"),
        db,
        settings(image_retention_hours=0, high_watermark_pct=90, low_watermark_pct=70),
        now=NOW,
    )
    usage = shutil.disk_usage(tmpfs)
    assert usage.used <= 0.70 * usage.total
    assert report.deleted_by_watermark > 0 and report.freed_bytes > 0
    assert (images / "frame-0000-raw.jpg").exists()  # oldest, but still queued for upload
    assert report.disk_used_pct_after is not None and report.disk_used_pct_after <= 70


def test_nothing_is_deleted_when_the_database_is_empty_or_unreachable(
    paths: Paths, tmp_path: Path
) -> None:
    image(paths.images, "old-raw.jpg", 1000, 100 * HOUR)
    image(paths.images, ".old-raw.jpg.x.tmp", 10, 100 * HOUR)
    empty = Database(f"sqlite:///{tmp_path / 'new.db'}")
    empty.create_schema()
    unreachable = Database("mysql+mysqlconnector://edge:pw@127.0.0.1:1/edge")
    for database, reason in ((empty, "new or empty"), (unreachable, "cannot be read")):
        report = run_pass(
            paths.images,
            OutboxReader(outbox_path(paths.images)),
            database,
            settings(image_retention_hours=1),
            disk_usage=small_disk(paths.images, 1000),
            now=NOW,
        )
        assert reason in (report.guard or "")
        assert report.deleted_files == 0 and report.tmp_removed == 0
        assert len(names(paths.images)) == 2
        database.close()


@pytest.mark.parametrize(
    ("image_ages_s", "level", "event"),
    [
        ((), "INFO", "nothing to clean yet: no inference stored"),
        ((10.0,), "INFO", "nothing to clean yet: no inference stored"),
        ((10.0, 100 * HOUR), "WARNING", "cleanup skipped: the database looks new or empty"),
    ],
)
def test_a_fresh_start_is_no_fault_but_a_wiped_database_is(
    paths: Paths,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    image_ages_s: tuple[float, ...],
    level: str,
    event: str,
) -> None:
    for i, age in enumerate(image_ages_s):
        image(paths.images, f"img-{i}-raw.jpg", 100, age)
    new = Database(f"sqlite:///{tmp_path / 'new.db'}")
    new.create_schema()
    caplog.set_level("INFO", logger="mfgvision.file_cleanup")
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        new,
        settings(),
        disk_usage=small_disk(paths.images, 10**6),
        now=NOW,
    )
    new.close()
    assert report.guard == "the database looks new or empty"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(level, event)]
    assert len(names(paths.images)) == len(image_ages_s)


def test_an_unreadable_database_is_a_warning_even_when_fresh(
    paths: Paths, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = Database("mysql+mysqlconnector://edge:pw@127.0.0.1:1/edge")
    caplog.set_level("INFO", logger="mfgvision.file_cleanup")
    run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        unreachable,
        settings(),
        disk_usage=small_disk(paths.images, 10**6),
        now=NOW,
    )
    unreachable.close()
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("cleanup skipped: the database cannot be read")


def test_dry_run_reports_without_deleting(paths: Paths, db: Database) -> None:
    for i in range(4):
        image(paths.images, f"img-{i}-raw.jpg", 1000, 10 * HOUR)
    image(paths.images, ".img-9-raw.jpg.abc.tmp", 500, 2 * HOUR)
    add_rows(db, 100, 200)
    before = names(paths.images)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=5, db_retention_days=30, dry_run=True),
        disk_usage=small_disk(paths.images, 10**9),
        now=NOW,
    )
    assert names(paths.images) == before
    assert report.dry_run and report.deleted_by_age == 4 and report.tmp_removed == 1
    assert report.freed_bytes == 4500 and report.rows_pruned == 2
    assert db.count_before(datetime.now(timezone.utc) - timedelta(days=30)) == 2


def test_leftover_tmp_files_older_than_an_hour_are_removed(paths: Paths, db: Database) -> None:
    old_tmp = image(paths.images, ".a-raw.jpg.k2j3.tmp", 100, 2 * HOUR)
    fresh_tmp = image(paths.images, ".b-raw.jpg.x9z8.tmp", 100, 60.0)
    nested = paths.blobs / "images-frame" / "l" / "p"
    nested.mkdir(parents=True)
    old_blob_tmp = image(nested, ".c.jpg.q1.tmp", 100, 3 * HOUR)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=0),
        tmp_dirs=[paths.blobs],
        disk_usage=small_disk(paths.images, 10**9),
        now=NOW,
    )
    assert not old_tmp.exists() and not old_blob_tmp.exists() and fresh_tmp.exists()
    assert report.tmp_removed == 2


def test_old_rows_are_pruned(paths: Paths, db: Database) -> None:
    add_rows(db, 10, 40, 100)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=0, db_retention_days=30),
        disk_usage=small_disk(paths.images, 10**9),
        now=NOW,
    )
    assert report.rows_pruned == 2
    assert len(recent(db, 100)) == 2


def test_unreadable_outbox_means_no_image_is_deleted(paths: Paths, db: Database) -> None:
    image(paths.images, "old-raw.jpg", 1000, 100 * HOUR)
    outbox_path(paths.images).write_bytes(b"this is not a database" * 100)
    report = run_pass(
        paths.images,
        OutboxReader(outbox_path(paths.images)),
        db,
        settings(image_retention_hours=1),
        disk_usage=small_disk(paths.images, 1000),
        now=NOW,
    )
    assert (paths.images / "old-raw.jpg").exists()
    assert report.deleted_files == 0 and "outbox unreadable" in report.errors[0]


def test_service_reports_passes_and_sleeps_between_them(paths: Paths, db: Database) -> None:
    image(paths.images, "old-raw.jpg", 2048, 100 * HOUR)
    broker = InProcessBroker([])
    desired = {"image_retention_hours": 1, "interval_s": 3600}
    service = FileCleanupService(
        broker.hub("cleanup", desired),
        paths,
        Database(f"sqlite:///{paths.default_db_path}"),
        disk_usage=small_disk(paths.images, 10**9),
    )
    service.start()
    try:
        assert service.wait_for_pass(1, timeout=60)
        reported = broker.hub("cleanup").get_twin()["reported"]
        assert reported["status"]["last_pass"]["freed_bytes"] == 2048
        assert reported["status"]["totals"]["deleted_files"] == 1
        assert reported["config"]["settings"]["interval_s"] == 3600
        time.sleep(0.5)
        assert service.passes == 1  # the next pass waits for the interval
        image(paths.images, "older-raw.jpg", 100, 100 * HOUR)
        code, answer = broker.hub("cleanup").call_method("run_now", None)
        assert code == 200 and answer["finished"] and answer["pass"]["deleted_files"] == 1
        refused = broker.patch_desired("cleanup", {"low_watermark_pct": 99})
        assert service.wait_for_pass(3, timeout=60)
        config = broker.hub("cleanup").get_twin()["reported"]["config"]
        assert config["error"]["version"] == refused
    finally:
        service.stop()
    assert broker.hub("cleanup").get_twin()["reported"]["status"]["state"] == "stopped"


def test_a_disk_above_the_high_watermark_gets_a_pass_before_the_interval(
    paths: Paths, db: Database
) -> None:
    broker = InProcessBroker([])
    desired = {
        "interval_s": 3600,
        "high_watermark_pct": 50,
        "low_watermark_pct": 30,
        "min_age_s": 0,
    }
    service = FileCleanupService(
        broker.hub("cleanup", desired),
        paths,
        Database(f"sqlite:///{paths.default_db_path}"),
        disk_usage=small_disk(paths.images, 10_000),
    )
    service.start()
    try:
        assert service.wait_for_pass(1, timeout=60)
        assert service.totals["emergency_passes"] == 0
        for i in range(7):  # 70 % used: the camera keeps writing, the interval is an hour away
            image(paths.images, f"frame-{i}-raw.jpg", 1000, 100 - i)
        assert service.wait_for_pass(2, timeout=60)
        assert service.totals["emergency_passes"] == 1
        assert service.last_pass is not None
        assert (
            service.last_pass.deleted_by_watermark == 4
        )  # down to the low watermark, oldest first
        assert names(paths.images) == {f"frame-{i}-raw.jpg" for i in (4, 5, 6)}
    finally:
        service.stop()


def test_settings_are_validated_and_documented() -> None:
    from mfgvision.settings import SettingsError, parse_settings

    with pytest.raises(SettingsError, match="low_watermark_pct"):
        parse_settings(FileCleanupSettings, {"high_watermark_pct": 70, "low_watermark_pct": 80})
    with pytest.raises(SettingsError, match="interval_s"):
        parse_settings(FileCleanupSettings, {"interval_s": 0})
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in FileCleanupSettings.model_fields:
        assert f"`{name}`" in doc, name


def test_file_cleanup_command_runs_as_a_module(tmp_path: Path) -> None:
    import json
    import sys

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    image(data / "images", "old-raw.jpg", 100, 100 * HOUR)
    desired = tmp_path / "desired.json"
    desired.write_text(json.dumps({"image_retention_hours": 1, "dry_run": True}))
    env = {**os.environ, "MFGVISION_DATA": str(data), "MFGVISION_LOG_LEVEL": "INFO"}
    env.pop("MFGVISION_DB_URL", None)
    command = [sys.executable, "-m", "mfgvision", "file-cleanup", "--desired", str(desired)]
    done = subprocess.run(
        [*command, "--duration", "3"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    passes = [json.loads(line) for line in done.stderr.splitlines() if '"cleanup pass"' in line]
    assert passes and passes[0]["guard"] == "the database looks new or empty"
    assert (data / "images" / "old-raw.jpg").exists()
