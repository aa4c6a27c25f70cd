"""Synthetic images of metal parts on a conveyor line with labelled surface defects.

The generator draws what a fixed inspection camera above a production line would see: discs,
plates and castings on a belt or roller conveyor, with brushed, turned or cast surfaces, uneven
lighting, vignetting, specular highlights, shadows, defocus, sensor noise and JPEG softness.
Defects are thin scratches (straight or curved), drilled-looking holes with a rim and irregular
stains. Labels are in ``CLASS_NAMES`` order.

``draw_parts`` draws round parts with defects at given places instead, for checks that need to
know where each defect is (e.g. inside or outside a zone).

Only numpy and OpenCV are used, so the product can create sample data without a training stack.
Every image depends only on the random generator it is given: the same seed gives the same
pixels and boxes.

Geometry scales with the long side of the image (``max(w, h) / 320``), so a 1280x720 frame
letterboxed to 320 shows parts and defects at the same pixel size as a 320x320 image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("scratch", "hole", "spot")
SCRATCH, HOLE, SPOT = 0, 1, 2
SPLIT_SEEDS: dict[str, int] = {"train": 1101, "val": 2202, "test": 3303, "samples": 4404}
BASE_SIZE = 320

LabelBox = tuple[int, float, float, float, float]


@dataclass(frozen=True)
class Part:
    """A part placed on the conveyor: its mask (ROI-sized), ROI origin and nominal radius."""

    mask: np.ndarray
    x0: int
    y0: int
    radius: float


def generate_sample(
    rng: np.random.Generator, size: tuple[int, int] = (BASE_SIZE, BASE_SIZE)
) -> tuple[np.ndarray, list[LabelBox]]:
    """Draw one BGR uint8 image of ``size`` (w, h) and its boxes ``(class_id, x1, y1, x2, y2)``.

    Box coordinates are in pixels with (x2, y2) exclusive; every box lies inside the image and
    on a part.
    """
    w, h = size
    scale = max(w, h) / BASE_SIZE
    light = rng.uniform(0.0, 2.0 * math.pi)
    img = _conveyor(rng, w, h, scale)
    boxes: list[LabelBox] = []
    for part in _place_parts(rng, w, h, scale):
        _cast_shadow(rng, img, part, light, scale)
        _paint_part(rng, img, part, light, scale)
        if rng.random() < 0.78:
            boxes.extend(_add_defects(rng, img, part, light, scale, boxes))
    img = img * _illumination(rng, w, h)
    return _camera(rng, img, scale), boxes


@dataclass(frozen=True)
class PlacedDefect:
    """A defect drawn where it is asked for: a hole or a spot centred on ``at``, a scratch as a
    straight line from ``at`` to ``to`` (pixels)."""

    cls: int
    at: tuple[float, float]
    to: tuple[float, float] | None = None


def draw_parts(
    rng: np.random.Generator,
    size: tuple[int, int],
    discs: Sequence[tuple[float, float, float]],
    defects: Sequence[PlacedDefect],
) -> tuple[np.ndarray, list[LabelBox]]:
    """Draw round parts ``(cx, cy, radius)`` (pixels) with ``defects`` at known places, as
    :func:`generate_sample` draws its scenes; return the BGR uint8 image and the defects' boxes,
    in the order given.

    The belt, the parts' surfaces, the light, the camera and a spot's size and look come from
    ``rng``; a scratch is dark and 2 px wide, a hole round and 5 px in radius (at base scale).
    Defects should lie on a part.
    """
    w, h = size
    scale = max(w, h) / BASE_SIZE
    light = rng.uniform(0.0, 2.0 * math.pi)
    img = _conveyor(rng, w, h, scale)
    for cx, cy, r in discs:
        x0, y0, x1, y1 = _part_roi(w, h, cx, cy, r)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _fill_circle(mask, (cx - x0, cy - y0), r, 255)
        part = Part(mask=mask, x0=x0, y0=y0, radius=r)
        _cast_shadow(rng, img, part, light, scale)
        _paint_part(rng, img, part, light, scale)
    boxes: list[LabelBox] = []
    for defect in defects:
        if defect.cls == SCRATCH:
            if defect.to is None:
                raise ValueError("a scratch needs an end (to)")
            dx, dy = defect.to[0] - defect.at[0], defect.to[1] - defect.at[1]
            length, angle = math.hypot(dx, dy), math.atan2(dy, dx)
            drawn = _stroke(defect.at, length, angle, 0.0, 2.0 * scale, 0.9, -80.0)
        elif defect.cls == HOLE:
            r = 5.0 * scale
            drawn = _pit(defect.at, light, r, 0.4 * r, 1.0, 0.0, 115.0, 40.0)
        else:
            drawn = _spot(rng, defect.at, scale)
        alpha, x0, y0, paint = drawn
        box = _alpha_box(alpha, x0, y0, scale, size)
        assert box is not None
        _blend(img, alpha, x0, y0, paint)
        boxes.append((defect.cls, *box))
    img = img * _illumination(rng, w, h)
    return _camera(rng, img, scale), boxes


# --- scene ------------------------------------------------------------------------------------


def _conveyor(rng: np.random.Generator, w: int, h: int, scale: float) -> np.ndarray:
    """A dark rubber belt or a roller conveyor as a float32 BGR image."""
    base = rng.uniform(35.0, 85.0)
    grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), (0, 0), 0.8)
    bg = base + grain * rng.uniform(2.0, 6.0)
    along_x = rng.random() < 0.5
    coord = np.arange(w if along_x else h, dtype=np.float32)
    if rng.random() < 0.7:
        stripes = np.sin(coord * rng.uniform(0.3, 1.2) / scale) * rng.uniform(0.0, 3.0)
        seam = rng.uniform(0, len(coord))
        stripes = stripes - 12.0 * np.exp(-(((coord - seam) / (1.5 * scale)) ** 2)) * (
            rng.random() < 0.3
        )
    else:
        period = rng.uniform(28.0, 60.0) * scale
        phase = (coord / period + rng.random()) % 1.0
        stripes = rng.uniform(12.0, 30.0) * (np.sin(phase * math.pi) ** 4 - 0.4)
    bg = bg + (stripes[None, :] if along_x else stripes[:, None])
    return np.repeat(bg[:, :, None], 3, axis=2).astype(np.float32)


def _place_parts(rng: np.random.Generator, w: int, h: int, scale: float) -> list[Part]:
    """Zero to three non-overlapping parts, mostly inside the frame."""
    count = int(rng.choice(4, p=[0.07, 0.5, 0.28, 0.15]))
    parts: list[Part] = []
    centres: list[tuple[float, float, float]] = []
    for _ in range(count * 15):
        if len(parts) == count:
            break
        r = rng.uniform(0.14, 0.3) * BASE_SIZE * scale / math.sqrt(max(count, 1) * 0.8)
        r = min(r, 0.42 * min(w, h))
        cx = rng.uniform(0.55 * r, w - 0.55 * r)
        cy = rng.uniform(0.55 * r, h - 0.55 * r)
        if any(math.hypot(cx - x, cy - y) < 1.15 * (r + q) for x, y, q in centres):
            continue
        part = _part_mask(rng, w, h, cx, cy, r, scale)
        if part is not None:
            parts.append(part)
            centres.append((cx, cy, r))
    return parts


def _part_mask(
    rng: np.random.Generator, w: int, h: int, cx: float, cy: float, r: float, scale: float
) -> Part | None:
    """Rasterise a disc, a rounded plate or a casting outline into an ROI mask."""
    x0, y0, x1, y1 = _part_roi(w, h, cx, cy, r)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    c = (cx - x0, cy - y0)
    kind = rng.choice(3, p=[0.4, 0.3, 0.3])
    if kind == 0:
        _fill_circle(mask, c, r, 255)
        if rng.random() < 0.35:
            _fill_circle(mask, c, r * rng.uniform(0.22, 0.38), 0)
    elif kind == 1:
        aspect = rng.uniform(0.45, 1.0)
        rect = (c, (2 * r, 2 * r * aspect), float(rng.uniform(0, 180)))
        cv2.fillPoly(mask, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 255)
        k = int(max(3, rng.uniform(0.05, 0.3) * r)) | 1
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(2, (k, k)))
    else:
        n = int(rng.integers(7, 13))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = r * rng.uniform(0.72, 1.08, n)
        pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.12 * r + scale)
        mask = np.where(soft > 127, 255, 0).astype(np.uint8)
    if cv2.countNonZero(mask) < 0.5 * math.pi * r * r * 0.3:
        return None
    return Part(mask=mask, x0=x0, y0=y0, radius=r)


def _part_roi(w: int, h: int, cx: float, cy: float, r: float) -> tuple[int, int, int, int]:
    """The region (x0, y0, x1, y1) of the frame a part of radius ``r`` at (cx, cy) and its shadow
    are drawn in."""
    x0, y0 = max(int(cx - 1.3 * r), 0), max(int(cy - 1.3 * r), 0)
    return x0, y0, min(int(cx + 1.3 * r) + 1, w), min(int(cy + 1.3 * r) + 1, h)


def _fill_circle(mask: np.ndarray, centre: tuple[float, float], r: float, value: int) -> None:
    """Anti-alias-free filled circle with sub-pixel centre (4-bit fixed point)."""
    c = (round(centre[0] * 16), round(centre[1] * 16))
    cv2.circle(mask, c, round(r * 16), value, -1, cv2.LINE_8, shift=4)


def _roi(img: np.ndarray, part: Part) -> np.ndarray:
    """The image region covered by the part's mask (a view)."""
    ph, pw = part.mask.shape
    return img[part.y0 : part.y0 + ph, part.x0 : part.x0 + pw]


