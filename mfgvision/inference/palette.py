"""One colour per class, everywhere: burned-in boxes, dashboard charts, detail overlays, history.

A class's colour is keyed by its index in the model's labels (``label_id``), so it is the same on
every page and after every restart. The colours are Okabe and Ito's palette for colour-blind
readers (black swapped for a light grey that shows on dark images and pages); past eight classes
they repeat.
"""

from __future__ import annotations

CLASS_COLOURS = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#BBBBBB",  # light grey
)


def class_colour_hex(label_id: int) -> str:
    """``#RRGGBB`` of a class index."""
    return CLASS_COLOURS[label_id % len(CLASS_COLOURS)]


def class_colour_bgr(label_id: int) -> tuple[int, int, int]:
    """The same colour as OpenCV's (blue, green, red)."""
    rgb = class_colour_hex(label_id).lstrip("#")
    red, green, blue = (int(rgb[i : i + 2], 16) for i in (0, 2, 4))
    return blue, green, red
