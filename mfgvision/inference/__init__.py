"""Object detection and classification with ONNX Runtime, one adapter per model family.

A model folder is ``<name>/<version>/`` holding ``model.onnx``, the labels (``labels.json`` or
``labels.txt``, here or one level up) and an optional ``model.yaml`` card (see ``card``). The
family comes from the card, else from the graph's outputs (see ``adapters.detect_family``).

Every family reports the same thing: probabilities 0..1 and boxes in pixels of the frame passed in.

The names below are imported on first use, so a module that only needs the result types
(``mfgvision.inference.types``) does not load ONNX Runtime and OpenCV.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mfgvision.inference.errors import ModelLoadError
    from mfgvision.inference.model import Model, load_model
    from mfgvision.inference.session import RuntimeOptions
    from mfgvision.inference.types import Box, Detection, InferenceResult

_HOMES = {
    "Box": "types",
    "Detection": "types",
    "InferenceResult": "types",
    "Model": "model",
    "ModelLoadError": "errors",
    "RuntimeOptions": "session",
    "load_model": "model",
}

__all__ = [
    "Box",
    "Detection",
    "InferenceResult",
    "Model",
    "ModelLoadError",
    "RuntimeOptions",
    "load_model",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