def _cast_shadow(
    rng: np.random.Generator, img: np.ndarray, part: Part, light: float, scale: float
) -> None:
    """Darken the conveyor beside the part, away from the light."""
    dist = rng.uniform(2.0, 9.0) * scale
    dx, dy = -math.cos(light) * dist, -math.sin(light) * dist
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    ph, pw = part.mask.shape
    shadow = cv2.warpAffine(part.mask.astype(np.float32) / 255.0, shift, (pw, ph))
    shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1.5, 5.0) * scale)
    _roi(img, part)[:] *= (1.0 - rng.uniform(0.3, 0.65) * shadow)[:, :, None]


def _paint_part(
    rng: np.random.Generator, img: np.ndarray, part: Part, light: float, scale: float
) -> None:
    """Composite a textured, shaded metal surface with a bevelled edge into the image."""
    ph, pw = part.mask.shape
    m = part.mask.astype(np.float32) / 255.0
    surface = rng.uniform(100.0, 185.0) + _texture(rng, ph, pw, part.radius, scale)
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    lx, ly = math.cos(light), math.sin(light)
    ramp = ((xx - pw / 2) * lx + (yy - ph / 2) * ly) / max(part.radius, 1.0)
    surface += ramp * rng.uniform(6.0, 25.0)
    hx, hy = rng.uniform(0.2, 0.8) * pw, rng.uniform(0.2, 0.8) * ph
    sx, sy = rng.uniform(0.08, 0.45, 2) * part.radius
    surface += rng.uniform(20.0, 90.0) * np.exp(-(((xx - hx) / sx) ** 2 + ((yy - hy) / sy) ** 2))
    blurred = cv2.GaussianBlur(m, (0, 0), rng.uniform(0.8, 2.0) * scale)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    surface += (gx * lx + gy * ly) * rng.uniform(60.0, 160.0)
    alpha = cv2.GaussianBlur(m, (0, 0), 0.5)[:, :, None]
    roi = _roi(img, part)
    roi[:] = roi * (1.0 - alpha) + np.clip(surface, 0, 255)[:, :, None] * alpha


