"""``mfgvision export-dataset``: the retraining set written as YOLO and COCO and read back by
independent readers (globox for YOLO, pycocotools for COCO), filters, and the upload to Azurite."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import globox
import numpy as np
import pytest
import yaml
from azure.storage.blob import BlobServiceClient
from pycocotools.coco import COCO

from mfgvision.cli import build_parser
from mfgvision.dataset_export import export_main
from mfgvision.image_upload.targets import STORAGE_CONNECTION_ENV
from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Database
from mfgvision.store.feedback import Feedback, LabelBox, save_feedback
from mfgvision.store.records import InferenceRecord
from tests.factories import make_detection, make_record
from tests.services import Azurite, azurite  # noqa: F401  (fixture)

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)
W, H = 640, 480


def detection(label_id: int, label: str, norm: tuple[float, float, float, float]) -> Detection:
    x1, y1, x2, y2 = norm
    return make_detection(label_id, label, 0.9, Box(x1 * W, y1 * H, x2 * W, y2 * H))


def stored(
    images: Path,
    i: int,
    camera: str = "cam-a",
    reason: str | None = "interval",
    dets: tuple = (),
    image: bool = True,
) -> InferenceRecord:
    name = f"frame-{i}.jpg"
    if image:
        frame = np.full((H, W, 3), 40 + i, np.uint8)
        cv2.imwrite(str(images / name), frame)
    return make_record(
        created=T0 + timedelta(minutes=i),
        camera_id=camera,
        frame_width=W,
        frame_height=H,
        detections=list(dets),
        retrain_reason=reason,
        retrain_image_name=name if reason else None,
        raw_image_name=None if reason else name,
    )


@pytest.fixture
def line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, InferenceRecord]:
    """A data folder with rows of every kind the retraining set has or leaves out."""
    data = tmp_path / "data"
    images = data / "images"
    images.mkdir(parents=True)
    monkeypatch.setenv("MFGVISION_DB_URL", f"sqlite:///{data / 'mfgvision.db'}")
    monkeypatch.delenv(STORAGE_CONNECTION_ENV, raising=False)
    rows = {
        "interval_ng": stored(images, 0, dets=(detection(0, "scratch", (0.1, 0.2, 0.3, 0.4)),)),
        "uncertain_two": stored(
            images,
            1,
            reason="uncertain",
            dets=(
                detection(0, "scratch", (0.5, 0.5, 0.6, 0.7)),
                detection(2, "hole", (0.05, 0.05, 0.15, 0.1)),
            ),
        ),
        "other_camera": stored(images, 2, camera="cam-b"),
        "not_kept": stored(
            images, 3, reason=None, dets=(detection(0, "scratch", (0.1, 0.1, 0.2, 0.2)),)
        ),
        "operator_missed": stored(images, 4, reason=None),
        "operator_false_ng": stored(
            images, 5, reason=None, dets=(detection(2, "hole", (0.4, 0.4, 0.5, 0.5)),)
        ),
        "image_gone": stored(images, 6, image=False),
    }
    db = Database(f"sqlite:///{data / 'mfgvision.db'}")
    db.create_schema()
    db.write(list(rows.values()))
    save_feedback(
        db.engine,
        Feedback(
            rows["operator_missed"].unique_id,
            "missed_defect",
            (LabelBox("dent", (0.2, 0.3, 0.4, 0.6)),),
            "dent at the flange",
        ),
    )
    save_feedback(db.engine, Feedback(rows["operator_false_ng"].unique_id, "false_ng", ()))
    db.close()
    return rows


def export(tmp_path: Path, *args: str) -> Path:
    """Run the command into a new folder; returns it."""
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    # the command's own function: main() would also point the process's logging at this test's
    # captured stderr, which is closed after it
    parsed = build_parser().parse_args(
        ["export-dataset", "--out", str(out), "--data-dir", str(tmp_path / "data"), *args]
    )
    code = export_main(parsed)
    assert code == 0
    return out


def read_result(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_retraining_set_reads_back_as_yolo_and_coco_with_pre_labels_and_corrections(
    tmp_path: Path, line: dict[str, InferenceRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    out = export(tmp_path)
    result = read_result(capsys)
    expected = {
        "interval_ng": [("scratch", (0.1, 0.2, 0.3, 0.4))],
        "uncertain_two": [("scratch", (0.5, 0.5, 0.6, 0.7)), ("hole", (0.05, 0.05, 0.15, 0.1))],
        "other_camera": [],
        "operator_missed": [("dent", (0.2, 0.3, 0.4, 0.6))],  # the operator's box, a new class
        "operator_false_ng": [],  # the model's hole was wrong
    }
    assert result["images"] == len(expected) and result["missing_images"] == 1
    assert result["boxes"] == 4

    names = yaml.safe_load((out / "data.yaml").read_text())["names"]
    assert names == {0: "scratch", 1: "class_1", 2: "hole", 3: "dent"}
    yolo = globox.AnnotationSet.from_yolo_v5(
        folder=out / "labels", image_folder=out / "images"
    ).map_labels({str(i): n for i, n in names.items()})
    coco = COCO(str(out / "annotations.coco.json"))
    coco_images = {Path(img["file_name"]).stem: img for img in coco.dataset["images"]}
    assert (
        set(coco_images)
        == {line[k].unique_id for k in expected}
        == {Path(i).stem for i in yolo.image_ids}
    )

    for key, boxes in expected.items():
        uid = line[key].unique_id
        annotation = yolo[f"{uid}.jpg"]
        assert annotation.image_size == (W, H)
        got = sorted((b.label, tuple(round(v, 1) for v in b.ltrb)) for b in annotation.boxes)
        want = sorted(
            (n, (round(x1 * W, 1), round(y1 * H, 1), round(x2 * W, 1), round(y2 * H, 1)))
            for n, (x1, y1, x2, y2) in boxes
        )
        assert got == want
        image = coco_images[uid]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        coco_got = sorted(
            (coco.loadCats(a["category_id"])[0]["name"], tuple(round(v, 1) for v in a["bbox"]))
            for a in anns
        )
        coco_want = sorted(
            (
                n,
                (
                    round(x1 * W, 1),
                    round(y1 * H, 1),
                    round((x2 - x1) * W, 1),
                    round((y2 - y1) * H, 1),
                ),
            )
            for n, (x1, y1, x2, y2) in boxes
        )
        assert coco_got == coco_want
        assert (image["width"], image["height"]) == (W, H)

    about = {
        json.loads(line_)["unique_id"]: json.loads(line_)
        for line_ in (out / "inspections.jsonl").read_text().splitlines()
    }
    assert about[line["operator_missed"].unique_id]["labels_from"] == "operator"
    assert about[line["operator_missed"].unique_id]["note"] == "dent at the flange"
    assert about[line["uncertain_two"].unique_id]["reasons"] == ["uncertain"]
    assert line["not_kept"].unique_id not in about


def test_filters_by_camera_reason_class_and_time(
    tmp_path: Path, line: dict[str, InferenceRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    def ids(*args: str) -> set[str]:
        out = export(tmp_path, *args)
        read_result(capsys)
        return {p.stem for p in (out / "images").iterdir()}

    assert ids("--camera", "cam-b") == {line["other_camera"].unique_id}
    assert ids("--reason", "operator") == {
        line["operator_missed"].unique_id,
        line["operator_false_ng"].unique_id,
    }
    assert ids("--class", "hole") == {line["uncertain_two"].unique_id}
    since = (T0 + timedelta(minutes=2)).isoformat()
    until = (T0 + timedelta(minutes=5)).isoformat()
    assert ids("--since", since, "--until", until, "--format", "coco") == {
        line["other_camera"].unique_id,
        line["operator_missed"].unique_id,
    }


def test_frames_a_drifting_camera_kept_are_selected_by_reason_drift(
    tmp_path: Path, line: dict[str, InferenceRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    drifting = stored(
        tmp_path / "data" / "images",
        7,
        reason="drift",
        dets=(detection(1, "hole", (0.3, 0.3, 0.4, 0.4)),),
    )
    db = Database(f"sqlite:///{tmp_path / 'data' / 'mfgvision.db'}")
    db.write([drifting])
    db.close()
    out = export(tmp_path, "--reason", "drift")
    assert read_result(capsys)["images"] == 1
    assert [p.stem for p in (out / "images").iterdir()] == [drifting.unique_id]
    about = json.loads((out / "inspections.jsonl").read_text().splitlines()[0])
    assert about["reasons"] == ["drift"] and about["labels_from"] == "model"
    out = export(tmp_path, "--reason", "drift", "--reason", "uncertain")
    read_result(capsys)
    assert {p.stem for p in (out / "images").iterdir()} == {
        drifting.unique_id,
        line["uncertain_two"].unique_id,
    }


def test_upload_puts_images_and_labels_side_by_side_in_the_retraining_container(
    tmp_path: Path,
    line: dict[str, InferenceRecord],
    azurite: Azurite,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(STORAGE_CONNECTION_ENV, azurite.connection_string)
    out = export(tmp_path, "--upload", "--name", "week45")
    first = read_result(capsys)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert first["uploaded"] == len(files) == 2 * 5 + 3  # images, labels, yaml, coco, jsonl

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client("images-retraining")
    blobs = sorted(b.name for b in container.list_blobs(name_starts_with="datasets/week45/"))
    assert blobs == [f"datasets/week45/{f}" for f in files]
    uid = line["operator_missed"].unique_id
    label = container.download_blob(f"datasets/week45/labels/{uid}.txt").readall().decode()
    assert label == (out / "labels" / f"{uid}.txt").read_text()

    export(tmp_path, "--upload", "--name", "week45")  # again: nothing new to store
    assert read_result(capsys)["uploaded"] == 0
