import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from mfgvision.cis.models import ModelManager, ModelRequest
from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.image_upload.service import ImageUploadService, LocalFolderTarget
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from tests.cis.conftest import (
    CLASSES,
    FRAME_BOXES,
    FRAME_H,
    FRAME_W,
    LABELS,
    SCORES,
    yolo_model_bytes,
)
from tests.factories import recent, wait_for

ROUTES = [
    parse_route("up", "FROM /messages/modules/cam/outputs/inference INTO $upstream"),
    parse_route(
        "img",
        'FROM /messages/modules/cam/outputs/imageUpload INTO BrokeredEndpoint("/modules/upload/inputs/imageUpload")',
    ),
]
NAME = re.compile(r"^line9-left-\d{8}T\d{12}-(annotated|raw|retrain)\.jpg$")


def _desired(frames_dir: Path, **extra) -> dict:
    return {
        "camera_type": "folder",
        "camera_uri": str(frames_dir),
        "camera_id": "cam-9",
        "camera_location": "line9",
        "camera_position": "left",
        "camera_fps": 20,
        "inference_fps": 0,
        "model_name": "const",
        "model_version": "1",
        "prob_threshold": 0.5,
        "retrain_interval_s": 3600,
        **extra,
    }


def _rows(db: Database) -> int:
    return len(recent(db, 1000))


@pytest.fixture
def running(tmp_path, models_dir, frames_dir):
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker(ROUTES)
    db_url = f"sqlite:///{tmp_path / 'data' / 'cis.db'}"
    cis = CisService(
        broker.hub("cam", _desired(frames_dir)), paths, Database(db_url), report_every_s=0.2
    )
    upload = ImageUploadService(broker.hub("upload"), paths.images, LocalFolderTarget(paths.blobs))
    upload.start()
    cis.start()
    reader = Database(db_url)
    yield cis, broker, reader, paths
    cis.stop()
    upload.stop()
    reader.close()


def test_frames_flow_to_rows_images_messages_and_uploads(running):
    cis, broker, db, paths = running
    assert wait_for(lambda: _rows(db) >= 3)
    record = recent(db, 1)[0]
    assert (record.frame_width, record.frame_height) == (FRAME_W, FRAME_H)
    assert record.camera_id == "cam-9" and record.model_name == "const"
    got = sorted(record.detections, key=lambda d: d.label_id)
    assert [d.label for d in got] == [LABELS[c] for c in CLASSES]
    for det, box, score in zip(got, FRAME_BOXES, SCORES, strict=True):
        assert det.probability == pytest.approx(score, abs=1e-3)
        assert det.box.as_list() == pytest.approx(box, abs=1.0)  # original-frame pixels
        assert det.box_norm.x2 == pytest.approx(box[2] / FRAME_W, abs=1e-3)
    # images: annotated (drawn at reduced size) and the raw JPEG bytes, named by UTC time
    assert record.annotated_image_name and NAME.match(record.annotated_image_name)
    assert record.raw_image_name.endswith("-raw.jpg")
    raw = (paths.images / record.raw_image_name).read_bytes()
    assert raw in {p.read_bytes() for p in Path(cis.pipeline.settings.camera_uri).glob("*.jpg")}
    # upstream message with the contract's fields
    assert wait_for(lambda: len(broker.upstream) >= 3)
    body = broker.upstream[0][2].json()
    assert body["created"].endswith("Z") and body["object_detected"] is True
    assert {d["label"] for d in body["detected_objects"]} == {"scratch", "hole"}
    assert all(0 <= d["probability"] <= 1 for d in body["detected_objects"])
    # the image upload route delivered copies to <container>/<location>/<position>/<yyyy>/<mm>/<dd>/
    assert wait_for(lambda: any(paths.blobs.glob("images-annotated/line9/left/*/*/*/*.jpg")))
    assert any(paths.blobs.glob("images-frame/line9/left/*/*/*/*-raw.jpg"))
    assert any(paths.blobs.glob("images-retraining/line9/left/*/*/*/*-retrain.jpg"))
    # one frame an hour is kept for retraining, and its row says so (the first one inferred)
    kept = [r for r in recent(db, 1000) if r.retrain_reason is not None]
    assert [r.retrain_reason for r in kept] == ["interval"]
    assert kept[0].retrain_image_name and (paths.images / kept[0].retrain_image_name).is_file()
    # the writer keeps writing (a temporary file exists while one is written); none is left behind
    in_flight = set(paths.images.glob(".*.tmp"))  # the writer may be mid-write right now
    assert wait_for(lambda: not any(p.exists() for p in in_flight), timeout=5)


