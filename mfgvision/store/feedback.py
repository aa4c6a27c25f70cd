"""Operators' feedback on an inspection: was the verdict right, and which boxes are the truth.

One feedback per inspection (``inspection_feedback``, keyed by the inference's ``unique_id``); a
second one replaces the first. ``boxes`` None means the model's detections stand as labels; a list
(possibly empty: nothing to find) replaces them. A frame with feedback joins the retraining set
(``mfgvision export-dataset``, reason ``operator``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from mfgvision.store.schema import NAME_LENGTH, inference_data, inspection_feedback

#: What an operator can say about a verdict.
JUDGEMENTS = ("correct", "false_ng", "missed_defect")
NOTE_LENGTH = 500
MAX_BOXES = 200


class FeedbackError(ValueError):
    """Feedback that cannot be stored as given; the message says why."""


@dataclass(frozen=True)
class LabelBox:
    """One box an operator drew or kept: a class name and normalised ``x1, y1, x2, y2``."""

    label: str
    box_norm: tuple[float, float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "box_norm": list(self.box_norm)}

    @classmethod
    def from_json(cls, value: Any) -> LabelBox:
        """A box from ``{"label": str, "box_norm": [x1, y1, x2, y2]}``; FeedbackError otherwise."""
        if not isinstance(value, dict) or set(value) != {"label", "box_norm"}:
            raise FeedbackError('a box is {"label": ..., "box_norm": [x1, y1, x2, y2]}')
        label, box = value["label"], value["box_norm"]
        if not isinstance(label, str) or not 0 < len(label) <= NAME_LENGTH:
            raise FeedbackError(f"a box's label is a class name of 1..{NAME_LENGTH} characters")
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        ):
            raise FeedbackError("a box's box_norm is four numbers")
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise FeedbackError("a box's box_norm needs 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
        return cls(label, (x1, y1, x2, y2))


@dataclass(frozen=True)
class Feedback:
    """An operator's word on one inspection."""

    unique_id: str
    judgement: str
    boxes: tuple[LabelBox, ...] | None = None
    note: str = ""
    operator: str | None = None
    created: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "judgement": self.judgement,
            "boxes": None if self.boxes is None else [b.to_json() for b in self.boxes],
            "note": self.note,
            "operator": self.operator,
            "created": None if self.created is None else self.created.isoformat(),
        }


def parse_feedback(unique_id: str, body: Any, operator: str | None) -> Feedback:
    """Feedback from a request body ``{"judgement", "boxes"?, "note"?}``; FeedbackError if bad."""
    if not isinstance(body, dict):
        raise FeedbackError("the body is a JSON object")
    unknown = set(body) - {"judgement", "boxes", "note"}
    if unknown:
        raise FeedbackError(f"unknown fields: {', '.join(sorted(unknown))}")
    judgement = body.get("judgement")
    if judgement not in JUDGEMENTS:
        raise FeedbackError(f"judgement is one of {', '.join(JUDGEMENTS)}")
    raw_boxes = body.get("boxes")
    boxes = None
    if raw_boxes is not None:
        if not isinstance(raw_boxes, list) or len(raw_boxes) > MAX_BOXES:
            raise FeedbackError(f"boxes is a list of at most {MAX_BOXES} boxes")
        boxes = tuple(LabelBox.from_json(b) for b in raw_boxes)
    note = body.get("note") or ""
    if not isinstance(note, str) or len(note) > NOTE_LENGTH:
        raise FeedbackError(f"note is a text of at most {NOTE_LENGTH} characters")
    return Feedback(unique_id, judgement, boxes, note, operator)


def save_feedback(engine: Engine, feedback: Feedback) -> Feedback:
    """Store ``feedback`` in place of any earlier one on the same inspection; returns it with its
    time. LookupError when the inspection is not stored."""
    stored = dataclasses.replace(feedback, created=datetime.now(timezone.utc))
    t = inspection_feedback
    with engine.begin() as conn:
        known = conn.execute(
            select(inference_data.c.id).where(inference_data.c.unique_id == feedback.unique_id)
        ).first()
        if known is None:
            raise LookupError(f"no inspection {feedback.unique_id}")
        conn.execute(delete(t).where(t.c.unique_id == feedback.unique_id))
        conn.execute(
            insert(t).values(
                unique_id=stored.unique_id,
                judgement=stored.judgement,
                boxes=None
                if stored.boxes is None
                else json.dumps([b.to_json() for b in stored.boxes]),
                note=stored.note or None,
                operator=(stored.operator or "")[:NAME_LENGTH] or None,
                created=stored.created,
            )
        )
    return stored


def feedback_for(engine: Engine, unique_ids: list[str]) -> dict[str, Feedback]:
    """The stored feedback of each of ``unique_ids`` that has one."""
    if not unique_ids:
        return {}
    t = inspection_feedback
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.unique_id.in_(unique_ids))).all()
    return {row.unique_id: _feedback(row) for row in rows}


def _feedback(row: Any) -> Feedback:
    boxes = None
    if row.boxes is not None:
        boxes = tuple(LabelBox.from_json(b) for b in json.loads(row.boxes))
    return Feedback(row.unique_id, row.judgement, boxes, row.note or "", row.operator, row.created)
