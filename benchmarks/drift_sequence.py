"""Drift detection on a held-out sequence, played through the real CIS as the demo runs it.

A fixed camera looks at a generated conveyor (``mfgvision.synthetic`` with a seed no demo model was
trained or tested on); parts with and without defects pass under it. The sequence is written as JPEG
files and played by a folder camera into a running CIS module (the demo's ``demo-defects`` model,
drift checks on, alerts routed upstream), in stretches:

* ``stable``: the line as it was set up (the reference is taken at its start); no alert is right;
* ``camera_knocked``: the camera shifted and turned, then re-aimed (``camera_moved``);
* ``new_defect_mix``: three times as many NG parts, mostly holes instead of scratches, then the
  usual mix again (``ng_rate`` or ``class_rate``);
* ``lamp_dimming``: the light fades to half over a stretch and stays there, then a new lamp
  (``brightness``).

Time runs ten times faster than on the demo line (2 frames/s, a check every 5 s): the camera gives
20 frames/s and a check runs every 0.5 s, so one check still stands for 10 frames, and figures in
frames hold for the demo's rate (seconds there are ten times these). The frame each row is of is
found by its stored raw JPEG (the camera's own bytes), so a dropped frame cannot shift the count.

Prints one JSON object: per drift kind whether its alert was raised, how many frames and seconds
after the onset, whether it cleared once the cause was gone, other alerts raised meanwhile; the
alerts raised on the stable stretch (false alerts); the frames kept for retraining as ``drift``; and
the lines of history recorded for the dashboard.

    python benchmarks/drift_sequence.py [--short] [--part 200] [--model-dir edge_assets/models]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from machine import describe
from sqlalchemy import select

from mfgvision.cis.drift.geometry import ReferenceFeatures
from mfgvision.cis.drift.image import (
    ImageStats,
    analysis_image,
    grey,
    image_stats,
    quality_figures,
)
from mfgvision.cis.service import CisService
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.inference import Model, RuntimeOptions, load_model
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.store.drift import DRIFT_FOLDER, HISTORY_FILE
from mfgvision.store.schema import inference_data
from mfgvision.synthetic import SPLIT_SEEDS, generate_sample, sample_rng

W, H = 1280, 720
#: The scene is drawn larger than the frame, so a moved camera still sees the line.
MARGIN = 120
#: Side of the square patch a passing part is drawn on, in frame pixels (200: 4 % of the frame).
PART = 200
#: Generated, but from none of the seeds the demo model was trained, validated or tested on.
HELD_OUT_SEED = 5505
assert HELD_OUT_SEED not in SPLIT_SEEDS.values()
CLASSES = ("scratch", "hole", "spot")
#: ORB features the scene must have (of the drift check's 200): a plain belt cannot be aligned.
SCENE_FEATURES = 150
#: The scene's contrast (standard deviation of grey) at least: a part passing is a small change.
SCENE_CONTRAST = 35.0
#: Noisy frames (and places of a part) the model's answer is checked on before a scene or a part
#: is taken.
TRIES = 4
#: Parts in a row holding the mix's share of NG parts exactly.
BLOCK = 20
#: Ten times the demo line (2 frames/s, drift_every_s 5, retrain_drift_gap_s 60).
SPEED_UP = 10
CAMERA_FPS = 2 * SPEED_UP
CAMERA_ID = "line1-top"


@dataclass(frozen=True)
class Mix:
    """What passes the camera: the share of parts with a defect and how the defects split."""

    ng_share: float
    weights: tuple[float, float, float]  # scratch, hole, spot


USUAL = Mix(0.15, (0.6, 0.2, 0.2))
NEW = Mix(0.45, (0.2, 0.6, 0.2))


@dataclass(frozen=True)
class View:
    """The camera: moved by ``dx``, ``dy`` pixels and turned ``angle`` degrees, light times ``gain``."""

    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    gain: float = 1.0


KNOCKED = View(dx=24.0, dy=-16.0, angle=0.8)
DIM = View(gain=0.5)


@dataclass(frozen=True)
class Stretch:
    """``frames`` frames going from view ``start`` to ``end`` (linearly) with parts of ``mix``."""

    name: str
    frames: int
    mix: Mix = USUAL
    start: View = View()
    end: View | None = None

    def view(self, i: int) -> View:
        if self.end is None:
            return self.start
        t = i / max(self.frames - 1, 1)
        a, b = self.start, self.end
        return View(*(x + (y - x) * t for x, y in zip(astuple(a), astuple(b), strict=True)))


@dataclass(frozen=True)
class Kind:
    """A drift kind: the stretch it starts with, the stretch that puts it right, the alerts it
    should raise."""

    name: str
    onset: str
    restore: str
    alerts: tuple[str, ...]


KINDS = (
    Kind("camera_knocked", "knocked", "re-aimed", ("camera_moved",)),
    Kind("new_defect_mix", "new_mix", "usual_mix", ("ng_rate", "class_rate")),
    Kind("lamp_dimming", "dimming", "new_lamp", ("brightness",)),
)


def plan(short: bool) -> tuple[list[Stretch], dict[str, Any]]:
    """The stretches and the CIS settings: the defaults (model baseline and window 500) in full,
    100 for ``--short``."""
    model = 100 if short else 500
    settings = {
        "drift_every_s": 5.0 / SPEED_UP,
        "drift_baseline": model,
        "drift_window": model,
        "retrain_drift_gap_s": 60.0 / SPEED_UP,
    }
    # the stable stretch holds the baseline, a full window and as much again of model checks
    stable = 3 * model + 60
    mix, back = (150, 300) if short else (400, 700)
    stretches = [
        Stretch("stable", stable),
        Stretch("knocked", 60 if short else 100, start=KNOCKED),
        Stretch("re-aimed", 60 if short else 100),
        Stretch("new_mix", mix, mix=NEW),
        Stretch("usual_mix", back),
        Stretch("dimming", 100 if short else 200, end=DIM),
        Stretch("dim", 40 if short else 100, start=DIM),
        Stretch("new_lamp", 60 if short else 100),
    ]
    return stretches, settings


class HeldOutLine:
    """The scene, the parts that pass and the camera's noise; draws frames as JPEG.

    The parts are checked with the model first, on the scene: a part with a defect counts when the
    model finds its class and nothing else, a good part when it finds nothing, and the scene alone
    must give nothing, each on ``TRIES`` noisy frames. So the mix of parts is the mix of the
    model's answers.
    """

    def __init__(self, model: Model, part_side: int = PART, seed: int = HELD_OUT_SEED) -> None:
        self.model = model
        self.part_side = part_side
        self.rng = np.random.default_rng(seed + 2)
        self.noise = [self.rng.normal(0.0, 3.0, (H, W, 3)).astype(np.float32) for _ in range(6)]
        self.scene = self._empty_line(seed)
        self.parts = self._parts(seed + 1)

    def passing(self, mix: Mix, count: int) -> Iterator[np.ndarray]:
        """The patches of ``count`` parts passing one after the other: in every ``BLOCK`` of them
        the share of NG parts is ``mix``'s (rounded), at random places, as on a steady process."""
        for start in range(0, count, BLOCK):
            n = min(BLOCK, count - start)
            ng = set(self.rng.choice(n, round(n * mix.ng_share), replace=False).tolist())
            for k in range(n):
                name = CLASSES[int(self.rng.choice(3, p=mix.weights))] if k in ng else "ok"
                pool = self.parts[name]
                yield pool[int(self.rng.integers(len(pool)))]

    def image(self, view: View, part: np.ndarray | None) -> np.ndarray:
        """One frame of the camera at ``view`` with ``part`` passing at a random place."""
        jx, jy = self.rng.uniform(-0.7, 0.7, 2)
        h, w = self.scene.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), view.angle, 1.0)
        matrix[:, 2] += (view.dx + jx, view.dy + jy)
        image = cv2.warpAffine(self.scene, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        image = image[MARGIN : MARGIN + H, MARGIN : MARGIN + W].copy()
        if part is not None:
            side = part.shape[0]
            x, y = (int(v) for v in self.rng.integers(40, (W - side - 40, H - side - 40)))
            image[y : y + side, x : x + side] = part
        lit = image.astype(np.float32) * view.gain + self.noise[int(self.rng.integers(6))]
        return np.clip(lit, 0, 255).astype(np.uint8)

    def frame(self, view: View, part: np.ndarray) -> bytes:
        """:meth:`image` as the camera's JPEG."""
        ok, jpeg = cv2.imencode(".jpg", self.image(view, part), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return jpeg.tobytes()

    def _labels(self, image: np.ndarray) -> set[str]:
        return {d.label for d in self.model.detect(image, 0.5, 0.45).detections}

    def _empty_line(self, seed: int) -> np.ndarray:
        """A generated conveyor without defects, on which the model finds nothing, with fixed
        things enough to align frames by (``SCENE_FEATURES``) and busy enough that a part passing
        is a small change of its statistics (``SCENE_CONTRAST``)."""
        size = (W + 2 * MARGIN, H + 2 * MARGIN)
        for index in range(200):
            self.scene, boxes = generate_sample(sample_rng(seed, index), size)
            if boxes:
                continue
            images = [self.image(View(), None) for _ in range(TRIES)]
            small = grey(analysis_image(images[0]))
            busy = float(small.std()) >= SCENE_CONTRAST
            features = ReferenceFeatures(small).count
            if busy and features >= SCENE_FEATURES and not any(self._labels(i) for i in images):
                return self.scene
        raise RuntimeError("no fitting scene among 200 generated")

    def _parts(self, seed: int, wanted: int = 12) -> dict[str, list[np.ndarray]]:
        """``wanted`` patches per defect class and as many good parts, each centred on a part."""
        pools: dict[str, list[np.ndarray]] = {name: [] for name in (*CLASSES, "ok")}
        side = self.part_side
        half = side // 2
        for index in range(3000):
            if all(len(pool) >= wanted for pool in pools.values()):
                return pools
            image, boxes = generate_sample(sample_rng(seed, index), (W, H))
            if boxes:
                name, x1, y1, x2, y2 = CLASSES[boxes[0][0]], *boxes[0][1:]
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            else:  # the brightest place: a part, not the belt
                name = "ok"
                glow = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (0, 0), 40)
                cy, cx = np.unravel_index(int(np.argmax(glow)), glow.shape)
            if len(pools[name]) >= wanted:
                continue
            x0 = min(max(int(cx) - half, 0), W - side)
            y0 = min(max(int(cy) - half, 0), H - side)
            patch = image[y0 : y0 + side, x0 : x0 + side]
            expected = set() if name == "ok" else {name}
            if all(self._labels(self.image(View(), patch)) == expected for _ in range(TRIES)):
                pools[name].append(patch)
        raise RuntimeError("not enough generated parts of every kind")


def write_sequence(folder: Path, stretches: list[Stretch], line: HeldOutLine) -> dict[str, int]:
    """The frames as ``00000.jpg``...; the index of each frame by the MD5 of its bytes."""
    folder.mkdir(parents=True)
    index: dict[str, int] = {}
    i = 0
    for stretch in stretches:
        for k, part in enumerate(line.passing(stretch.mix, stretch.frames)):
            jpeg = line.frame(stretch.view(k), part)
            (folder / f"{i:05d}.jpg").write_bytes(jpeg)
            index[hashlib.md5(jpeg, usedforsecurity=False).hexdigest()] = i
            i += 1
    return index


def starts(stretches: list[Stretch]) -> dict[str, int]:
    """The first frame of each stretch, and ``end``: how many frames there are."""
    first, i = {}, 0
    for stretch in stretches:
        first[stretch.name] = i
        i += stretch.frames
    return {**first, "end": i}


@dataclass
class Run:
    """What the CIS made of the sequence: the frame of each stored inference by its capture time,
    the drift alerts, the frames kept for retraining as drift, the reference frame."""

    captured: list[tuple[datetime, int]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    retrained: list[int] = field(default_factory=list)
    reference_frame: int = -1
    dropped: int = 0
    seconds: float = 0.0
    history_lines: list[int] = field(default_factory=list)

    def frame_at(self, when: datetime) -> int:
        """The last frame captured at or before ``when`` (-1: none)."""
        k = bisect.bisect_right([t for t, _ in self.captured], when)
        return self.captured[k - 1][1] if k else -1

    def time_of(self, frame: int) -> datetime:
        """When the first inferred frame from ``frame`` on was captured."""
        return next(t for t, f in self.captured if f >= frame)


def play(work: Path, model_dir: Path, settings: dict[str, Any], frames: dict[str, int]) -> Run:
    """Play ``work/sequence`` through a CIS module as the demo runs one, until the camera ends."""
    broker = InProcessBroker(
        [parse_route("alerts", "FROM /messages/modules/CIS1/outputs/alerts INTO $upstream")]
    )
    desired = {
        "camera_type": "folder",
        "camera_uri": "sequence",
        "camera_loop": False,
        "camera_fps": CAMERA_FPS,
        "camera_id": CAMERA_ID,
        "camera_location": "line1",
        "camera_position": "top",
        "inference_fps": 0,
        "model_name": "demo-defects",
        "model_version": "1",
        "prob_threshold": 0.5,
        "store_raw_frames": True,
        "store_all_inferences": True,
        "retrain_interval_s": 0,
        "upload_receipts": False,
        **settings,
    }
    paths = Paths(assets=work, models=model_dir, data=work / "data")
    db_url = f"sqlite:///{work / 'data' / 'mfgvision.db'}"
    cis = CisService(broker.hub("CIS1", desired), paths, Database(db_url), report_every_s=1.0)
    started = time.monotonic()
    cis.start()
    try:
        assert cis.pipeline is not None and cis.pipeline.models.wait_ready(120)
        code, answer = broker.hub("CIS1").call_method("set_reference", {"timeout_s": 10})
        assert code == 200, answer
        while cis.pipeline.status()["camera"]["state"] != "ended":
            time.sleep(0.2)
        while cis.pipeline.writer.pending_rows:
            time.sleep(0.1)
        time.sleep(1.0)  # the drift thread's last check
        dropped = cis.pipeline.status()["camera"]["dropped"]
    finally:
        cis.stop()
    run = Run(dropped=dropped, seconds=round(time.monotonic() - started, 1))
    t = inference_data
    db = Database(db_url)
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.created, t.c.raw_image_name, t.c.retrain_reason).order_by(t.c.created)
        ).all()
    db.close()
    for created, raw, reason in rows:
        path = paths.images / str(raw)
        data = path.read_bytes() if raw and path.is_file() else b""
        frame = frames.get(hashlib.md5(data, usedforsecurity=False).hexdigest())
        if frame is not None:
            run.captured.append((created, frame))
            if reason == "drift":
                run.retrained.append(frame)
    run.reference_frame = run.frame_at(_parse(answer["taken_at"]))
    bodies = [m.json() for _, output, m in broker.upstream if output == "alerts"]
    run.alerts = [b for b in bodies if b.get("kind") == "drift"]
    history = paths.data / DRIFT_FOLDER / CAMERA_ID / HISTORY_FILE
    run.history_lines = [len(line) + 1 for line in history.read_bytes().splitlines()]
    return run


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def image_spread(folder: Path, reference: int, frames: range) -> dict[str, list[float]]:
    """The least and greatest of each image figure over ``frames`` against frame ``reference``,
    computed as the drift check does."""

    def stats(i: int) -> ImageStats:
        return image_stats(analysis_image(cv2.imread(str(folder / f"{i:05d}.jpg"))))

    ref = stats(reference)
    seen: dict[str, list[float]] = {}
    for i in frames:
        for name, value in quality_figures(ref, stats(i)).items():
            low, high = seen.get(name, [value, value])
            seen[name] = [min(low, value or 0.0), max(high, value or 0.0)]
    return seen


