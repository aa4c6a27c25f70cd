"""Fixtures for the inference tests."""

from __future__ import annotations

import numpy as np
import pytest

FRAME_SIZES = [(1280, 720), (480, 640)]


@pytest.fixture(params=FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def frame(request: pytest.FixtureRequest) -> np.ndarray:
    """A non-square BGR frame with some texture: landscape 1280x720 and portrait 480x640."""
    width, height = request.param
    rng = np.random.default_rng(width * height)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
