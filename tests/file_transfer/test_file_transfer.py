"""file-upload and file-download (model sync) against Azurite."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import onnx
import pytest
from azure.core.exceptions import ServiceResponseError
from azure.storage.blob import (
    BlobClient,
    BlobServiceClient,
    ContentSettings,
    StorageStreamDownloader,
)

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.file_transfer.download import SYNC_FILE, sync_files, sync_models
from mfgvision.file_transfer.module import build_file_download
from mfgvision.file_transfer.upload import upload_tree
from mfgvision.image_upload.targets import STORAGE_CONNECTION_ENV
from mfgvision.inference import load_model
from mfgvision.runtime import Paths
from tests.cis.conftest import LABELS, yolo_model_bytes
from tests.factories import wait_for
from tests.services import REPO, Azurite


def container(azurite: Azurite, name: str | None = None):
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.get_container_client(name or f"t{uuid.uuid4().hex[:16]}")


def tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha",
        "sub/b.bin": os.urandom(3000),
        "sub/deeper/c.jpg": os.urandom(5000),
        "sub/.hidden": b"never",
        "sub/.c.jpg.x1.tmp": b"half written",
        ".git/config": b"never either",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {k: v for k, v in files.items() if "/." not in f"/{k}"}


def blob_map(client) -> dict[str, tuple[int, bytes, str]]:
    return {
        b.name: (b.size, bytes(b.content_settings.content_md5 or b""), b.etag)
        for b in client.list_blobs()
    }


# -- file-upload ----------------------------------------------------------------------------------


def test_upload_tree_skips_what_is_there_and_replaces_what_changed(
    tmp_path: Path, azurite: Azurite
) -> None:
    files = tree(tmp_path / "src")
    client = container(azurite)
    report = upload_tree(client, tmp_path / "src", prefix="line1")
    assert (report.transferred, report.skipped, report.ok) == (3, 0, True)
    blobs = blob_map(client)
    assert sorted(blobs) == sorted(f"line1/{k}" for k in files)
    for name, data in files.items():
        assert blobs[f"line1/{name}"][:2] == (len(data), hashlib.md5(data).digest())
    jpg = client.get_blob_client("line1/sub/deeper/c.jpg").get_blob_properties()
    assert jpg.content_settings.content_type == "image/jpeg"

    again = upload_tree(client, tmp_path / "src", prefix="line1")
    assert (again.transferred, again.skipped) == (0, 3)
    assert blob_map(client) == blobs  # nothing rewritten: same etags

    (tmp_path / "src" / "a.txt").write_bytes(b"ALPHA")  # same size, other content
    third = upload_tree(client, tmp_path / "src", prefix="line1")
    assert (third.transferred, third.skipped) == (1, 2)
    assert client.download_blob("line1/a.txt").readall() == b"ALPHA"


def test_large_file_upload_resumes_with_the_blocks_already_staged(
    tmp_path: Path, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    data = os.urandom(1024 * 1024 + 123)
    (folder / "video.mp4").write_bytes(data)
    client = container(azurite)
    real_stage = BlobClient.stage_block
    staged: list[str] = []

    def cut_off_after_five(self, block_id, *args, **kwargs):
        if len(staged) == 5:
            raise ServiceResponseError("connection reset by peer")
        staged.append(block_id)
        return real_stage(self, block_id, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "stage_block", cut_off_after_five)
    first = upload_tree(client, folder, single_put_max=64 * 1024, block_size=64 * 1024)
    assert first.transferred == 0 and len(first.failures) == 1
    assert not client.get_blob_client("video.mp4").exists()

    def counting(self, block_id, *args, **kwargs):
        staged.append(block_id)
        return real_stage(self, block_id, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "stage_block", counting)
    second = upload_tree(client, folder, single_put_max=64 * 1024, block_size=64 * 1024)
    assert second.transferred == 1 and second.ok
    blocks = -(-len(data) // (64 * 1024))
    assert len(staged) == blocks  # 5 before the cut, the rest after: none sent twice
    assert len(set(staged)) == blocks
    assert client.download_blob("video.mp4").readall() == data
    props = client.get_blob_client("video.mp4").get_blob_properties()
    assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()


def test_file_upload_command_line(tmp_path: Path, azurite: Azurite) -> None:
    files = tree(tmp_path / "src")
    name = f"t{uuid.uuid4().hex[:16]}"
    env = {**os.environ, STORAGE_CONNECTION_ENV: azurite.connection_string}
    args = [sys.executable, "-m", "mfgvision", "file-upload", str(tmp_path / "src")]
    args += ["--container", name, "--progress"]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["transferred"] == len(files)
    assert "100%" in done.stderr  # the progress bar
    assert azurite.connection_string not in done.stdout + done.stderr
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert json.loads(again.stdout)["skipped"] == len(files)
    missing = {k: v for k, v in env.items() if k != STORAGE_CONNECTION_ENV}
    done = subprocess.run(args, cwd=REPO, env=missing, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and STORAGE_CONNECTION_ENV in done.stderr


# -- file-download: model sync --------------------------------------------------------------------


def put(client, name: str, data: bytes) -> None:
    client.get_blob_client(name).upload_blob(
        data,
        overwrite=True,
        content_settings=ContentSettings(content_md5=bytearray(hashlib.md5(data).digest())),
    )


@pytest.fixture
def models_container(azurite: Azurite):
    client = container(azurite)
    client.create_container()
    put(client, "defects/1/model.onnx", yolo_model_bytes())
    put(client, "defects/labels.json", json.dumps(LABELS).encode())  # model-level labels
    put(client, "test_images/a.jpg", b"not a model")
    return client


def temp_dirs(models: Path) -> list[Path]:
    return [p for p in models.rglob(".*") if p.name != SYNC_FILE]


def test_model_sync_installs_a_verified_version_once(tmp_path: Path, models_container) -> None:
    models = tmp_path / "models"
    report = sync_models(models_container, models)
    assert (report.transferred, report.skipped, report.ok) == (1, 0, True)
    folder = models / "defects" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [SYNC_FILE, "labels.json", "model.onnx"]
    assert (folder / "model.onnx").read_bytes() == yolo_model_bytes()
    with load_model(folder) as model:
        assert model.labels == LABELS
    assert not (models / "test_images").exists()
    again = sync_models(models_container, models)
    assert (again.transferred, again.skipped) == (0, 1)
    assert temp_dirs(models) == []


def test_corrupt_model_or_wrong_labels_never_replace_a_good_one(
    tmp_path: Path, models_container
) -> None:
    models = tmp_path / "models"
    assert sync_models(models_container, models).ok
    good = (models / "defects" / "1" / "model.onnx").read_bytes()

    put(models_container, "defects/1/model.onnx", b"\x08\x07 not protobuf at all" * 50)
    put(models_container, "defects/2/model.onnx", yolo_model_bytes())
    put(models_container, "defects/2/labels.json", json.dumps([*LABELS, "extra"]).encode())
    report = sync_models(models_container, models)
    reasons = dict(report.failures)
    assert "ONNX" in reasons["defects/1"] or "read" in reasons["defects/1"]
    assert "labels" in reasons["defects/2"] and "classes" in reasons["defects/2"]
    assert (models / "defects" / "1" / "model.onnx").read_bytes() == good
    assert not (models / "defects" / "2").exists()
    assert temp_dirs(models) == []


def test_interrupted_download_keeps_the_old_model_then_updates(
    tmp_path: Path, models_container, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    assert sync_models(models_container, models).ok
    folder = models / "defects" / "1"
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    proto = onnx.load_from_string(yolo_model_bytes())  # the same graph, exported again
    proto.doc_string = "retrained"
    newer = proto.SerializeToString()
    put(models_container, "defects/1/model.onnx", newer)

    def cut(self, *args, **kwargs):
        raise ServiceResponseError("connection reset by peer")
        yield b""  # pragma: no cover

    monkeypatch.setattr(StorageStreamDownloader, "chunks", cut)
    report = sync_models(models_container, models)
    assert not report.ok and "reset" in report.failures[0][1]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old
    assert temp_dirs(models) == []

    monkeypatch.undo()
    killed = models / "defects" / ".1.sync-k1ll3d.tmp"  # a sync process killed mid-download
    killed.mkdir()
    (killed / "model.onnx").write_bytes(newer[:100])
    assert sync_models(models_container, models).transferred == 1
    assert (folder / "model.onnx").read_bytes() == newer
    assert temp_dirs(models) == []


def test_a_download_that_differs_from_the_blob_md5_is_refused(
    tmp_path: Path, models_container
) -> None:
    blob = models_container.get_blob_client("defects/1/model.onnx")
    blob.set_http_headers(ContentSettings(content_md5=bytearray(hashlib.md5(b"x").digest())))
    report = sync_models(models_container, tmp_path / "models")
    assert "MD5" in report.failures[0][1]
    assert not (tmp_path / "models" / "defects" / "1").exists()


def test_file_mode_downloads_nested_files_once(tmp_path: Path, azurite: Azurite) -> None:
    client = container(azurite)
    client.create_container()
    put(client, "docs/manual.pdf", b"%PDF-1.4 manual")
    put(client, "a/b/c.txt", b"nested")
    dest = tmp_path / "download"
    report = sync_files(client, dest)
    assert (report.transferred, report.ok) == (2, True)
    assert (dest / "a" / "b" / "c.txt").read_bytes() == b"nested"
    assert sync_files(client, dest).skipped == 2
    assert [p for p in dest.rglob(".*")] == []


def test_model_sync_module_reports_each_run(
    tmp_path: Path, azurite: Azurite, models_container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_CONNECTION_ENV, azurite.connection_string)
    paths = Paths(assets=tmp_path, models=tmp_path / "models", data=tmp_path / "data")
    broker = InProcessBroker([])
    argv = ["--container", models_container.container_name, "--interval", "3600"]
    service = build_file_download(broker.hub("sync"), paths, argv)
    service.start()
    try:
        hub = broker.hub("sync")
        assert wait_for(lambda: hub.get_twin()["reported"].get("status", {}).get("runs") == 1)
        status = hub.get_twin()["reported"]["status"]
        assert status["last_run"]["transferred"] == 1 and status["last_error"] is None
        assert (paths.models / "defects" / "1" / "model.onnx").is_file()
    finally:
        service.stop()