def kind_report(kind: Kind, first: dict[str, int], span_end: int, run: Run) -> dict[str, Any]:
    """One drift kind: its alert raised from its onset on, and cleared once put right."""
    onset, restore = first[kind.onset], first[kind.restore]
    changes = [(a["alert"], a["state"], _parse(a["created"])) for a in run.alerts]
    within = [(a, s, run.frame_at(t), t) for a, s, t in changes]
    within = [c for c in within if onset <= c[2] < span_end]
    raised = [c for c in within if c[1] == "raised"]
    alert = next((c for c in raised if c[0] in kind.alerts), None)
    entry: dict[str, Any] = {
        "alerts": list(kind.alerts),
        "window_frames": restore - onset,
        "alerted": alert is not None and alert[2] < restore,
        "alert": alert[0] if alert else None,
        "also_raised": sorted({c[0] for c in raised if c is not alert}),
    }
    if alert is None:
        return {**entry, "cleared": False}
    cleared = [c for c in within if c[0] == alert[0] and c[1] == "cleared" and c[2] >= restore]
    entry.update(
        frames_to_alert=alert[2] - onset,
        seconds_to_alert=round((alert[3] - run.time_of(onset)).total_seconds(), 2),
        cleared=bool(cleared),
    )
    if cleared:
        entry["frames_to_clear"] = cleared[0][2] - restore
    return entry


