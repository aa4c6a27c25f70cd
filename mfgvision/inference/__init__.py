"""Object detection and classification with ONNX Runtime, one adapter per model family.

A model folder is ``<name>/<version>/`` holding ``model.onnx``, the labels (``labels.json`` or
``labels.txt``, here or one level up) and an optional ``model.yaml`` card (see ``card``). The
family comes from the card, else from the graph's outputs (see ``adapters.detect_family``).

Every family reports the same thing: probabilities 0..1 and boxes in pixels of the frame passed in.
"""

from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.model import Model, load_model
from mfgvision.inference.session import RuntimeOptions
from mfgvision.inference.types import Box, Detection, InferenceResult

__all__ = [
    "Box",
    "Detection",
    "InferenceResult",
    "Model",
    "ModelLoadError",
    "RuntimeOptions",
    "load_model",
]
