"""Result types shared by every model family.

One convention for the whole product: probabilities are 0..1, boxes are x1, y1, x2, y2 in pixels
of the original camera frame, plus the same box normalised to [0, 1] by the frame's width and
height.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in original-frame pixels (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    def normalised(self, width: int, height: int) -> Box:
        """The same box divided by the frame size, clipped to [0, 1]."""

        def clip(v: float) -> float:
            return min(max(v, 0.0), 1.0)

        return Box(
            clip(self.x1 / width),
            clip(self.y1 / height),
            clip(self.x2 / width),
            clip(self.y2 / height),
        )

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True)
class Detection:
    """One finding: a class with its probability and, for detectors, where it is.

    Classifiers return detections whose box covers the whole frame.
    """

    label_id: int
    label: str
    probability: float
    box: Box
    box_norm: Box

    def to_dict(self) -> dict:
        return {
            "label_id": self.label_id,
            "label": self.label,
            "probability": round(float(self.probability), 4),
            "box": [round(v, 1) for v in self.box.as_list()],
            "box_norm": [round(v, 5) for v in self.box_norm.as_list()],
        }


@dataclass
class InferenceResult:
    """What one model run on one frame produced."""

    detections: list[Detection]
    frame_width: int
    frame_height: int
    #: Milliseconds per stage: ``preprocess``, ``queue`` (waiting for the session's turn),
    #: ``infer`` and ``postprocess``.
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def model_ms(self) -> float:
        """The model's own time: every stage but the wait for the session's turn."""
        return sum(ms for stage, ms in self.timings_ms.items() if stage != "queue")

    def scaled(self, factor: float, width: int, height: int) -> InferenceResult:
        """The same result for a frame ``factor`` times larger, of ``width`` x ``height`` pixels.

        Used when the model saw a frame decoded at reduced size: pixel boxes are multiplied by
        ``factor`` (clipped to the new frame) and ``box_norm`` is recomputed against it.
        """
        if factor <= 0 or width <= 0 or height <= 0:
            raise ValueError("factor, width and height must be positive")

        def scale(box: Box) -> Box:
            return Box(
                min(max(box.x1 * factor, 0.0), width),
                min(max(box.y1 * factor, 0.0), height),
                min(max(box.x2 * factor, 0.0), width),
                min(max(box.y2 * factor, 0.0), height),
            )

        detections = []
        for d in self.detections:
            box = scale(d.box)
            detections.append(replace(d, box=box, box_norm=box.normalised(width, height)))
        return InferenceResult(detections, width, height, dict(self.timings_ms))
