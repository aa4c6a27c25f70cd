"""Camera pixel formats to the 8-bit BGR images the rest of the product works with.

Names are GenICam PFNC names (``Mono8``, ``BayerRG12``, ``RGB8``, ``YUV422_8_UYVY``, ...) plus
Basler's older spellings (``RGB8Packed``, ``YUV422Packed``, ...); case does not matter.

Bayer patterns are named by their first two pixels in GenICam (``BayerRG``: red at (0, 0), green at
(0, 1)). OpenCV's short codes name the pattern one pixel further in (``COLOR_BayerBG2BGR`` is the
RG pattern), which is the classic source of swapped colours; the four-letter aliases used here
(``COLOR_BayerRGGB2BGR``) name it like GenICam does.

Bit-packed formats (``Mono12p``, ``Mono12Packed``, ``BayerRG12p``, ...) are not handled here; the
adapters use their SDK's converter for those where it has one.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

_BAYER = {
    "rg": cv2.COLOR_BayerRGGB2BGR,
    "bg": cv2.COLOR_BayerBGGR2BGR,
    "gr": cv2.COLOR_BayerGRBG2BGR,
    "gb": cv2.COLOR_BayerGBRG2BGR,
}
_MONO = re.compile(r"^mono(8|10|12|14|16)$")
_BAYER_NAME = re.compile(r"^bayer(rg|bg|gr|gb)(8|10|12|14|16)$")
_COLOUR = re.compile(r"^(rgb|bgr|rgba|bgra)(8|10|12|14|16)(packed)?$")
_YUV = {
    "yuv422packed": cv2.COLOR_YUV2BGR_UYVY,  # Basler's name for UYVY
    "yuv422_8_uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_8": cv2.COLOR_YUV2BGR_YUYV,
    "ycbcr422_8": cv2.COLOR_YUV2BGR_YUYV,
    "yuv422_yuyv_packed": cv2.COLOR_YUV2BGR_YUYV,
}


class PixelFormatError(ValueError):
    """A pixel format this module cannot convert."""


def supported(pixel_format: str) -> bool:
    """True when :func:`to_bgr` converts this pixel format."""
    name = pixel_format.lower()
    return bool(_MONO.match(name) or _BAYER_NAME.match(name) or _COLOUR.match(name) or name in _YUV)


def _to_8bit(image: np.ndarray, bits: int) -> np.ndarray:
    if bits <= 8 and image.dtype == np.uint8:
        return image
    return (image >> (bits - 8)).astype(np.uint8) if bits > 8 else image.astype(np.uint8)


def to_bgr(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """An 8-bit, 3-channel BGR copy of a camera image in ``pixel_format``.

    ``image`` is what the SDK hands out: (h, w) or (h, w, 1) for mono and Bayer, (h, w, 3|4) for
    colour, (h, w, 2) or (h, w * 2) bytes for YUV 4:2:2. Raises PixelFormatError for formats it
    does not know.
    """
    name = pixel_format.lower()
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if m := _MONO.match(name):
        mono = _to_8bit(image, int(m.group(1)))
        return cv2.cvtColor(np.ascontiguousarray(mono), cv2.COLOR_GRAY2BGR)
    if m := _BAYER_NAME.match(name):
        raw = _to_8bit(image, int(m.group(2)))
        return cv2.cvtColor(np.ascontiguousarray(raw), _BAYER[m.group(1)])
    if m := _COLOUR.match(name):
        order, bits = m.group(1), int(m.group(2))
        colour = _to_8bit(image, bits)
        if order == "bgr":
            return np.ascontiguousarray(colour)
        code = {
            "rgb": cv2.COLOR_RGB2BGR,
            "rgba": cv2.COLOR_RGBA2BGR,
            "bgra": cv2.COLOR_BGRA2BGR,
        }[order]
        return cv2.cvtColor(np.ascontiguousarray(colour), code)
    if name in _YUV:
        packed = image.reshape(image.shape[0], -1, 2) if image.ndim == 2 else image
        return cv2.cvtColor(np.ascontiguousarray(packed), _YUV[name])
    raise PixelFormatError(
        f"pixel format {pixel_format!r} is not supported; use Mono8..16, Bayer**8..16, "
        "RGB8/BGR8(a) or YUV422_8"
    )
