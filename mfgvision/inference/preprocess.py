"""Turning a BGR frame into the model's input tensor."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from mfgvision.inference.card import ModelCard
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo
from mfgvision.inference.letterbox import Colour, Transform, letterbox, stretch

ChannelOrder = Literal["RGB", "BGR"]
ResizeMode = Literal["letterbox", "stretch"]
Triple = tuple[float, float, float]

IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)

_INPUT_DTYPES: dict[str, type[np.floating]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}
# ONNX metadata written by image-model exporters (Custom Vision, WinML tooling).
_PIXEL_FORMATS: dict[str, ChannelOrder] = {"Bgr8": "BGR", "Rgb8": "RGB"}
_PIXEL_RANGES: dict[str, tuple[float, Triple, Triple]] = {
    "NominalRange_0_255": (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "Normalized_0_1": (255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "Normalized_1_1": (255.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


@dataclass(frozen=True)
class InputSpec:
    """Everything needed to build the input tensor: ``(pixel / scale - mean) / std``, NCHW."""

    size: tuple[int, int]
    resize: ResizeMode
    pad_colour: Colour
    channel_order: ChannelOrder
    scale: float
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ImageInput:
    """The model's image input and how frames are converted for it."""

    name: str
    spec: InputSpec
    channels: int
    dtype: type[np.floating]

    @property
    def size(self) -> tuple[int, int]:
        return self.spec.size

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, Transform]:
        """The NCHW tensor for ``frame`` and where the frame landed in it."""
        spec = self.spec
        image = as_bgr(frame)
        if spec.resize == "letterbox":
            image, transform = letterbox(image, spec.size, spec.pad_colour)
        else:
            image, transform = stretch(image, spec.size)
        if self.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        swap = self.channels == 3 and spec.channel_order == "RGB"
        blob = cv2.dnn.blobFromImage(image, 1.0 / spec.scale, swapRB=swap)
        if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
            mean = np.asarray(spec.mean[: self.channels], np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(spec.std[: self.channels], np.float32).reshape(1, -1, 1, 1)
            blob = (blob - mean) / std
        return blob.astype(self.dtype, copy=False), transform


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """``frame`` as an HxWx3 uint8 BGR image; grey and BGRA frames are converted."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError("frame must be a uint8 numpy array")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"frame must be HxW, HxWx1, HxWx3 or HxWx4, got shape {frame.shape}")


def resolve_input(graph: GraphInfo, card: ModelCard, defaults: InputSpec) -> ImageInput:
    """Combine the family defaults, the ONNX image metadata and the model card (in that order)."""
    if len(graph.inputs) != 1:
        raise ModelLoadError(
            f"expected one image input, found {len(graph.inputs)} ({graph.describe()})"
        )
    tensor = graph.inputs[0]
    dtype = _INPUT_DTYPES.get(tensor.type)
    if tensor.rank != 4 or dtype is None:
        raise ModelLoadError(
            f"expected a float NCHW image input, found {tensor.describe()} ({graph.describe()})"
        )
    channels = tensor.dim(1) or 3
    if channels not in (1, 3):
        raise ModelLoadError(f"expected 1 or 3 input channels, found {tensor.describe()}")

    spec = replace(defaults, size=_input_size(tensor.dim(3), tensor.dim(2), card, defaults.size))
    pixel_format = _PIXEL_FORMATS.get(graph.metadata.get("Image.BitmapPixelFormat", ""))
    if pixel_format:
        spec = replace(spec, channel_order=pixel_format)
    pixel_range = _PIXEL_RANGES.get(graph.metadata.get("Image.NominalPixelRange", ""))
    if pixel_range:
        scale, mean, std = pixel_range
        spec = replace(spec, scale=scale, mean=mean, std=std)

    norm = card.normalise
    spec = replace(
        spec,
        scale=norm.scale or spec.scale,
        mean=norm.mean or spec.mean,
        std=norm.std or spec.std,
        channel_order=norm.channel_order or spec.channel_order,
        resize=card.resize or spec.resize,
        pad_colour=_colour(card.letterbox_colour) or spec.pad_colour,
    )
    return ImageInput(tensor.name, spec, channels, dtype)


def _input_size(
    graph_w: int | None, graph_h: int | None, card: ModelCard, default: tuple[int, int]
) -> tuple[int, int]:
    if card.input_size is None:
        return (graph_w or default[0], graph_h or default[1])
    card_w, card_h = card.input_size
    if (graph_w and graph_w != card_w) or (graph_h and graph_h != card_h):
        raise ModelLoadError(
            f"model.yaml input_size {card_w}x{card_h} does not match the graph's input "
            f"{graph_w or '?'}x{graph_h or '?'}"
        )
    return card_w, card_h


def _colour(value: int | tuple[int, int, int] | None) -> Colour | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value, value)
    return value
