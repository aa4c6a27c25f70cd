"""What the inference thread hands to the writer for one inferred frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfgvision.capture.base import Frame
from mfgvision.cis.rules import Judgement
from mfgvision.inference.types import InferenceResult
from mfgvision.settings import CisSettings


@dataclass
class Outcome:
    """One inferred frame.

    ``image`` is the decoded frame the model saw (possibly decoded at reduced size) and ``image_result``
    has boxes in its pixels, for drawing; ``result`` has boxes in original-frame pixels, for storage.
    ``settings_version`` is the desired-twin ``$version`` of ``settings`` (None when unknown).
    ``judgement`` is the verdict of ``result`` by the settings' rules, and the rules that fired.
    """

    unique_id: str
    frame: Frame
    image: np.ndarray
    image_result: InferenceResult
    result: InferenceResult
    settings: CisSettings
    model_name: str
    model_version: str
    retrain: str | None
    inferred_at: float
    judgement: Judgement
    settings_version: int | None = None
    #: The trigger this frame was inferred for (the ``trigger`` input); always stored and announced.
    trigger_id: str | None = None
