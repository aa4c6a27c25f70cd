"""Fault tests: storage going away, the upload process killed or stopped, with every image in
storage exactly once at the end.

Each test runs its own Azurite persisted to disk (so a restart keeps the blobs) with its request log
on; the log tells how many uploads of each blob the emulator accepted.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.image_upload.service import ImageUploadService, parse_request
from mfgvision.image_upload.targets import STORAGE_CONNECTION_ENV
from mfgvision.store.outbox import UploadOutbox, outbox_path
from tests.image_upload.conftest import ImageMaker, wait_for
from tests.services import REPO, Azurite

pytestmark = pytest.mark.slow

_CONTEXT = re.compile(
    r"^\S+ (\S+) info: BlobStorageContextMiddleware: Account=\S+ Container=(\S+) Blob=(\S+)"
)
_OPERATION = re.compile(r"^\S+ (\S+) info: DispatchMiddleware: Operation=(\S+)")
_END = re.compile(r"^\S+ (\S+) info: EndMiddleware: End response\. .*StatusCode=(\d+)")


def request_history(*logs: Path) -> dict[str, list[tuple[str, int]]]:
    """``container/blob -> [(operation, status), ...]`` in order, from the emulator's request logs."""
    blob: dict[str, str] = {}
    operation: dict[str, str] = {}
    history: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if m := _CONTEXT.match(line):
                blob[m.group(1)] = f"{m.group(2)}/{m.group(3)}"
            elif m := _OPERATION.match(line):
                operation[m.group(1)] = m.group(2)
            elif (m := _END.match(line)) and m.group(1) in blob:
                history[blob[m.group(1)]].append((operation.get(m.group(1), "?"), int(m.group(2))))
    return history


def stored(conn_str: str, container: str) -> dict[str, tuple[int, bytes, str]]:
    """``blob name -> (size, md5, etag)`` of every blob in ``container``."""
    client = BlobServiceClient.from_connection_string(conn_str).get_container_client(container)
    if not client.exists():
        return {}
    return {
        b.name: (b.size, bytes(b.content_settings.content_md5 or b""), b.etag)
        for b in client.list_blobs()
    }


def assert_each_exactly_once(
    bodies: list[dict], images: Path, conn_str: str, logs: list[Path], restarted: bool = False
) -> None:
    """Every image is in storage with its bytes, and was accepted there once.

    Across an emulator restart, the emulator may lose a write it was still acknowledging as it shut
    down; an image may then be accepted again, but only after storage answered that it did not have it.
    """
    blobs = stored(conn_str, "images-frame")
    assert sorted(blobs) == sorted(b["blob_name"] for b in bodies)
    for body in bodies:
        data = (images / body["img_name"]).read_bytes()
        assert blobs[body["blob_name"]][:2] == (len(data), hashlib.md5(data).digest())
    history = request_history(*logs)
    assert history, "the emulator's request log shows no request at all"
    for body in bodies:
        events = history[f"images-frame/{body['blob_name']}"]
        accepted = [i for i, event in enumerate(events) if event == ("BlockBlob_Upload", 201)]
        assert accepted, (body["blob_name"], events)
        if not restarted:
            assert len(accepted) == 1, (body["blob_name"], events)
        for before, again in itertools.pairwise(accepted):
            assert ("Blob_GetProperties", 404) in events[before + 1 : again], events