def _texture(rng: np.random.Generator, h: int, w: int, radius: float, scale: float) -> np.ndarray:
    """Brushed, turned or cast surface texture with zero mean."""
    kind = rng.choice(3)
    noise = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    if kind == 0:
        length = int(max(5, rng.uniform(8, 25) * scale)) | 1
        kernel = np.zeros((length, length), np.float32)
        a = rng.uniform(0, math.pi)
        c, d = length // 2, length / 2
        cv2.line(
            kernel,
            (int(c - d * math.cos(a)), int(c - d * math.sin(a))),
            (int(c + d * math.cos(a)), int(c + d * math.sin(a))),
            1.0,
            1,
        )
        tex = cv2.filter2D(noise, -1, kernel / kernel.sum()) * rng.uniform(15.0, 35.0)
    elif kind == 1:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dist = np.hypot(xx - w / 2, yy - h / 2)
        tex = np.sin(dist * rng.uniform(0.6, 2.0) / scale) * rng.uniform(2.0, 6.0)
        tex += cv2.GaussianBlur(noise, (0, 0), 0.7) * rng.uniform(2.0, 5.0)
    else:
        small = rng.normal(0.0, 1.0, (max(h // 8, 2), max(w // 8, 2))).astype(np.float32)
        blotch = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        tex = blotch * rng.uniform(6.0, 14.0) + noise * rng.uniform(3.0, 7.0)
    return tex


# --- defects ----------------------------------------------------------------------------------


def _add_defects(
    rng: np.random.Generator,
    img: np.ndarray,
    part: Part,
    light: float,
    scale: float,
    taken: list[LabelBox],
) -> list[LabelBox]:
    """Put one to four defects on the part; return their boxes in image pixels."""
    h, w = img.shape[:2]
    inner = cv2.erode(part.mask, np.ones((3, 3), np.uint8), iterations=max(2, int(2 * scale)))
    ys, xs = np.nonzero(inner)
    if len(xs) == 0:
        return []
    found: list[LabelBox] = []
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.choice(3, p=[0.4, 0.3, 0.3]))
        for _attempt in range(12):
            i = int(rng.integers(len(xs)))
            anchor = (float(xs[i] + part.x0), float(ys[i] + part.y0))
            drawn = _draw_defect(rng, cls, anchor, part, inner, light, scale, (w, h))
            if drawn is None:
                continue
            alpha, x0, y0, paint = drawn
            box = _alpha_box(alpha, x0, y0, scale, (w, h))
            if box is None or any(_overlaps(box, b[1:]) for b in taken + found):
                continue
            _blend(img, alpha, x0, y0, paint)
            found.append((cls, *box))
            break
    return found


def _draw_defect(
    rng: np.random.Generator,
    cls: int,
    anchor: tuple[float, float],
    part: Part,
    inner: np.ndarray,
    light: float,
    scale: float,
    size: tuple[int, int],
) -> tuple[np.ndarray, int, int, np.ndarray] | None:
    """Render one defect as (alpha patch, patch x0, patch y0, paint) or None if it left the part."""
    if cls == SCRATCH:
        drawn = _scratch(rng, anchor, part.radius, scale)
    elif cls == HOLE:
        drawn = _hole(rng, anchor, light, scale)
    else:
        drawn = _spot(rng, anchor, scale)
    alpha, x0, y0, _ = drawn
    ph, pw = alpha.shape
    if x0 < 0 or y0 < 0 or x0 + pw > size[0] or y0 + ph > size[1]:
        return None
    ix, iy = x0 - part.x0, y0 - part.y0
    if ix < 0 or iy < 0 or ix + pw > inner.shape[1] or iy + ph > inner.shape[0]:
        return None
    if np.any((np.abs(alpha) > 0.05) & (inner[iy : iy + ph, ix : ix + pw] == 0)):
        return None
    return drawn


def _scratch(
    rng: np.random.Generator, anchor: tuple[float, float], radius: float, scale: float
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """A straight or gently curved line 1-3 px wide (at base scale), darker or brighter."""
    length = max(12.0 * scale, rng.uniform(0.3, 1.4) * radius)
    a = rng.uniform(0, 2 * math.pi)
    bend = 0.0 if rng.random() < 0.45 else rng.uniform(-0.35, 0.35) * length
    width = math.exp(rng.uniform(0.0, math.log(3.0))) * scale
    strength = rng.uniform(0.6, 1.0)
    tone = rng.uniform(-95.0, -40.0) if rng.random() < 0.6 else rng.uniform(40.0, 85.0)
    return _stroke(anchor, length, a, bend, width, strength, tone)


def _stroke(
    start: tuple[float, float],
    length: float,
    angle: float,
    bend: float,
    width: float,
    strength: float,
    tone: float,
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """A scratch from ``start``, ``length`` pixels at ``angle`` (radians), bowed sideways by
    ``bend`` pixels, ``width`` pixels wide, tapering at both ends, of opacity ``strength`` (0..1)
    and grey offset ``tone``."""
    p0 = np.array(start)
    p2 = p0 + length * np.array([math.cos(angle), math.sin(angle)])
    p1 = (p0 + p2) / 2 + bend * np.array([-math.sin(angle), math.cos(angle)])
    t = np.linspace(0.0, 1.0, max(8, int(length / 2)))[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    pad = math.ceil(width) + 2
    x0, y0 = int(pts[:, 0].min()) - pad, int(pts[:, 1].min()) - pad
    pw = int(pts[:, 0].max()) + pad + 1 - x0
    ph = int(pts[:, 1].max()) + pad + 1 - y0
    canvas = np.zeros((ph, pw), np.uint8)
    local = np.round((pts - [x0, y0]) * 16).astype(np.int32)
    taper = np.sin(np.linspace(0.0, math.pi, len(local))) ** 0.4
    thick = max(1, int(width))
    for (a, b), k in zip(itertools.pairwise(local), taper[:-1], strict=False):
        cv2.line(canvas, tuple(a), tuple(b), int(80 + 175 * k), thick, cv2.LINE_AA, shift=4)
    fade = min(width / thick, 1.0) * strength
    alpha = canvas.astype(np.float32) / 255.0 * fade
    return alpha, x0, y0, np.array([tone, tone, tone], np.float32)


def _hole(
    rng: np.random.Generator, anchor: tuple[float, float], light: float, scale: float
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """A dark, slightly elliptical pit with a shaded rim (burr) catching the light."""
    r = math.exp(rng.uniform(math.log(2.0), math.log(11.0))) * scale
    rim = max(1.0, rng.uniform(0.25, 0.5) * r)
    ratio = rng.uniform(0.8, 1.0)
    tilt = rng.uniform(0, math.pi)
    depth = rng.uniform(90.0, 140.0)
    glint = rng.uniform(25.0, 60.0)
    return _pit(anchor, light, r, rim, ratio, tilt, depth, glint)


def _pit(
    anchor: tuple[float, float],
    light: float,
    r: float,
    rim: float,
    ratio: float,
    tilt: float,
    depth: float,
    glint: float,
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """A pit of radius ``r`` centred on ``anchor``, squeezed to ``ratio`` across ``tilt``
    (radians), ``depth`` grey levels dark, its rim ``rim`` pixels wide and up to ``glint`` grey
    levels bright where it faces the light."""
    half = math.ceil(r + rim) + 2
    ss = 4
    n = (2 * half + 1) * ss
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / ss - (half + 0.5)
    u = xx * math.cos(tilt) + yy * math.sin(tilt)
    v = (-xx * math.sin(tilt) + yy * math.cos(tilt)) / ratio
    d = np.hypot(u, v)
    facing = (xx * math.cos(light) + yy * math.sin(light)) / np.maximum(d, 1e-3)
    pit = (d <= r).astype(np.float32) * (-depth + 20.0 * facing)
    ring = ((d > r) & (d <= r + rim)).astype(np.float32) * (facing * glint + 10)
    shade = cv2.resize(pit + ring, (2 * half + 1, 2 * half + 1), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(
        (d <= r + rim).astype(np.float32), shade.shape[::-1], interpolation=cv2.INTER_AREA
    )
    x0, y0 = round(anchor[0]) - half, round(anchor[1]) - half
    return (
        cover,
        x0,
        y0,
        np.repeat(shade[:, :, None], 3, axis=2) / np.maximum(cover, 1e-3)[:, :, None],
    )


def _spot(
    rng: np.random.Generator, anchor: tuple[float, float], scale: float
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """An irregular stain: rust, oil or dried residue, with a soft, ragged edge."""
    s = math.exp(rng.uniform(math.log(4.0), math.log(24.0))) * scale
    half = math.ceil(s) + 3
    n = 2 * half + 1
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - half
    field = np.zeros((n, n), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(-0.4, 0.4, 2) * s
        sx, sy = rng.uniform(0.2, 0.5, 2) * s
        field += np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    rough = cv2.GaussianBlur(rng.normal(0, 1, (n, n)).astype(np.float32), (0, 0), max(s / 6, 0.8))
    field += rough * 0.6 / max(float(np.abs(rough).max()), 1e-3) * 0.5
    alpha = np.clip((field - 0.5) / 0.25, 0.0, 1.0) * rng.uniform(0.55, 0.95)
    kind = rng.choice(3, p=[0.45, 0.35, 0.2])
    if kind == 0:
        paint = np.array([-70, -45, -15], np.float32) * rng.uniform(0.7, 1.2)
    elif kind == 1:
        paint = np.full(3, -rng.uniform(45, 85), np.float32)
    else:
        paint = np.full(3, rng.uniform(35, 60), np.float32)
    x0, y0 = round(anchor[0]) - half, round(anchor[1]) - half
    return alpha, x0, y0, np.broadcast_to(paint, (n, n, 3)).copy()


def _blend(img: np.ndarray, alpha: np.ndarray, x0: int, y0: int, paint: np.ndarray) -> None:
    """Add ``paint`` weighted by ``alpha`` to the image patch at (x0, y0)."""
    ph, pw = alpha.shape
    patch = img[y0 : y0 + ph, x0 : x0 + pw]
    patch += alpha[:, :, None] * np.broadcast_to(paint, (ph, pw, 3))


def _alpha_box(
    alpha: np.ndarray, x0: int, y0: int, scale: float, size: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """The box of visible defect pixels, with a one-pixel (at base scale) margin."""
    ys, xs = np.nonzero(alpha > 0.2)
    if len(xs) == 0:
        return None
    m = max(1.0, scale)
    x1 = max(0.0, x0 + xs.min() - m)
    y1 = max(0.0, y0 + ys.min() - m)
    x2 = min(float(size[0]), x0 + xs.max() + 1 + m)
    y2 = min(float(size[1]), y0 + ys.max() + 1 + m)
    return float(x1), float(y1), float(x2), float(y2)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """True when two (x1, y1, x2, y2) boxes intersect."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --- camera -----------------------------------------------------------------------------------


def _illumination(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Gain map ``[h, w, 1]`` of uneven illumination and lens vignetting."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2)
    phi = rng.uniform(0, 2 * math.pi)
    gain = 1.0 + rng.uniform(0.0, 0.22) * (nx * math.cos(phi) + ny * math.sin(phi))
    gain *= 1.0 - rng.uniform(0.08, 0.4) * (nx**2 + ny**2) / 2
    return gain[:, :, None]


def _camera(rng: np.random.Generator, img: np.ndarray, scale: float) -> np.ndarray:
    """Exposure, colour cast, defocus, sensor noise and JPEG compression; returns uint8 BGR.

    On frames larger than the base size the noise is spatially correlated, as after a camera's
    demosaicing and denoising.
    """
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-10.0, 10.0)
    if rng.random() < 0.4:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    else:
        img = img * np.clip(1.0 + rng.normal(0.0, 0.04, 3), 0.9, 1.1).astype(np.float32)
    if rng.random() < 0.65:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0) * scale)
    h, w = img.shape[:2]
    noise = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    if scale > 1.0:
        noise = cv2.GaussianBlur(noise, (0, 0), 0.35 * scale) * math.sqrt(scale)
    noise = noise[:, :, None]
    shot = np.sqrt(np.clip(img, 1.0, 255.0)) * rng.uniform(0.0, 0.35)
    img = img + noise * (rng.uniform(1.0, 5.0) + shot)
    out = np.clip(img, 0, 255).astype(np.uint8)
    quality = int(rng.integers(55, 96))
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out


# --- datasets ---------------------------------------------------------------------------------


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for image ``index`` of a set: independent of how many images are made."""
    return np.random.default_rng([seed, index])


def yolo_lines(boxes: list[LabelBox], size: tuple[int, int]) -> list[str]:
    """Boxes as YOLO label lines: ``class cx cy w h`` normalised to the image size."""
    w, h = size
    rows = [
        (c, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        for c, x1, y1, x2, y2 in boxes
    ]
    return [f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}" for c, cx, cy, bw, bh in rows]


def write_yolo_dataset(
    out_dir: str | Path,
    count: int,
    seed: int,
    size: tuple[int, int] = (BASE_SIZE, BASE_SIZE),
    jpeg_quality: int = 95,
) -> Path:
    """Write ``images/*.jpg``, ``labels/*.txt`` (YOLO) and ``labels.json``; return the folder."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img, boxes = generate_sample(sample_rng(seed, i), size)
        name = f"{i:05d}"
        cv2.imwrite(
            str(out / "images" / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        )
        lines = yolo_lines(boxes, size)
        (out / "labels" / f"{name}.txt").write_text("".join(f"{x}\n" for x in lines))
    (out / "labels.json").write_text(json.dumps(list(CLASS_NAMES)) + "\n")
    return out


def pick_samples(
    count: int, seed: int, size: tuple[int, int], ok_share: float | None = None
) -> Iterator[tuple[np.ndarray, list[LabelBox]]]:
    """``count`` generated frames with their boxes, in generation order.

    With ``ok_share`` they are picked so that that share of them (spread evenly) shows no defect at
    all, as on a line that mostly makes good parts.
    """
    index = 0
    for slot in range(count):
        want_ok = None
        if ok_share is not None:
            want_ok = math.floor((slot + 1) * ok_share) > math.floor(slot * ok_share)
        while True:
            img, boxes = generate_sample(sample_rng(seed, index), size)
            index += 1
            if want_ok is None or want_ok != bool(boxes):
                yield img, boxes
                break


def write_samples(
    out_dir: str | Path,
    count: int,
    seed: int,
    size: tuple[int, int],
    jpeg_quality: int = 85,
    ok_share: float | None = None,
) -> list[Path]:
    """Write plain JPEG frames ``frame_000.jpg``... (no labels), e.g. for a file camera to loop."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (img, _) in enumerate(pick_samples(count, seed, size, ok_share)):
        path = out / f"frame_{i:03d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: write a generated dataset split."""
    parser = argparse.ArgumentParser(description="Write a synthetic YOLO-format defect dataset.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="test")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument(
        "--size", type=int, nargs=2, default=[BASE_SIZE, BASE_SIZE], metavar=("W", "H")
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the written files")
    parser.add_argument("--images-only", action="store_true", help="plain frames, no labels")
    parser.add_argument(
        "--ok-share",
        type=float,
        default=None,
        help="with --images-only: share of defect-free frames",
    )
    args = parser.parse_args(argv)
    size = (args.size[0], args.size[1])
    if args.images_only:
        write_samples(
            args.out_dir, args.count, SPLIT_SEEDS[args.split], size, args.quality, args.ok_share
        )
    else:
        write_yolo_dataset(args.out_dir, args.count, SPLIT_SEEDS[args.split], size, args.quality)
    print(json.dumps({"out_dir": str(args.out_dir), "count": args.count, "split": args.split}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
