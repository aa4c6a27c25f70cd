"""Loading models: folders, labels, model cards, providers, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from mfgvision.inference import Model, ModelLoadError, RuntimeOptions, load_model

from .graphs import constant_model, write_model_dir, yolov8_output

LABELS = ["scratch", "hole", "spot"]


def yolo_graph(input_type: int = TensorProto.FLOAT, num_classes: int = 3, **kwargs):
    output = yolov8_output([[100, 200, 300, 400]], [1], [0.9], num_classes=num_classes)
    return constant_model({"output0": output}, input_type=input_type, **kwargs)


def test_name_version_labels_and_providers(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path, yolo_graph(), LABELS, name="defects", version="7")
    model = load_model(model_dir)
    assert isinstance(model, Model)
    assert (model.name, model.version) == ("defects", "7")
    assert model.labels == LABELS
    assert model.providers == ["CPUExecutionProvider"]
    assert model.requested_providers == [
        p
        for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    ]
    assert model.warnings == []


def test_labels_txt_one_level_up(tmp_path: Path) -> None:
    model_dir = write_model_dir(
        tmp_path, yolo_graph(), LABELS, labels_file="labels.txt", labels_in_parent=True
    )
    assert not (model_dir / "labels.txt").exists()
    assert load_model(model_dir).labels == LABELS


def test_missing_gpu_provider_is_reported_and_cpu_runs(tmp_path: Path) -> None:
    options = RuntimeOptions(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    model = load_model(write_model_dir(tmp_path, yolo_graph(), LABELS), options)

    assert model.requested_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert model.providers == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in w for w in model.warnings)
    (det,) = model.detect(np.zeros((640, 640, 3), np.uint8)).detections
    assert det.label == "hole"


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_tensorrt_gets_its_engine_cache_in_the_model_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretend this onnxruntime offers TensorRT: the cache folder is prepared, CPU still runs."""
    offered = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: offered)
    model_dir = write_model_dir(tmp_path, yolo_graph(), LABELS)

    model = load_model(model_dir, RuntimeOptions(intra_op_threads=1))

    assert model.requested_providers == offered
    assert (model_dir / "trt_cache").is_dir()
    assert model.providers == ["CPUExecutionProvider"]
    assert any("TensorrtExecutionProvider" in w for w in model.warnings)
    assert len(model.detect(np.zeros((64, 64, 3), np.uint8)).detections) == 1


def test_corrupt_model_file(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path, b"\x08\x07not a protobuf", LABELS)
    with pytest.raises(ModelLoadError, match="cannot be loaded") as err:
        load_model(model_dir)
    assert str(model_dir / "model.onnx") in str(err.value)


def test_missing_model_file_and_folder(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path, yolo_graph(), LABELS)
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_model(model_dir)
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_model(tmp_path / "nope" / "1")


def test_missing_labels(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path, yolo_graph(), LABELS)
    (model_dir / "labels.json").unlink()
    with pytest.raises(ModelLoadError, match=r"no labels\.json or labels\.txt"):
        load_model(model_dir)


@pytest.mark.parametrize("content", ["{not json", '{"a": 1}', "[]", '["a", 3]'])
def test_bad_labels_json(tmp_path: Path, content: str) -> None:
    model_dir = write_model_dir(tmp_path, yolo_graph(), LABELS)
    (model_dir / "labels.json").write_text(content, encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"labels\.json"):
        load_model(model_dir)


def test_label_count_must_match_the_graph(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path, yolo_graph(), ["scratch", "hole"])
    with pytest.raises(ModelLoadError, match="3 classes but the labels list 2"):
        load_model(model_dir)


def test_unknown_layout_names_what_was_found(tmp_path: Path) -> None:
    graph = constant_model({"weird": np.zeros((1, 2, 3, 4, 5), np.float32)})
    with pytest.raises(ModelLoadError, match=r"unknown model layout.*weird tensor\(float\)"):
        load_model(write_model_dir(tmp_path, graph, LABELS))


def test_model_card_family_must_fit_the_graph(tmp_path: Path) -> None:
    card = {"family": "acv-od"}
    with pytest.raises(ModelLoadError, match="detected_boxes"):
        load_model(write_model_dir(tmp_path, yolo_graph(), LABELS, card=card))


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ({"family": "yolov9000"}, "unknown model family 'yolov9000'"),
        ({"input_size": [640]}, "input_size"),
        ({"normalise": {"channel_order": "GBR"}}, "normalise.channel_order"),
        ({"normalise": {"std": [0, 1, 1]}}, "normalise.std"),
        ({"letterbox_colour": 300}, "letterbox_colour"),
        ({"input_size": [320, 320]}, "does not match the graph's input 640x640"),
    ],
)
def test_invalid_model_card(tmp_path: Path, card: dict, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(write_model_dir(tmp_path, yolo_graph(), LABELS, card=card))


def test_model_card_sets_input_size_of_a_dynamic_graph(tmp_path: Path) -> None:
    graph = yolo_graph(input_shape=(1, 3, "height", "width"))
    card = {"input_size": [320, 256], "letterbox_colour": [0, 0, 0], "notes": "trained on line 4"}
    model = load_model(write_model_dir(tmp_path, graph, LABELS, card=card))
    assert model.input_size == (320, 256)
    assert model.warnings == ["model.yaml: unknown key 'notes' ignored"]
    (tensor,) = model.adapter.preprocess(np.full((100, 100, 3), 255, np.uint8))[0].values()
    assert tensor.shape == (1, 3, 256, 320)
    assert tensor[0, :, 0, 0].tolist() == [0, 0, 0]  # padding colour from the card
    assert tensor[0, :, 128, 160].tolist() == [1, 1, 1]


def test_fp16_input(tmp_path: Path) -> None:
    model = load_model(write_model_dir(tmp_path, yolo_graph(TensorProto.FLOAT16), LABELS))
    (det,) = model.detect(np.zeros((480, 640, 3), np.uint8)).detections
    assert det.label == "hole"


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640), np.uint8),
        np.zeros((480, 640, 1), np.uint8),
        np.zeros((480, 640, 4), np.uint8),
    ],
    ids=["grey", "grey-1ch", "bgra"],
)
def test_grey_and_bgra_frames(tmp_path: Path, frame: np.ndarray) -> None:
    model = load_model(write_model_dir(tmp_path, yolo_graph(), LABELS))
    result = model.detect(frame)
    assert (result.frame_width, result.frame_height) == (640, 480)
    assert len(result.detections) == 1


def test_bad_frames_and_thresholds(tmp_path: Path) -> None:
    model = load_model(write_model_dir(tmp_path, yolo_graph(), LABELS))
    with pytest.raises(ValueError, match="uint8"):
        model.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError, match="prob_threshold"):
        model.detect(np.zeros((10, 10, 3), np.uint8), prob_threshold=1.5)


def test_warmup_and_close(tmp_path: Path) -> None:
    with load_model(write_model_dir(tmp_path, yolo_graph(), LABELS)) as model:
        model.warmup()
    with pytest.raises(RuntimeError, match="closed"):
        model.detect(np.zeros((10, 10, 3), np.uint8))
