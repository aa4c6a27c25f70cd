"""The optional model card ``model.yaml`` next to ``model.onnx``.

Recognised keys (all optional)::

    family: yolov8                # see mfgvision.inference.adapters.FAMILIES
    input_size: [640, 640]        # width, height
    normalise:                    # tensor = (pixel / scale - mean) / std, per channel
      scale: 255
      mean: [0.485, 0.456, 0.406] # in tensor channel order
      std: [0.229, 0.224, 0.225]
      channel_order: RGB          # RGB or BGR
    letterbox_colour: 114         # one grey level or [b, g, r]
    resize: letterbox             # letterbox (keep aspect, pad) or stretch
    scores: probabilities         # classification outputs: probabilities or logits
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mfgvision.inference.errors import ModelLoadError

CARD_FILE = "model.yaml"
# Keys a model card carries for people (provenance, accuracy, licence); they configure nothing.
DESCRIPTIVE_KEYS = frozenset(
    {
        "name",
        "version",
        "task",
        "description",
        "classes",
        "input",
        "output",
        "files",
        "architecture",
        "training",
        "accuracy",
        "licence",
        "license",
        "date",
        "authors",
    }
)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Level = Annotated[int, Field(ge=0, le=255)]
Triple = tuple[float, float, float]


class Normalise(BaseModel):
    """Pixel-to-tensor conversion; unset fields keep the family's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: PositiveFloat | None = None
    mean: Triple | None = None
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    channel_order: Literal["RGB", "BGR"] | None = None


class ModelCard(BaseModel):
    """What a model folder's ``model.yaml`` declares about its model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    family: str | None = None
    input_size: tuple[PositiveInt, PositiveInt] | None = None
    normalise: Normalise = Normalise()
    letterbox_colour: Level | tuple[Level, Level, Level] | None = None
    resize: Literal["letterbox", "stretch"] | None = None
    scores: Literal["probabilities", "logits"] | None = None
    prob_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    iou_threshold: Annotated[float, Field(ge=0, le=1)] | None = None

    @field_validator("input_size", mode="before")
    @classmethod
    def _square(cls, value: object) -> object:
        """A single number means a square input."""
        return (value, value) if isinstance(value, int) else value

    @property
    def unknown_keys(self) -> list[str]:
        """Keys that neither configure the model nor are one of the card's descriptive keys."""
        return sorted(set(self.model_extra or {}) - DESCRIPTIVE_KEYS)


def load_card(model_dir: Path) -> ModelCard:
    """Read ``model.yaml`` from ``model_dir``; an empty card when there is none."""
    path = model_dir / CARD_FILE
    if not path.is_file():
        return ModelCard()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{path}: cannot be read as YAML: {exc}") from exc
    if data is None:
        return ModelCard()
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ModelLoadError(f"{path}: invalid model card: {problems}") from exc
