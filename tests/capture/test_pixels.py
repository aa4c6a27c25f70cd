import cv2
import numpy as np
import pytest

from mfgvision.capture.pixels import PixelFormatError, supported, to_bgr

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """What a Bayer sensor with ``pattern`` (GenICam naming: first row's first two pixels) sees."""
    channel = {"R": 2, "G": 1, "B": 0}
    out = np.zeros(bgr.shape[:2], bgr.dtype)
    layout = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy::2, dx::2] = bgr[dy::2, dx::2, channel[layout[dy][dx]]]
    return out


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("BayerRG8", "RGGB"), ("BayerBG8", "BGGR"), ("BayerGR8", "GRBG"), ("BayerGB8", "GBRG")],
)
@pytest.mark.parametrize("colour", [RED, GREEN, BLUE])
def test_bayer_patterns_give_the_right_colour(name, pattern, colour):
    scene = np.zeros((16, 16, 3), np.uint8)
    scene[:] = colour
    out = to_bgr(mosaic(scene, pattern), name)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert tuple(out[8, 8]) == colour


def test_high_bit_depth_bayer_and_mono_scale_to_8_bits():
    scene = np.zeros((8, 8, 3), np.uint16)
    scene[:] = (0, 0, 4095)  # 12-bit red
    assert tuple(to_bgr(mosaic(scene, "RGGB"), "BayerRG12")[4, 4]) == RED
    mono = np.full((4, 6), 1023, np.uint16)  # 10-bit white
    out = to_bgr(mono[:, :, None], "Mono10")
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8 and out.min() == 255
    assert to_bgr(np.full((2, 2), 7, np.uint8), "mono8")[0, 0].tolist() == [7, 7, 7]


def test_colour_and_yuv_formats():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:] = (255, 0, 0)  # red in RGB order
    assert tuple(to_bgr(rgb, "RGB8")[0, 0]) == RED
    assert tuple(to_bgr(rgb, "RGB8Packed")[0, 0]) == RED
    assert tuple(to_bgr(rgb[:, :, ::-1].copy(), "BGR8")[0, 0]) == RED
    rgba = np.dstack([rgb, np.full((4, 4), 255, np.uint8)])
    assert tuple(to_bgr(rgba, "RGBa8")[0, 0]) == RED
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[:] = RED
    uyvy = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)  # reference: pack U Y V Y by hand
    packed = np.zeros((4, 8), np.uint8)
    packed[:, 0::4], packed[:, 1::4] = uyvy[:, 0::2, 1], uyvy[:, 0::2, 0]
    packed[:, 2::4], packed[:, 3::4] = uyvy[:, 0::2, 2], uyvy[:, 1::2, 0]
    out = to_bgr(packed, "YUV422_8_UYVY")
    assert out.shape == (4, 4, 3)
    assert out[0, 0, 2] > 200 and out[0, 0, 0] < 60 and out[0, 0, 1] < 60


def test_unknown_formats_are_refused():
    assert supported("BayerRG8") and supported("mono12") and not supported("Mono12p")
    with pytest.raises(PixelFormatError, match="Mono12p"):
        to_bgr(np.zeros((2, 3), np.uint8), "Mono12p")