def report(
    stretches: list[Stretch], settings: dict[str, Any], run: Run, spread: dict[str, list[float]]
) -> dict[str, Any]:
    """The figures of a run: per kind, the stable stretch, the frames kept for retraining."""
    first = starts(stretches)
    knock = first[KINDS[0].onset]
    onsets = [first[k.onset] for k in KINDS[1:]] + [first["end"]]
    stable = knock - run.reference_frame
    return {
        "frames": first["end"],
        "inferred": len(run.captured),
        "dropped": run.dropped,
        "run_seconds": run.seconds,
        "camera_fps": CAMERA_FPS,
        "settings": settings,
        "stretches": {s.name: s.frames for s in stretches},
        "reference_frame": run.reference_frame,
        "stable": {
            "frames": stable,
            "model_checked_frames": max(
                0, stable - settings["drift_baseline"] - settings["drift_window"]
            ),
            "image_figures": {k: [round(v, 3) for v in vs] for k, vs in spread.items()},
            "false_alerts": [
                {"alert": a["alert"], "frame": f}
                for a in run.alerts
                if a["state"] == "raised" and (f := run.frame_at(_parse(a["created"]))) < knock
            ],
        },
        "kinds": {
            kind.name: kind_report(kind, first, end, run)
            for kind, end in zip(KINDS, onsets, strict=True)
        },
        "retrained_as_drift": {
            "frames": len(run.retrained),
            "on_stable_stretch": sum(1 for f in run.retrained if f < knock),
        },
        "dashboard_history": {
            "lines": len(run.history_lines),
            "bytes_per_line": round(sum(run.history_lines) / max(len(run.history_lines), 1)),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="model baseline and window of 100")
    parser.add_argument("--model-dir", type=Path, default=Path("edge_assets/models"))
    parser.add_argument(
        "--part", type=int, default=PART, help=f"side of a passing part in pixels (default {PART})"
    )
    args = parser.parse_args()
    stretches, settings = plan(args.short)
    t0 = time.monotonic()
    model = load_model(args.model_dir / "demo-defects" / "1", RuntimeOptions(spin_wait=False))
    line = HeldOutLine(model, args.part)
    model.close()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = write_sequence(work / "sequence", stretches, line)
        generated = round(time.monotonic() - t0, 1)
        run = play(work, args.model_dir.resolve(), settings, frames)
        knock = starts(stretches)[KINDS[0].onset]
        spread = image_spread(
            work / "sequence", run.reference_frame, range(run.reference_frame, knock)
        )
    machine = describe()
    result = report(stretches, settings, run, spread)
    head = {"machine": machine, "part_px": args.part, "generate_seconds": generated}
    print(json.dumps({**head, **result}, indent=2))


if __name__ == "__main__":
    main()