def test_storage_outage_while_images_are_produced(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = [tmp_path / "requests-1.log", tmp_path / "requests-2.log"]
    storage = Azurite(tmp_path / "azurite", location=tmp_path / "blobs", debug_log=logs[0])
    storage.start()
    monkeypatch.setenv(STORAGE_CONNECTION_ENV, storage.connection_string)
    broker = InProcessBroker([])
    service = ImageUploadService(
        broker.hub("upload", {"backoff_initial_s": 0.1, "backoff_max_s": 0.5}),
        make_image.images_dir,
    )
    bodies: list[dict] = []
    produced = threading.Event()
    outage_seen = threading.Event()
    restarted = threading.Event()

    def produce(count: int) -> None:
        for _ in range(count):
            body = make_image("raw")
            bodies.append(body)
            broker.hub("upload").deliver("imageUpload", HubMessage.from_json(body))
            time.sleep(0.01)

    def producer() -> None:
        produce(20)
        outage_seen.wait(120)
        produce(20)  # made while storage is down
        restarted.wait(120)
        produce(20)
        produced.set()

    service.start()
    thread = threading.Thread(target=producer, daemon=True)
    try:
        thread.start()
        assert wait_for(lambda: service.counters["uploaded"] >= 5, timeout=120)
        storage.stop()
        assert wait_for(lambda: service.counters["errors"] >= 1, timeout=120)
        outage_seen.set()
        assert wait_for(lambda: len(bodies) >= 40, timeout=120)
        assert service.outbox.counts()["queued"] > 0
        storage.debug_log = logs[1]
        storage.start()  # same port, same blobs on disk
        restarted.set()
        assert produced.wait(120)
        assert wait_for(lambda: service.outbox.counts() == {"queued": 0, "failed": 0}, 180)
    finally:
        outage_seen.set()
        restarted.set()
        service.stop()
        storage.stop()
    thread.join(10)
    assert len(bodies) == 60
    assert service.counters["uploaded"] + service.counters["skipped"] == 60
    storage.start()
    try:
        assert_each_exactly_once(
            bodies, make_image.images_dir, storage.connection_string, logs, restarted=True
        )
    finally:
        storage.stop()


def _queue(make_image: ImageMaker, count: int) -> list[dict]:
    """``count`` images on disk, each queued in the outbox as the service would have."""
    box = UploadOutbox(outbox_path(make_image.images_dir))
    bodies = [make_image("raw") for _ in range(count)]
    for body in bodies:
        assert box.enqueue(parse_request(HubMessage.from_json(body)))
    box.close()
    return bodies


def _queued(images: Path) -> int:
    with sqlite3.connect(outbox_path(images), timeout=30) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])


def _module(tmp_path: Path, storage: Azurite, run: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MFGVISION_DATA": str(tmp_path / "data"),
        "MFGVISION_LOG_LEVEL": "WARNING",
        STORAGE_CONNECTION_ENV: storage.connection_string,
    }
    env.pop("IOTEDGE_MODULEID", None)
    log = (tmp_path / f"module-{run}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfgvision", "image-upload"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return proc


def test_upload_process_killed_mid_batch_resumes_without_duplicates(
    tmp_path: Path, make_image: ImageMaker
) -> None:
    log = tmp_path / "requests.log"
    storage = Azurite(tmp_path / "azurite", location=tmp_path / "blobs", debug_log=log)
    storage.start()
    count = 400
    bodies = _queue(make_image, count)
    images = make_image.images_dir
    try:
        first = _module(tmp_path, storage, 1)
        try:
            assert wait_for(lambda: _queued(images) <= count - 25, timeout=180), "no progress"
            first.send_signal(signal.SIGKILL)
            first.wait(60)
        finally:
            if first.poll() is None:
                first.kill()
        left = _queued(images)
        assert 0 < left < count, "the kill did not land mid-batch"
        in_storage = len(stored(storage.connection_string, "images-frame"))
        assert in_storage in (count - left, count - left + 1)  # at most the one in flight

        second = _module(tmp_path, storage, 2)
        try:
            assert wait_for(lambda: _queued(images) == 0, timeout=300)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
        assert_each_exactly_once(bodies, images, storage.connection_string, [log])
    finally:
        storage.stop()


def test_sigterm_finishes_the_upload_in_flight_and_leaves_the_rest_queued(
    tmp_path: Path, make_image: ImageMaker
) -> None:
    storage = Azurite(tmp_path / "azurite", location=tmp_path / "blobs")
    storage.start()
    count = 400
    bodies = _queue(make_image, count)
    images = make_image.images_dir
    try:
        proc = _module(tmp_path, storage, 1)
        try:
            assert wait_for(lambda: _queued(images) <= count - 10, timeout=180), "no progress"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        left = _queued(images)
        blobs = stored(storage.connection_string, "images-frame")
        assert len(blobs) == count - left  # nothing half-done: uploaded and removed, or queued
        box = UploadOutbox(outbox_path(images))
        waiting = {i.blob_name for i in box.items()}
        box.close()
        assert waiting.isdisjoint(blobs)
        assert waiting | set(blobs) == {b["blob_name"] for b in bodies}
        assert all(i for i in waiting)
    finally:
        storage.stop()
