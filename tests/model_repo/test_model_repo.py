import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.inference import load_model
from mfgvision.model_repo import inventory as inventory_module
from mfgvision.model_repo.inventory import Inventory, seed, validate
from mfgvision.model_repo.service import INVENTORY_FILE, ModelRepoService
from mfgvision.runtime import Paths
from tests.cis.conftest import LABELS, yolo_model_bytes
from tests.factories import wait_for
from tests.inference.graphs import write_model_dir


def _with_golden(folder: Path) -> dict:
    image = np.full((720, 1280, 3), 90, np.uint8)
    cv2.imwrite(str(folder / "golden.jpg"), image)
    result = load_model(folder).detect(cv2.imread(str(folder / "golden.jpg")), 0.25, 0.45)
    golden = {
        "prob_threshold": 0.25,
        "iou_threshold": 0.45,
        "detections": [d.to_dict() for d in result.detections],
    }
    (folder / "golden.json").write_text(json.dumps(golden))
    return golden


def test_seed_copies_missing_versions_and_never_overwrites(tmp_path):
    shipped, volume = tmp_path / "shipped", tmp_path / "volume"
    write_model_dir(shipped, yolo_model_bytes(), LABELS, name="m", version="1")
    write_model_dir(shipped, yolo_model_bytes(), LABELS, name="m", version="2")
    write_model_dir(volume, b"locally changed", LABELS, name="m", version="2")
    assert seed(shipped, volume) == ["m/1"]
    assert (volume / "m" / "1" / "model.onnx").read_bytes() == yolo_model_bytes()
    assert (volume / "m" / "2" / "model.onnx").read_bytes() == b"locally changed"
    assert seed(shipped, volume) == []
    assert not [p for p in (volume / "m").iterdir() if p.name.startswith(".")]
    assert seed(volume, volume) == []


def test_validation_checks_the_golden_image(tmp_path):
    folder = write_model_dir(tmp_path, yolo_model_bytes(), LABELS, name="m", version="1")
    golden = _with_golden(folder)
    report = validate(folder, tolerance=0.05)
    assert report.valid and report.golden == "passed" and report.family == "yolov8"
    assert report.labels == LABELS and report.input_size == [320, 320]
    golden["detections"][0]["probability"] -= 0.2
    (folder / "golden.json").write_text(json.dumps(golden))
    report = validate(folder, tolerance=0.05)
    assert not report.valid and report.golden.startswith("failed: no match")
    golden["detections"] = golden["detections"][:1]
    (folder / "golden.json").write_text(json.dumps(golden))
    assert "1 recorded" in validate(folder, tolerance=0.05).golden


def test_bad_versions_are_reported_not_raised(tmp_path):
    write_model_dir(tmp_path, b"not onnx", LABELS, name="broken", version="1")
    write_model_dir(tmp_path, yolo_model_bytes(), ["only", "two"], name="labels", version="1")
    write_model_dir(tmp_path, yolo_model_bytes(), LABELS, name="good", version="3")
    found = Inventory(tmp_path).refresh(tolerance=0.05)
    assert set(found) == {"broken/1", "labels/1", "good/3"}
    assert found["good/3"]["valid"] and found["good/3"]["golden"] == "none"
    assert not found["broken/1"]["valid"] and "model.onnx" in found["broken/1"]["error"]
    assert not found["labels/1"]["valid"] and "labels" in found["labels/1"]["error"]


def test_unchanged_versions_are_not_loaded_again(tmp_path, monkeypatch):
    good = write_model_dir(tmp_path, yolo_model_bytes(), LABELS, name="good", version="1")
    write_model_dir(tmp_path, yolo_model_bytes(), LABELS, name="other", version="1")
    checked: list[str] = []
    real = inventory_module.validate
    monkeypatch.setattr(
        inventory_module,
        "validate",
        lambda folder, tolerance: checked.append(folder.parent.name) or real(folder, tolerance),
    )
    models = Inventory(tmp_path)
    first = models.refresh(tolerance=0.05)
    assert sorted(checked) == ["good", "other"]
    assert models.refresh(tolerance=0.05) == first and len(checked) == 2
    (good / "model.onnx").write_bytes(b"replaced by something broken")
    second = models.refresh(tolerance=0.05)
    assert checked[2:] == ["good"]
    assert not second["good/1"]["valid"] and second["other/1"] == first["other/1"]
    (tmp_path / "good" / "labels.txt").write_text("a\nb\n")  # labels beside the versions count
    models.refresh(tolerance=0.05)
    assert checked[3:] == ["good"]
    models.refresh(tolerance=0.10)  # a new tolerance checks every version again
    assert sorted(checked[4:]) == ["good", "other"]
    shutil.rmtree(tmp_path / "other")
    assert set(models.refresh(tolerance=0.10)) == {"good/1"}


def test_service_seeds_reports_and_writes_the_inventory(tmp_path):
    shipped = tmp_path / "shipped"
    write_model_dir(shipped / "models", yolo_model_bytes(), LABELS, name="m", version="1")
    (shipped / "samples" / "line1").mkdir(parents=True)
    (shipped / "samples" / "line1" / "a.jpg").write_bytes(b"jpeg")
    paths = Paths(
        assets=tmp_path / "assets", models=tmp_path / "assets" / "models", data=tmp_path / "data"
    )
    broker = InProcessBroker([])
    service = ModelRepoService(
        broker.hub("ModelRepo", {"interval_s": 3600}), paths, shipped=shipped
    )
    service.start()
    try:
        hub = broker.hub("ModelRepo")
        assert wait_for(lambda: "m/1" in hub.get_twin()["reported"].get("models", {}))
        reported = hub.get_twin()["reported"]
        assert reported["models"]["m/1"]["valid"]
        assert reported["status"]["seeded"] == ["m/1", "samples/line1"]
        assert (paths.assets / "samples" / "line1" / "a.jpg").is_file()
        on_disk = json.loads((paths.data / INVENTORY_FILE).read_text())
        assert on_disk["models"]["m/1"]["labels"] == LABELS
        write_model_dir(paths.models, b"bad", LABELS, name="m", version="2")
        assert hub.call_method("run_now", None)[0] == 200
        assert wait_for(lambda: "m/2" in hub.get_twin()["reported"]["models"])
        assert hub.get_twin()["reported"]["status"]["invalid"] == ["m/2"]
    finally:
        service.stop()
