"""The synthetic defect generator: determinism, valid boxes on parts, YOLO label round trip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfgvision import synthetic
from mfgvision.datasets import read_yolo_labels
from mfgvision.synthetic import (
    CLASS_NAMES,
    HOLE,
    SCRATCH,
    SPLIT_SEEDS,
    PlacedDefect,
    draw_parts,
    generate_sample,
    sample_rng,
    write_yolo_dataset,
    yolo_lines,
)


def test_same_seed_same_image_and_boxes() -> None:
    a_img, a_boxes = generate_sample(sample_rng(5, 3))
    b_img, b_boxes = generate_sample(sample_rng(5, 3))
    assert np.array_equal(a_img, b_img)
    assert a_boxes == b_boxes


def test_different_seeds_differ() -> None:
    a_img, _ = generate_sample(sample_rng(5, 3))
    b_img, _ = generate_sample(sample_rng(5, 4))
    assert not np.array_equal(a_img, b_img)


def test_split_seeds_are_distinct() -> None:
    assert len(set(SPLIT_SEEDS.values())) == len(SPLIT_SEEDS)


@pytest.mark.parametrize("size", [(320, 320), (320, 180), (240, 320)])
def test_boxes_are_valid_and_inside(size: tuple[int, int]) -> None:
    for i in range(12):
        img, boxes = generate_sample(sample_rng(11, i), size)
        assert img.shape == (size[1], size[0], 3)
        assert img.dtype == np.uint8
        for c, x1, y1, x2, y2 in boxes:
            assert c in range(len(CLASS_NAMES))
            assert 0 <= x1 < x2 <= size[0]
            assert 0 <= y1 < y2 <= size[1]


def test_classes_and_empty_images_all_occur() -> None:
    seen: set[int] = set()
    empty = 0
    for i in range(60):
        _, boxes = generate_sample(sample_rng(SPLIT_SEEDS["val"], i))
        seen.update(b[0] for b in boxes)
        empty += not boxes
    assert seen == {0, 1, 2}
    assert 0 < empty < 30


def test_defects_lie_on_their_part() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(10):
        img = np.full((320, 320, 3), 60.0, np.float32)
        for part in synthetic._place_parts(rng, 320, 320, 1.0):
            boxes = synthetic._add_defects(rng, img, part, 0.5, 1.0, [])
            ph, pw = part.mask.shape
            for _c, x1, y1, x2, y2 in boxes:
                assert part.x0 <= x1 and x2 <= part.x0 + pw
                assert part.y0 <= y1 and y2 <= part.y0 + ph
                cx, cy = int((x1 + x2) / 2) - part.x0, int((y1 + y2) / 2) - part.y0
                window = part.mask[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2]
                assert window.any()
                checked += 1
    assert checked > 10


def test_defect_changes_the_pixels_in_its_box() -> None:
    rng = np.random.default_rng(3)
    img = np.full((320, 320, 3), 60.0, np.float32)
    part = synthetic._place_parts(rng, 320, 320, 1.0)[0]
    synthetic._paint_part(rng, img, part, 0.5, 1.0)
    before = img.copy()
    boxes = synthetic._add_defects(rng, img, part, 0.5, 1.0, [])
    assert boxes
    for _c, x1, y1, x2, y2 in boxes:
        patch = np.abs(img - before)[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
        assert patch.max() > 20


def test_yolo_lines_round_trip(tmp_path: Path) -> None:
    boxes = [(0, 10.0, 20.0, 110.0, 23.0), (2, 0.0, 0.0, 320.0, 180.0)]
    path = tmp_path / "l.txt"
    path.write_text("\n".join(yolo_lines(boxes, (320, 180))))
    back = read_yolo_labels(path, CLASS_NAMES)
    assert [b[0] for b in back] == [CLASS_NAMES[0], CLASS_NAMES[2]]
    scale = np.array([320, 180, 320, 180])
    assert np.allclose([np.array(b[1:]) * scale for b in back], [b[1:] for b in boxes], atol=1e-3)


def test_write_yolo_dataset(tmp_path: Path) -> None:
    out = write_yolo_dataset(tmp_path / "ds", 4, seed=99, size=(320, 240))
    assert json.loads((out / "labels.json").read_text()) == list(CLASS_NAMES)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"0000{i}.jpg" for i in range(4)]
    for i in range(4):
        img = cv2.imread(str(out / "images" / f"0000{i}.jpg"))
        assert img.shape == (240, 320, 3)
        _, expected = generate_sample(sample_rng(99, i), (320, 240))
        got = read_yolo_labels(out / "labels" / f"0000{i}.txt", CLASS_NAMES)
        assert [g[0] for g in got] == [CLASS_NAMES[e[0]] for e in expected]
        scale = np.array([320, 240, 320, 240])
        assert np.allclose(
            [np.array(g[1:]) * scale for g in got], [e[1:] for e in expected], atol=1e-3
        )


def test_command_line_writes_a_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synthetic.main([str(tmp_path / "t"), "--split", "test", "--count", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 2
    assert len(list((tmp_path / "t" / "labels").iterdir())) == 2


def test_samples_with_an_ok_share_spread_defect_free_frames_evenly():
    from mfgvision.synthetic import pick_samples

    picked = [bool(boxes) for _, boxes in pick_samples(10, seed=4404, size=(160, 90), ok_share=0.6)]
    assert picked.count(False) == 6 and picked.count(True) == 4
    assert "".join("x" if ng else "." for ng in picked) not in ("xxxx......", "......xxxx")
    unfiltered = [bool(b) for _, b in pick_samples(10, seed=4404, size=(160, 90))]
    assert len(unfiltered) == 10


def test_placed_defects_are_drawn_where_asked() -> None:
    defects = [PlacedDefect(HOLE, (120.0, 100.0)), PlacedDefect(SCRATCH, (150, 150), (200, 170))]
    img, boxes = draw_parts(np.random.default_rng(1), (320, 240), [(160.0, 120.0, 90.0)], defects)
    again, same = draw_parts(np.random.default_rng(1), (320, 240), [(160.0, 120.0, 90.0)], defects)
    assert img.shape == (240, 320, 3) and np.array_equal(img, again) and boxes == same
    (hole, *hole_box), (scratch, *scratch_box) = boxes
    assert (hole, scratch) == (HOLE, SCRATCH)
    assert (hole_box[0] + hole_box[2]) / 2 == pytest.approx(120, abs=1)
    assert (hole_box[1] + hole_box[3]) / 2 == pytest.approx(100, abs=1)
    assert 8 <= hole_box[2] - hole_box[0] <= 20  # 5 px in radius with its rim
    assert scratch_box[0] <= 150 and scratch_box[2] >= 200
    assert scratch_box[1] <= 150 and scratch_box[3] >= 170
    plain, _ = draw_parts(np.random.default_rng(1), (320, 240), [(160.0, 120.0, 90.0)], [])
    x1, y1, x2, y2 = (round(v) for v in hole_box)
    assert np.abs(img[y1:y2, x1:x2].astype(int) - plain[y1:y2, x1:x2]).max() > 40
    with pytest.raises(ValueError, match="needs an end"):
        draw_parts(np.random.default_rng(1), (320, 240), [], [PlacedDefect(SCRATCH, (1, 1))])