def test_status_is_reported_and_patches_apply_live(running, frames_dir):
    cis, broker, db, _ = running
    hub = broker.hub("cam")
    assert wait_for(lambda: hub.get_twin()["reported"].get("status", {}).get("state") == "running")
    version = broker.patch_desired("cam", {"prob_threshold": 0.95})
    assert wait_for(lambda: hub.get_twin()["reported"]["config"]["applied_version"] == version)
    assert hub.get_twin()["reported"]["config"]["settings"]["prob_threshold"] == 0.95
    n = _rows(db)
    assert wait_for(lambda: _rows(db) >= n + 3)
    assert recent(db, 1)[0].detections == []  # both scores are below the new threshold

    bad = broker.patch_desired("cam", {"prob_threshold": "high", "inference_fps": 2})
    assert wait_for(
        lambda: (hub.get_twin()["reported"]["config"].get("error") or {}).get("version") == bad
    )
    reported = hub.get_twin()["reported"]["config"]
    assert "prob_threshold" in reported["error"]["message"]
    assert reported["applied_version"] == version
    assert cis.pipeline.settings.prob_threshold == 0.95 and cis.pipeline.settings.inference_fps == 0


def test_rows_and_messages_record_the_threshold_and_settings_version_in_force(running):
    _, broker, db, _ = running
    hub = broker.hub("cam")
    first = hub.get_twin()["desired"]["$version"]
    assert wait_for(lambda: _rows(db) >= 1)
    row = recent(db, 1)[0]
    assert (row.prob_threshold, row.settings_version) == (0.5, first)

    version = broker.patch_desired("cam", {"prob_threshold": 0.95})
    assert version != first
    assert wait_for(lambda: recent(db, 1)[0].settings_version == version)
    row = recent(db, 1)[0]
    assert row.prob_threshold == 0.95 and row.verdict == "OK"  # both scores are below 0.95

    refused = broker.patch_desired("cam", {"prob_threshold": "high"})
    assert wait_for(
        lambda: (hub.get_twin()["reported"]["config"].get("error") or {}).get("version") == refused
    )
    n = _rows(db)
    assert wait_for(lambda: _rows(db) >= n + 2)
    row = recent(db, 1)[0]  # the last good settings keep serving, and their version is recorded
    assert (row.prob_threshold, row.settings_version) == (0.95, version)
    body = broker.upstream[-1][2].json()
    assert (body["prob_threshold"], body["settings_version"]) == (0.95, version)


def test_direct_methods(running):
    cis, broker, _, _ = running
    hub = broker.hub("cam")
    assert cis.pipeline.models.wait_ready(20)
    status, result = hub.call_method("capture_now", {"timeout_s": 10})
    assert status == 200 and {d["label"] for d in result["detections"]} == {"scratch", "hole"}
    assert hub.call_method("status", None)[1]["status"]["model"]["serving"] == "const/1"
    assert hub.call_method("reload_model", None)[0] == 200
    assert hub.call_method("capture_now", "not-a-dict")[0] == 400
    assert hub.call_method("explode", None)[0] == 404


def test_unreadable_images_are_skipped(tmp_path, models_dir, frames_dir):
    (frames_dir / "f1.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (frames_dir / "f2.jpg").write_bytes((frames_dir / "f3.jpg").read_bytes()[:2000])  # truncated
    paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
    broker = InProcessBroker([])
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    cis = CisService(broker.hub("cam", _desired(frames_dir)), paths, db, report_every_s=0.2)
    cis.start()
    try:
        assert wait_for(lambda: cis.pipeline.metrics.counters["rows_written"] >= 4)
        assert cis.pipeline.status()["state"] == "running"
    finally:
        cis.stop()


def test_missing_then_corrupt_then_good_model(tmp_path):
    models = tmp_path / "models"
    manager = ModelManager(models, retry_s=0.1)
    loader = manager.acquire(ModelRequest("const", "1"))
    assert wait_for(lambda: loader.error is not None)
    assert "const" in loader.error and loader.current is None
    folder = models / "const" / "1"
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(LABELS))
    (folder / "model.onnx").write_bytes(b"corrupt bytes")
    assert wait_for(lambda: loader.error is not None and "model.onnx" in loader.error)
    good = yolo_model_bytes()
    tmp = folder / "model.onnx.part"
    tmp.write_bytes(good)
    tmp.replace(folder / "model.onnx")
    assert wait_for(lambda: loader.current is not None)
    assert loader.error is None and loader.current.labels == LABELS
    manager.stop()


def test_a_failed_reload_keeps_the_loaded_model_serving(tmp_path, models_dir):
    manager = ModelManager(models_dir, retry_s=0.1)
    loader = manager.acquire(ModelRequest("const", "1"))
    assert loader.wait_ready(20)
    serving = loader.current
    model_file = models_dir / "const" / "1" / "model.onnx"
    good = model_file.read_bytes()
    model_file.write_bytes(b"corrupt bytes")
    assert manager.reload() == ["const/1"]
    assert wait_for(lambda: loader.error is not None)
    assert loader.current is serving
    model_file.write_bytes(good)
    assert wait_for(lambda: loader.current is not serving and loader.error is None)
    manager.stop()


