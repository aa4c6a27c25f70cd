"""Softmax and sigmoid classifiers through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfgvision.inference import load_model

from .graphs import (
    PROBE_GAIN,
    PROBE_OFFSET,
    channel_mean_model,
    constant_model,
    sigmoid,
    softmax,
    write_model_dir,
    zipmap_model,
)

LABELS = ["ok", "scratch", "dent"]


def scores_model(scores: list[float], shape: tuple[int, ...] = (1, 3)):
    value = np.array(scores, np.float32).reshape(shape)
    return constant_model({"model_output": value}, input_name="data", input_shape=(1, 3, 224, 224))


def assert_whole_frame(det, frame: np.ndarray) -> None:
    height, width = frame.shape[:2]
    assert det.box.as_list() == [0, 0, width, height]
    assert det.box_norm.as_list() == [0, 0, 1, 1]


def test_softmax_is_applied_to_logits(tmp_path: Path, frame) -> None:
    logits = [0.5, 2.5, -1.0]
    model = load_model(write_model_dir(tmp_path, scores_model(logits), LABELS))
    assert model.family == "classification-softmax"

    (det,) = model.detect(frame, prob_threshold=0.5).detections

    assert det.label == "scratch"
    assert det.label_id == 1
    assert det.probability == pytest.approx(softmax(logits)[1], rel=1e-5)
    assert_whole_frame(det, frame)
    assert model.detect(frame, prob_threshold=0.9).detections == []


def test_probabilities_from_the_graph_are_not_softmaxed_again(tmp_path: Path, frame) -> None:
    model = load_model(
        write_model_dir(tmp_path, scores_model([0.2, 0.1, 0.7], (1, 3, 1, 1)), LABELS)
    )
    (det,) = model.detect(frame, prob_threshold=0.5).detections
    assert (det.label, det.probability) == ("dent", pytest.approx(0.7))


def test_card_says_logits_even_when_they_look_like_probabilities(tmp_path: Path, frame) -> None:
    scores = [0.2, 0.1, 0.7]
    model_dir = write_model_dir(tmp_path, scores_model(scores), LABELS, card={"scores": "logits"})
    (det,) = load_model(model_dir).detect(frame, prob_threshold=0.3).detections
    assert det.probability == pytest.approx(softmax(scores)[2], rel=1e-5)


def test_sigmoid_multi_label_reports_every_class_above_threshold(tmp_path: Path, frame) -> None:
    logits = [1.5, -2.0, 3.0]
    model_dir = write_model_dir(
        tmp_path, scores_model(logits), LABELS, card={"family": "classification-sigmoid"}
    )
    model = load_model(model_dir)
    assert model.family == "classification-sigmoid"

    result = model.detect(frame, prob_threshold=0.5)

    assert [d.label for d in result.detections] == ["dent", "ok"]
    assert [d.probability for d in result.detections] == pytest.approx(
        [sigmoid(3.0), sigmoid(1.5)], rel=1e-5
    )
    for det in result.detections:
        assert_whole_frame(det, frame)
    assert [d.label for d in model.detect(frame, prob_threshold=0.95).detections] == ["dent"]


def test_classic_custom_vision_label_map_output(tmp_path: Path, frame) -> None:
    labels = ["hardhat", "no_hardhat", "people"]
    graph = zipmap_model(np.array([[0.1, 0.6, 0.3]], np.float32), labels)
    model = load_model(write_model_dir(tmp_path, graph, labels, labels_file="labels.txt"))
    assert model.family == "classification-softmax"
    (det,) = model.detect(frame, prob_threshold=0.5).detections
    assert (det.label, det.probability) == ("no_hardhat", pytest.approx(0.6))


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        # default for classifiers: RGB, /255, ImageNet mean and std
        (
            {},
            [(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (10 / 255 - 0.406) / 0.225],
        ),
        (
            {"normalise": {"scale": 255, "mean": [0, 0, 0], "std": [1, 1, 1]}},
            [200 / 255, 100 / 255, 10 / 255],
        ),
        (
            {
                "normalise": {
                    "scale": 1,
                    "mean": [0, 0, 0],
                    "std": [1, 1, 1],
                    "channel_order": "BGR",
                }
            },
            [10, 100, 200],
        ),
        (
            {"normalise": {"channel_order": "BGR"}},
            [(10 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (200 / 255 - 0.406) / 0.225],
        ),
    ],
)
def test_model_sees_the_channel_order_and_normalisation_it_asks_for(
    tmp_path: Path, card: dict, expected: list[float]
) -> None:
    """The probe graph's scores encode the mean of each input channel it was fed."""
    card = {"family": "classification-sigmoid", "scores": "probabilities", **card}
    labels = ["c0", "c1", "c2"]
    model = load_model(write_model_dir(tmp_path, channel_mean_model(), labels, card=card))
    frame = np.zeros((300, 400, 3), np.uint8)
    frame[:] = (10, 100, 200)  # B, G, R

    result = model.detect(frame, prob_threshold=0.0)

    by_label = {d.label: d.probability for d in result.detections}
    fed = [(by_label[label] - PROBE_OFFSET) / PROBE_GAIN for label in labels]
    assert fed == pytest.approx(expected, abs=1e-3)
