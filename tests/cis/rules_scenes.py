"""Generated frames with known parts and defects, the zones and rules drawn over them, and what each
frame should be judged; played through a CIS module running the demo model (``demo-defects``).

The station (1280 x 720), as in the worked example of docs/configuration.md ("Zones and rules"):

* the workpiece, a disc at (440, 360) of radius 260, has four bolt holes on its flange; its centre
  square is the ``sealing_face``, its bounding square the ``flange`` zone;
* a scratch with at least 30 % of its box on the sealing face makes the part NG
  (``scratch_on_seal``); a scratch elsewhere on the part is stored, not judged;
* the part must show exactly four holes in ``flange`` (``four_holes``): a hole that was not
  drilled, or no part at all, is a missing part;
* the right of the frame is the ``cell``, where a second disc lies. The demo model knows no persons
  or helmets, so a long scratch stands for the person (a tall box) and a hole whose centre lies in
  the scratch's box for the helmet on them (``helmet_in_cell``: each scratch in the cell needs a
  hole belonging to it, else an alarm that leaves the verdict alone).

Every frame is drawn with the same seed, so the belt, the parts, the light and the camera are the
same and only the defects differ; on seed 0 the demo model finds each placed defect (probability
0.8 and more) and nothing else.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.store.records import ALARM, NG, OK, FiredRule, InferenceRecord
from mfgvision.synthetic import HOLE, SCRATCH, LabelBox, PlacedDefect, draw_parts
from tests.factories import recent

W, H = 1280, 720
SEED = 0
MODULE = "CIS1"

PART = (440.0, 360.0, 260.0)
CELL_PART = (1030.0, 360.0, 200.0)
BOLTS = tuple(PlacedDefect(HOLE, (x, y)) for y in (226.0, 494.0) for x in (306.0, 574.0))
ON_SEAL = PlacedDefect(SCRATCH, (390.0, 330.0), (490.0, 390.0))
ON_FLANGE = PlacedDefect(SCRATCH, (420.0, 130.0), (520.0, 170.0))
PERSON = PlacedDefect(SCRATCH, (950.0, 260.0), (1090.0, 470.0))
HELMET = PlacedDefect(HOLE, (1080.0, 280.0))

ZONES_AND_RULES: dict[str, Any] = {
    "zones_frame": [W, H],
    "zones": {
        "sealing_face": [[340, 260], [540, 260], [540, 460], [340, 460]],
        "flange": [[170, 90], [710, 90], [710, 630], [170, 630]],
        "cell": [[800, 0], [1280, 0], [1280, 720], [800, 720]],
    },
    "rules": {
        "scratch_on_seal": {
            "kind": "defect",
            "classes": ["scratch"],
            "zones": ["sealing_face"],
            "membership": "overlap",
            "overlap_fraction": 0.3,
        },
        "four_holes": {
            "kind": "count",
            "classes": ["hole"],
            "zones": ["flange"],
            "min": 4,
            "max": 4,
        },
        "helmet_in_cell": {
            "kind": "required_with",
            "classes": ["scratch"],
            "zones": ["cell"],
            "with_classes": ["hole"],
        },
    },
}


def _short_of_holes(count: int) -> FiredRule:
    detail = f"{count} hole in flange, expected 4"
    return FiredRule("four_holes", "count", NG, "flange", "hole", count, detail)


@dataclass(frozen=True)
class Scene:
    """A frame to play: what it shows, its parts and defects, and the verdict and rules it should
    get."""

    name: str
    shows: str
    discs: tuple[tuple[float, float, float], ...]
    defects: tuple[PlacedDefect, ...]
    verdict: str
    fired: tuple[FiredRule, ...]


SCENES = (
    Scene("good", "a part with its four holes", (PART,), BOLTS, OK, ()),
    Scene(
        "scratch_on_seal",
        "four holes, a scratch on the sealing face",
        (PART,),
        (*BOLTS, ON_SEAL),
        NG,
        (
            FiredRule(
                "scratch_on_seal",
                "defect",
                NG,
                "sealing_face",
                "scratch",
                1,
                "1 scratch in sealing_face",
            ),
        ),
    ),
    Scene(
        "scratch_on_flange",
        "four holes, a scratch on the flange (outside the sealing face and the cell)",
        (PART,),
        (*BOLTS, ON_FLANGE),
        OK,
        (),
    ),
    Scene("hole_missing", "a part with three holes", (PART,), BOLTS[:3], NG, (_short_of_holes(3),)),
    Scene("no_part", "the empty belt", (), (), NG, (_short_of_holes(0),)),
    Scene(
        "person_without_helmet",
        "a good part; in the cell a scratch with no hole in its box",
        (PART, CELL_PART),
        (*BOLTS, PERSON),
        OK,
        (
            FiredRule(
                "helmet_in_cell",
                "required_with",
                ALARM,
                "cell",
                "scratch",
                1,
                "1 scratch in cell without hole",
            ),
        ),
    ),
    Scene(
        "person_with_helmet",
        "a good part; in the cell a scratch with a hole in its box",
        (PART, CELL_PART),
        (*BOLTS, PERSON, HELMET),
        OK,
        (),
    ),
)


def draw(scene: Scene, seed: int = SEED) -> tuple[np.ndarray, list[LabelBox]]:
    """The scene's frame and its defects' boxes ``(class_id, x1, y1, x2, y2)``."""
    return draw_parts(np.random.default_rng(seed), (W, H), scene.discs, scene.defects)


def write_frames(folder: Path, seed: int = SEED) -> dict[str, str]:
    """Each scene as a JPEG file, in scene order; the scene's name by the MD5 of the file."""
    folder.mkdir(parents=True)
    names = {}
    for i, scene in enumerate(SCENES):
        ok, jpeg = cv2.imencode(".jpg", draw(scene, seed)[0], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        (folder / f"{i:02d}_{scene.name}.jpg").write_bytes(jpeg.tobytes())
        names[hashlib.md5(jpeg.tobytes(), usedforsecurity=False).hexdigest()] = scene.name
    return names


@dataclass(frozen=True)
class Judged:
    """One stored inference of a scene's frame and the ``inference`` message announcing it."""

    row: InferenceRecord
    message: dict[str, Any]


def play(work: Path, models: Path, timeout_s: float = 60.0) -> dict[str, list[Judged]]:
    """Loop the scenes' frames through a CIS module with the demo model and the zones and rules,
    until every scene was inferred, stored and announced at least once; what it made of each.

    The frame of a row is found by its stored raw JPEG (the camera's own bytes)."""
    names = write_frames(work / "frames")
    broker = InProcessBroker(
        [parse_route("up", f"FROM /messages/modules/{MODULE}/outputs/inference INTO $upstream")]
    )
    desired = {
        "camera_type": "folder",
        "camera_uri": str(work / "frames"),
        "camera_fps": 10,
        "inference_fps": 0,
        "model_name": "demo-defects",
        "model_version": "1",
        "store_raw_frames": True,
        "retrain_interval_s": 0,
        "upload_receipts": False,
        **ZONES_AND_RULES,
    }
    db_url = f"sqlite:///{work / 'data' / 'cis.db'}"
    paths = Paths(assets=work, models=models, data=work / "data")
    cis = CisService(broker.hub(MODULE, desired), paths, Database(db_url), report_every_s=1.0)
    reader = Database(db_url)
    scene_of: dict[str, str | None] = {}
    judged: dict[str, list[Judged]] = {}
    deadline = time.monotonic() + timeout_s
    cis.start()
    try:
        while len(judged) < len(SCENES):
            assert time.monotonic() < deadline, f"scenes never judged: {_missing(judged)}"
            time.sleep(0.2)
            bodies = {m.json()["unique_id"]: m.json() for _, _, m in broker.upstream}
            judged = {}
            for row in recent(reader, 1000):
                if row.unique_id not in scene_of:
                    scene_of[row.unique_id] = _scene_of(row, names)
                name = scene_of[row.unique_id]
                if name is not None and row.unique_id in bodies:
                    judged.setdefault(name, []).append(Judged(row, bodies[row.unique_id]))
    finally:
        cis.stop()
        reader.close()
    return judged


def _scene_of(row: InferenceRecord, names: dict[str, str]) -> str | None:
    raw = Path(row.raw_image_path) if row.raw_image_path else None
    if raw is None or not raw.is_file():
        return None
    return names.get(hashlib.md5(raw.read_bytes(), usedforsecurity=False).hexdigest())


def _missing(judged: dict[str, list[Judged]]) -> list[str]:
    return [s.name for s in SCENES if s.name not in judged]