def test_cameras_on_one_model_share_its_session_until_the_last_lets_go(tmp_path, models_dir):
    shutil.copytree(models_dir / "const" / "1", models_dir / "const" / "2")
    manager = ModelManager(models_dir, retry_s=0.1)
    first = manager.acquire(ModelRequest("const", "1"))
    again = manager.acquire(ModelRequest("const", "1"))
    other = manager.acquire(ModelRequest("const", "2"))
    assert first is again and other is not first
    assert sorted(r.label for r in manager.loaders()) == ["const/1", "const/2"]
    assert first.wait_ready(20) and other.wait_ready(20)
    manager.release(first)
    assert ModelRequest("const", "1") in manager.loaders()  # one camera still uses it
    manager.release(again)
    assert sorted(r.label for r in manager.loaders()) == ["const/2"]
    model = first.current

    def closed() -> bool:
        try:
            model.detect(np.zeros((8, 8, 3), np.uint8))
        except RuntimeError as exc:
            return "closed" in str(exc)
        return False

    assert wait_for(closed)  # its session is released
    manager.stop()


def test_module_stays_up_without_a_model(tmp_path, frames_dir):
    paths = Paths(assets=tmp_path, models=tmp_path / "no-models", data=tmp_path / "data")
    broker = InProcessBroker([])
    cis = CisService(
        broker.hub("cam", _desired(frames_dir)),
        paths,
        Database(f"sqlite:///{tmp_path / 'c.db'}"),
        report_every_s=0.1,
    )
    cis.start()
    try:
        hub = broker.hub("cam")
        assert wait_for(
            lambda: hub.get_twin()["reported"].get("status", {}).get("state") == "model_error"
        )
        reported = hub.get_twin()["reported"]["status"]
        assert "const" in reported["model"]["error"]
        assert threading.active_count() > 1
    finally:
        cis.stop()


def test_live_model_swap_keeps_every_frame_and_the_camera(running, models_dir):
    cis, broker, db, _ = running
    hub = broker.hub("cam")
    pipeline = cis.pipeline
    assert pipeline.models.wait_ready(20)
    grabber = pipeline.grabber
    assert wait_for(lambda: pipeline.metrics.counters["rows_written"] >= 3)
    shutil.copytree(models_dir / "const" / "1", models_dir / "const" / "2")
    before = dict(pipeline.metrics.counters)
    version = broker.patch_desired("cam", {"model_version": "2"})
    assert wait_for(lambda: hub.get_twin()["reported"]["status"]["model"]["serving"] == "const/2")
    assert hub.get_twin()["reported"]["config"]["applied_version"] == version
    assert wait_for(lambda: any(r.model_version == "2" for r in recent(db, 50)))
    counters = pipeline.metrics.counters
    assert counters["inferences"] > before["inferences"]
    # no restart and no frame lost to the swap: same capture thread, every frame had a model
    assert pipeline.grabber is grabber and grabber.stats.reconnects == 0
    for lost in ("frames_without_model", "inference_errors", "dropped_outcomes"):
        assert counters.get(lost, 0) == before.get(lost, 0), lost
    versions = [r.model_version for r in reversed(recent(db, 1000))]
    assert versions[0] == "1" and versions[-1] == "2"
    assert versions == sorted(versions)  # one clean switch, never back


def test_frames_are_decoded_on_the_capture_thread_only_when_all_are_inferred(running):
    cis, broker, _, _ = running
    pipeline = cis.pipeline
    assert pipeline.models.wait_ready(20)
    grabber = pipeline.grabber
    # inference_fps 0: every frame goes to the model, so the capture thread decodes it
    assert wait_for(lambda: grabber.stats.decode_ms > 0)
    assert grabber.decode_side is not None

    broker.patch_desired("cam", {"inference_fps": 2})  # the camera runs at 20 frames/s
    assert wait_for(lambda: pipeline.settings.inference_fps == 2)
    assert wait_for(lambda: grabber.decode_side is None)

    def decoded_when_inferred() -> int:
        return pipeline.metrics.summary().get("decode", {}).get("n", 0)

    before = decoded_when_inferred()
    assert wait_for(lambda: decoded_when_inferred() >= before + 2)  # only admitted frames


def test_a_refused_model_leaves_the_old_one_serving_and_the_state_degraded(running, models_dir):
    cis, broker, _, _ = running
    hub = broker.hub("cam")
    assert cis.pipeline.models.wait_ready(20)
    broker.patch_desired("cam", {"model_version": "2"})  # not on the model volume
    assert wait_for(lambda: cis.status()["status"]["state"] == "degraded")
    status = cis.status()["status"]
    assert status["model"]["serving"] == "const/1"
    assert status["reasons"][0].startswith("model refused, the previous one serves")
    assert wait_for(lambda: hub.get_twin()["reported"]["status"]["state"] == "degraded")
    shutil.copytree(models_dir / "const" / "1", models_dir / "const" / "2")
    assert wait_for(lambda: cis.status()["status"]["state"] == "running")
    assert cis.status()["status"]["reasons"] == []
