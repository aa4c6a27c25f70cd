"""The ImageUpload module on Azurite: messages -> outbox -> blobs, each image exactly once."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from pathlib import Path
from unittest.mock import create_autospec

import pytest
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError
from azure.storage.blob import BlobServiceClient
from azure.storage.filedatalake import (
    DataLakeDirectoryClient,
    DataLakeFileClient,
    DataLakeServiceClient,
    FileProperties,
    FileSystemClient,
)

from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_routes
from mfgvision.image_upload.service import (
    ImageUploadService,
    UploadRequestError,
    parse_request,
)
from mfgvision.image_upload.targets import (
    STORAGE_CONNECTION_ENV,
    AdlsTarget,
    Blob,
    BlobTarget,
    LocalFolderTarget,
    TargetConfigError,
    UploadError,
    create_target,
)
from mfgvision.store.outbox import OutboxItem, UploadOutbox, outbox_path
from tests.image_upload.conftest import ImageMaker, wait_for
from tests.services import Azurite


def blobs(conn_str: str, container: str, prefix: str) -> dict[str, tuple[int, bytes, dict]]:
    """``name -> (size, md5, metadata)`` of the blobs under ``prefix``."""
    service = BlobServiceClient.from_connection_string(conn_str)
    client = service.get_container_client(container)
    if not client.exists():
        return {}
    return {
        b.name: (b.size, bytes(b.content_settings.content_md5 or b""), b.metadata)
        for b in client.list_blobs(name_starts_with=prefix, include=["metadata"])
    }


def start_service(
    tmp_path: Path, desired: dict | None = None, **kwargs
) -> tuple[ImageUploadService, InProcessBroker]:
    broker = InProcessBroker([])
    images = tmp_path / "data" / "images"
    service = ImageUploadService(broker.hub("upload", desired or {}), images, **kwargs)
    service.start()
    return service, broker


def deliver(broker: InProcessBroker, body: dict) -> None:
    broker.hub("upload").deliver("imageUpload", HubMessage.from_json(body))


# -- messages -------------------------------------------------------------------------------------


def test_parse_request_keeps_names_and_metadata(make_image: ImageMaker) -> None:
    body = make_image("annotated")
    item = parse_request(HubMessage.from_json(body))
    assert (item.container, item.blob_name, item.img_name) == (
        "images-annotated",
        body["blob_name"],
        body["img_name"],
    )
    assert item.blob_name.startswith(f"{make_image.location}/top/2026/03/01/")
    assert item.metadata["camera_id"] == "cam-1"
    assert item.metadata["model_name"] == "demo-defects"
    assert item.metadata["inference_id"] == body["unique_id"]
    assert item.metadata["kind"] == "annotated"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"img_name": "../etc/passwd"}, "img_name"),
        ({"img_name": ".hidden.jpg"}, "img_name"),
        ({"blob_name": "a/../../b.jpg"}, "blob_name"),
        ({"blob_name": "/abs.jpg"}, "blob_name"),
        ({"container": "secrets"}, "container"),
        ({"kind": "retrain"}, "kind"),
        ({"camera_id": "kamera-ü"}, "camera_id"),
        ({"unique_id": 12}, "unique_id"),
    ],
)
def test_parse_request_refuses_bad_messages(make_image: ImageMaker, change, message) -> None:
    body = {**make_image("raw"), **change}
    with pytest.raises(UploadRequestError, match=message):
        parse_request(HubMessage.from_json(body))
    with pytest.raises(UploadRequestError, match="JSON"):
        parse_request(HubMessage(b"{not json"))


def test_a_location_with_spaces_and_umlauts_names_a_blob_upload_accepts(tmp_path: Path) -> None:
    maker = ImageMaker(tmp_path / "images", "Linie 1/Süd")
    body = maker("annotated")
    item = parse_request(HubMessage.from_json(body))
    assert item.blob_name == f"Linie_1_S_d/top/2026/03/01/{body['img_name']}"
    assert body["img_name"].startswith("Linie_1_S_d-top-")
    assert item.metadata["location"] == "Linie_1_S_d"


def test_messages_of_any_shape_are_counted_as_rejected_and_shown(tmp_path: Path) -> None:
    service, broker = start_service(tmp_path, target=LocalFolderTarget(tmp_path / "blobs"))
    maker = ImageMaker(tmp_path / "data" / "images", "line1")
    hub = broker.hub("upload")
    try:
        good = maker("raw")
        hub.deliver("imageUpload", HubMessage(b"[" * 100_000 + b"]" * 100_000))
        deliver(broker, {**good, "container": ["images-frame"]})
        deliver(broker, {**good, "container": {"a": 1}})
        deliver(broker, {**good, "kind": {"raw": 1}})
        deliver(broker, {**good, "kind": ["raw"]})
        assert wait_for(lambda: service.counters["rejected"] == 5)
        status = service.status()["status"]
        assert status["state"] == "degraded"
        assert status["reasons"] == ["upload requests rejected (5 in all)"]
        assert "kind" in status["last_rejected"]["error"]
        deliver(broker, good)  # the module still serves
        assert wait_for(lambda: service.counters["uploaded"] == 1)
        hub_status = hub.call_method("status", None)[1]["status"]
        assert hub_status["rejected"] == 5 and hub_status["state"] == "degraded"
    finally:
        service.stop()


# -- the outbox -----------------------------------------------------------------------------------


def test_outbox_is_durable_ordered_and_deduplicated(tmp_path: Path) -> None:
    path = outbox_path(tmp_path / "images")
    box = UploadOutbox(path)
    for i in range(3):
        assert box.enqueue(OutboxItem("images-frame", f"a/{i}.jpg", f"{i}.jpg", "raw", {"k": "v"}))
    assert not box.enqueue(OutboxItem("images-frame", "a/1.jpg", "1.jpg", "raw"))
    first = box.next_due()
    assert first is not None and first.blob_name == "a/0.jpg"
    box.retry_later(first.id, 3600, "boom", count_failure=True)
    box.close()

    box = UploadOutbox(path)  # reopened, as after a restart
    assert [i.blob_name for i in box.items()] == ["a/0.jpg", "a/1.jpg", "a/2.jpg"]
    nxt = box.next_due()
    assert nxt is not None and nxt.blob_name == "a/1.jpg" and nxt.metadata == {"k": "v"}
    box.park(nxt.id, "gone")
    assert box.counts() == {"queued": 2, "failed": 1}
    assert box.requeue_failed() == 1
    box.ack(nxt.id)
    assert box.counts() == {"queued": 2, "failed": 0}
    box.close()


# -- targets --------------------------------------------------------------------------------------


def test_blob_target_sets_type_md5_metadata_and_never_uploads_twice(azurite: Azurite) -> None:
    target = BlobTarget.from_connection_string(azurite.connection_string)
    blob = Blob(
        "t-target", "l/p/2026/03/01/x.jpg", b"\xff\xd8jpeg" * 500, metadata={"camera_id": "c"}
    )
    assert target.put(blob) is True
    props = (
        BlobServiceClient.from_connection_string(azurite.connection_string)
        .get_blob_client("t-target", blob.name)
        .get_blob_properties()
    )
    assert props.content_settings.content_type == "image/jpeg"
    assert bytes(props.content_settings.content_md5) == hashlib.md5(blob.data).digest()
    assert props.metadata == {"camera_id": "c"}
    assert target.put(blob) is False  # identical blob already there
    with pytest.raises(UploadError) as err:
        target.put(Blob("t-target", blob.name, b"other bytes"))
    assert err.value.outage is False


def test_unreachable_storage_is_an_outage() -> None:
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    with pytest.raises(UploadError) as err:
        BlobTarget.from_connection_string(dead).put(Blob("c-x", "a.jpg", b"x"))
    assert err.value.outage is True


def test_create_target_from_environment(tmp_path: Path, azurite: Azurite) -> None:
    assert isinstance(create_target("auto", tmp_path, env={}), LocalFolderTarget)
    env = {STORAGE_CONNECTION_ENV: azurite.connection_string}
    assert isinstance(create_target("auto", tmp_path, env=env), BlobTarget)
    assert isinstance(create_target("local", tmp_path, env=env), LocalFolderTarget)
    with pytest.raises(TargetConfigError, match=STORAGE_CONNECTION_ENV):
        create_target("blob", tmp_path, env={})
    with pytest.raises(TargetConfigError, match="not a valid") as err:
        create_target("blob", tmp_path, env={STORAGE_CONNECTION_ENV: "AccountKey=s3cr3t"})
    assert "s3cr3t" not in str(err.value)


def test_adls_target_through_the_real_client_api() -> None:
    """ADLS Gen2 cannot run on Azurite: the SDK classes are mocked with their real signatures."""
    service = create_autospec(DataLakeServiceClient, instance=True)
    fs = create_autospec(FileSystemClient, instance=True)
    file = create_autospec(DataLakeFileClient, instance=True)
    service.get_file_system_client.return_value = fs
    fs.get_file_client.return_value = file
    file.get_file_properties.side_effect = ResourceNotFoundError("no such file")
    target = AdlsTarget(service)
    blob = Blob("images-frame", "l/p/2026/03/01/x.jpg", b"jpeg", metadata={"camera_id": "c"})

    assert target.put(blob) is True
    service.get_file_system_client.assert_called_with("images-frame")
    fs.create_file_system.assert_called_once()
    fs.get_file_client.assert_called_with("l/p/2026/03/01/x.jpg")
    kwargs = file.upload_data.call_args.kwargs
    assert file.upload_data.call_args.args == (b"jpeg",)
    assert kwargs["overwrite"] is False and kwargs["metadata"] == {"camera_id": "c"}
    assert kwargs["content_settings"].content_type == "image/jpeg"
    assert bytes(kwargs["content_settings"].content_md5) == hashlib.md5(b"jpeg").digest()

    props = FileProperties()
    props.size = 4
    props.content_settings.content_md5 = bytearray(hashlib.md5(b"jpeg").digest())
    file.get_file_properties.side_effect = None
    file.get_file_properties.return_value = props
    assert target.put(blob) is False  # already there
    assert file.upload_data.call_count == 1
    assert create_autospec(DataLakeDirectoryClient)  # the directory API is not needed
    file.get_file_properties.side_effect = ServiceRequestError("connection refused")
    with pytest.raises(UploadError) as err:
        target.put(blob)
    assert err.value.outage is True


# -- the service ----------------------------------------------------------------------------------


def test_service_uploads_each_image_once_with_status(
    tmp_path: Path, make_image: ImageMaker, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_CONNECTION_ENV, azurite.connection_string)
    service, broker = start_service(tmp_path, {"report_every_s": 1})
    try:
        assert service.target is not None and service.target.kind == "blob"
        bodies = [make_image(kind) for kind in ("raw", "annotated", "retrain", "raw", "raw")]
        for body in bodies:
            deliver(broker, body)
        deliver(broker, bodies[0])  # a redelivered message
        prefix = f"{make_image.location}/"
        assert wait_for(
            lambda: service.counters["uploaded"] == 5 and service.outbox.counts()["queued"] == 0
        )
        frames = blobs(azurite.connection_string, "images-frame", prefix)
        assert len(frames) == 3
        assert len(blobs(azurite.connection_string, "images-annotated", prefix)) == 1
        assert len(blobs(azurite.connection_string, "images-retraining", prefix)) == 1
        for body in bodies:
            if body["kind"] != "raw":
                continue
            size, md5, meta = frames[body["blob_name"]]
            data = (tmp_path / "data" / "images" / body["img_name"]).read_bytes()
            assert (size, md5) == (len(data), hashlib.md5(data).digest())
            assert meta["inference_id"] == body["unique_id"] and meta["camera_id"] == "cam-1"
        assert service.counters["uploaded"] == 5  # the redelivered one was queued or skipped
        assert service.counters["skipped"] <= 1
        hub = broker.hub("upload")
        assert wait_for(lambda: hub.get_twin()["reported"]["status"]["uploaded"] == 5)
        reported = hub.get_twin()["reported"]["status"]
        assert reported["queued"] == 0 and reported["failed"] == 0 and reported["target"] == "blob"
    finally:
        service.stop()
    assert broker.hub("upload").get_twin()["reported"]["status"]["state"] == "stopped"


def test_containers_per_kind_from_settings(
    tmp_path: Path, make_image: ImageMaker, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_CONNECTION_ENV, azurite.connection_string)
    service, broker = start_service(tmp_path, {"containers": {"raw": "line-frames"}})
    try:
        body = make_image("raw")
        deliver(broker, body)
        assert wait_for(lambda: service.counters["uploaded"] == 1)
        got = blobs(azurite.connection_string, "line-frames", body["blob_name"])
        assert list(got) == [body["blob_name"]]
    finally:
        service.stop()


def test_missing_image_is_parked_not_lost_and_retried_on_request(
    tmp_path: Path, make_image: ImageMaker
) -> None:
    service, broker = start_service(tmp_path, {"backoff_initial_s": 0.05})
    try:
        body = make_image("raw")
        image = tmp_path / "data" / "images" / body["img_name"]
        kept = image.read_bytes()
        image.unlink()
        deliver(broker, body)
        assert wait_for(lambda: service.outbox.counts()["failed"] == 1)
        status = service.status()["status"]
        assert status["failed"] == 1 and "missing" in status["last_error"]
        image.write_bytes(kept)
        code, answer = broker.hub("upload").call_method("retry_failed", None)
        assert code == 200 and answer == {"requeued": 1}
        assert wait_for(lambda: service.outbox.counts() == {"queued": 0, "failed": 0})
        assert service.counters["uploaded"] == 1
        assert (
            tmp_path / "data" / "blobs" / "images-frame" / body["blob_name"]
        ).read_bytes() == kept
    finally:
        service.stop()


def test_storage_outage_pauses_and_keeps_order(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        STORAGE_CONNECTION_ENV,
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    )
    service, broker = start_service(tmp_path, {"backoff_initial_s": 0.05, "backoff_max_s": 0.2})
    try:
        bodies = [make_image("raw") for _ in range(3)]
        for body in bodies:
            deliver(broker, body)
        assert wait_for(lambda: service.counters["errors"] >= 3)
        items = service.outbox.items()
        assert [i.img_name for i in items] == [b["img_name"] for b in bodies]
        assert all(i.state == "queued" and i.failures == 0 for i in items)
        assert items[0].tries >= 3
        assert service.status()["status"]["queued"] == 3
    finally:
        service.stop()


def test_blob_target_without_connection_string_keeps_images_queued(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORAGE_CONNECTION_ENV, raising=False)
    service, broker = start_service(tmp_path, {"target": "blob"})
    try:
        deliver(broker, make_image("raw"))
        assert wait_for(lambda: service.outbox.counts()["queued"] == 1)
        time.sleep(0.3)
        status = service.status()["status"]
        assert status["state"] == "target_error" and status["queued"] == 1
        assert STORAGE_CONNECTION_ENV in status["last_error"]
    finally:
        service.stop()


def test_secrets_are_refused_in_the_twin_and_never_logged(
    tmp_path: Path,
    make_image: ImageMaker,
    azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(STORAGE_CONNECTION_ENV, azurite.connection_string)
    service, broker = start_service(tmp_path, {"storage_connection_string": "AccountKey=xyz"})
    try:
        reported = broker.hub("upload").get_twin()["reported"]["config"]
        assert "secret" in reported["error"]["message"]
        deliver(broker, make_image("raw"))
        assert wait_for(lambda: service.counters["uploaded"] == 1)
    finally:
        service.stop()
    key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert key not in logged and "AccountKey=xyz" not in logged and "xyz" not in logged


def test_settings_are_validated_and_documented() -> None:
    from mfgvision.settings import ImageUploadSettings, SettingsError, parse_settings

    with pytest.raises(SettingsError, match="container name"):
        parse_settings(ImageUploadSettings, {"containers": {"raw": "Bad_Name"}})
    with pytest.raises(SettingsError, match="image kind"):
        parse_settings(ImageUploadSettings, {"containers": {"thumbs": "thumbs"}})
    with pytest.raises(SettingsError, match="backoff_max_s"):
        parse_settings(ImageUploadSettings, {"backoff_initial_s": 10, "backoff_max_s": 1})
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in ImageUploadSettings.model_fields:
        assert f"`{name}`" in doc, name


# -- receipts -------------------------------------------------------------------------------------


def receipts_of(broker: InProcessBroker) -> list[dict]:
    return [r for _, output, m in broker.upstream for r in m.json()["receipts"]]


def test_each_request_gets_a_receipt_once_queued_or_rejected(tmp_path: Path) -> None:
    broker = InProcessBroker(
        parse_routes({"r": "FROM /messages/modules/upload/outputs/uploadReceipts INTO $upstream"})
    )
    images = tmp_path / "data" / "images"
    service = ImageUploadService(
        broker.hub("upload"), images, target=LocalFolderTarget(tmp_path / "blobs")
    )
    service.start()
    maker = ImageMaker(images, "line1")
    try:
        good = maker("raw")
        deliver(broker, good)
        deliver(broker, good)  # sent again by a CIS that missed the receipt
        deliver(broker, {**good, "img_name": "../etc/passwd"})
        deliver(broker, {"no": "identity"})
        assert wait_for(lambda: len(receipts_of(broker)) == 3)
        first, again, refused = receipts_of(broker)
        assert first == again == {"unique_id": good["unique_id"], "img_name": good["img_name"]}
        assert refused["unique_id"] == good["unique_id"] and "img_name" in refused["rejected"]
        assert wait_for(lambda: service.counters["uploaded"] == 1)
    finally:
        service.stop()


def test_a_request_the_outbox_cannot_take_gets_no_receipt_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = InProcessBroker(
        parse_routes({"r": "FROM /messages/modules/upload/outputs/uploadReceipts INTO $upstream"})
    )
    images = tmp_path / "data" / "images"
    service = ImageUploadService(
        broker.hub("upload"), images, target=LocalFolderTarget(tmp_path / "blobs")
    )
    service.start()
    maker = ImageMaker(images, "line1")
    real_enqueue = service.outbox.enqueue

    def full(_item: OutboxItem) -> bool:
        raise sqlite3.OperationalError("database or disk is full")

    try:
        monkeypatch.setattr(service.outbox, "enqueue", full)
        with caplog.at_level(logging.INFO, logger="mfgvision.image_upload.service"):
            for _ in range(3):
                deliver(broker, maker("raw"))
            assert wait_for(lambda: service.counters["not_queued"] == 3)
            status = service.status()["status"]
            assert status["state"] == "degraded"
            assert "upload outbox not writable" in status["reasons"][0]
            assert receipts_of(broker) == []
            monkeypatch.setattr(service.outbox, "enqueue", real_enqueue)
            deliver(broker, maker("raw"))
            assert wait_for(lambda: len(receipts_of(broker)) == 1)
        lines = [r.getMessage() for r in caplog.records]
        assert lines.count("upload outbox not writable, requests wait at their sender") == 1
        assert "upload outbox writable again" in lines
        assert not any(r.exc_info for r in caplog.records)
    finally:
        service.stop()
