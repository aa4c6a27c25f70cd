"""A fixed camera over a generated production line, and what knocks it, blurs it or darkens it;
a stand-in for the hub's side of the send function, and a drift monitor driven frame by frame.

Every frame has sensor noise, a sub-pixel jitter of the mount and a part passing by at a random
place: what a steady camera sees. The scene is drawn larger than the frame, so a shifted or turned
camera still sees the line, not a border.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from mfgvision.capture.base import Frame
from mfgvision.cis.drift.monitor import DriftMonitor
from mfgvision.cis.outcome import Outcome
from mfgvision.cis.rules import RuleBook
from mfgvision.inference.types import Detection, InferenceResult
from mfgvision.settings import CisSettings
from mfgvision.synthetic import generate_sample

FRAME_W, FRAME_H = 1280, 720
MARGIN = 120


class LineCamera:
    """Frames of one generated scene, as a camera mounted over it sees them."""

    def __init__(self, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.scene, _ = generate_sample(rng, size=(FRAME_W + 2 * MARGIN, FRAME_H + 2 * MARGIN))
        self.rng = np.random.default_rng(seed + 1)

    def frame(
        self,
        dx: float = 0.0,
        dy: float = 0.0,
        angle: float = 0.0,
        blur: float = 0.0,
        gain: float = 1.0,
        noise: float = 3.0,
        jitter: float = 0.7,
    ) -> np.ndarray:
        """One BGR frame; the camera's view moved by ``dx``, ``dy`` pixels and turned by ``angle``
        degrees about its centre, defocused by a Gaussian of ``blur`` pixels, its light times
        ``gain``."""
        jx, jy = self.rng.uniform(-jitter, jitter, 2)
        h, w = self.scene.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        matrix[:, 2] += (dx + jx, dy + jy)
        view = cv2.warpAffine(self.scene, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        image = view[MARGIN : MARGIN + FRAME_H, MARGIN : MARGIN + FRAME_W].astype(np.float32)
        centre = (int(self.rng.uniform(200, 1080)), int(self.rng.uniform(150, 570)))
        cv2.circle(image, centre, 60, (float(self.rng.uniform(120, 200)),) * 3, -1)
        if blur:
            image = cv2.GaussianBlur(image, (0, 0), blur)
        image = image * gain + self.rng.normal(0.0, noise, image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)


def outcome(
    image: np.ndarray, settings: CisSettings, detections: list[Detection] | None = None
) -> Outcome:
    """``image`` inferred with ``detections`` (none: an OK part) under ``settings``."""
    h, w = image.shape[:2]
    frame = Frame(0, datetime.now(timezone.utc), "f.png", w, h, image=image)
    result = InferenceResult(detections or [], w, h)
    return Outcome(
        unique_id=str(uuid.uuid4()),
        frame=frame,
        image=image,
        image_result=result,
        result=result,
        settings=settings,
        model_name="m",
        model_version="1",
        retrain=None,
        inferred_at=0.0,
        judgement=RuleBook(settings).judge(result.detections),
    )


class Hub:
    """The send function's other side: keeps what it takes, refuses everything while away."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, dict[str, Any]]] = []
        self.away = False

    def __call__(self, output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        if self.away:
            raise ConnectionError("edgeHub unreachable")
        self.taken.append((output, body))
        on_sent()

    def changes(self) -> list[tuple[str, str]]:
        return [(b["alert"], b["state"]) for _, b in self.taken]


def check(m: DriftMonitor, inferred: Outcome) -> dict[str, Any]:
    """Hand one inferred frame over and wait until it was checked; the status after it."""
    done, deadline = m.status()["checks"], time.monotonic() + 10
    m.observe(inferred)
    while m.status()["checks"] == done:
        assert time.monotonic() < deadline, "the frame was not checked"
        time.sleep(0.002)
    return m.status()


def take_reference(m: DriftMonitor, inferred: Outcome) -> dict[str, Any]:
    """Call ``set_reference`` and hand frames over until it answers."""
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(m.set_reference, 10)
        while not answer.done():
            m.observe(inferred)
            time.sleep(0.01)
        return answer.result()
