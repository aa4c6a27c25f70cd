"""Plane geometry of zones: simple polygons (concave ones too) against points and boxes, in numpy.

Coordinates are in any one unit (the rules use frame-normalised 0..1, y down). A polygon is closed:
a point on its edge lies inside it. Boxes are ``x1, y1, x2, y2`` with ``x1 <= x2`` and ``y1 <= y2``.

Many polygons are evaluated together (``PolygonSet``): the edges of every polygon whose bounding box
meets a point or box are gathered and tested in one pass, then summed per pair, so the cost is a
handful of array operations whatever the number of zones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Tolerance of "on an edge" and "the same point", relative to the size of the figure.
EPS = 1e-9


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` (x, y in drawing order) is not a simple polygon with an area; None when it
    is one. Edges that cross or touch, a point repeated next to itself and a polygon folding back
    on itself are problems."""
    p = np.asarray(points, dtype=float)
    n = len(p)
    if n < 3:
        return "needs at least 3 points"
    scale = max(float(np.ptp(p, axis=0).max()), 1e-300)
    tol = EPS * scale
    a, b = p, np.roll(p, -1, axis=0)
    edge = b - a
    if (np.hypot(edge[:, 0], edge[:, 1]) <= tol).any():
        return "repeats a point: neighbouring points must differ"
    crossing = _segments_meet(a, b, tol * scale)
    i, j = np.triu_indices(n, 1)
    neighbours = (j == i + 1) | ((i == 0) & (j == n - 1))
    if crossing[i[~neighbours], j[~neighbours]].any():
        return "edges cross or touch: a zone must be a simple polygon"
    turn = _cross(edge, np.roll(edge, -1, axis=0))
    back = (edge * np.roll(edge, -1, axis=0)).sum(axis=1) < 0
    if ((np.abs(turn) <= tol * scale) & back).any():
        return "folds back on itself: a zone must be a simple polygon"
    if abs(_signed_area(p)) <= tol * scale:
        return "has no area"
    return None


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _segments_meet(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """``[i, j]``: whether closed segments ``a[i]b[i]`` and ``a[j]b[j]`` have a point in common."""
    pa, pb = a[:, None, :], b[:, None, :]
    qa, qb = a[None, :, :], b[None, :, :]

    def side(u0: np.ndarray, u1: np.ndarray, w: np.ndarray) -> np.ndarray:
        value = _cross(u1 - u0, w - u0)
        return np.where(np.abs(value) <= tol, 0, np.sign(value))

    def within(u0: np.ndarray, u1: np.ndarray, w: np.ndarray) -> np.ndarray:
        low, high = np.minimum(u0, u1) - tol, np.maximum(u0, u1) + tol
        inside = (w >= low) & (w <= high)
        return inside[..., 0] & inside[..., 1]

    s1, s2 = side(pa, pb, qa), side(pa, pb, qb)
    s3, s4 = side(qa, qb, pa), side(qa, qb, pb)
    proper = (s1 * s2 < 0) & (s3 * s4 < 0)
    touch = (
        ((s1 == 0) & within(pa, pb, qa))
        | ((s2 == 0) & within(pa, pb, qb))
        | ((s3 == 0) & within(qa, qb, pa))
        | ((s4 == 0) & within(qa, qb, pb))
    )
    return proper | touch


class PolygonSet:
    """Polygons tested together against points and boxes.

    Only the (polygon, point or box) pairs whose bounding boxes meet are computed: their edges are
    gathered into flat arrays, tested in one pass and summed per pair. Zones spread over a frame
    then cost about the edges of the zones each box touches, not those of every zone.
    """

    def __init__(self, polygons: Sequence[np.ndarray]) -> None:
        """``polygons``: each an ``(n, 2)`` array of its points in order (n >= 3)."""
        if not polygons:
            raise ValueError("a polygon set needs at least one polygon")
        shapes = [np.asarray(p, dtype=float) for p in polygons]
        a = np.concatenate(shapes)
        b = np.concatenate([np.roll(p, -1, axis=0) for p in shapes])
        self.count = len(shapes)
        self._sizes = np.array([len(p) for p in shapes])
        self._starts = np.cumsum(self._sizes) - self._sizes
        self._low = np.array([p.min(axis=0) for p in shapes]) - EPS  # (polygons, 2)
        self._high = np.array([p.max(axis=0) for p in shapes]) + EPS
        self._ax, self._ay, self._bx, self._by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        dx, dy = self._bx - self._ax, self._by - self._ay
        self._slope = dy / np.where(dx == 0, 1.0, dx)  # y per x; vertical edges carry no weight
        self._inverse = dx / np.where(dy == 0, 1.0, dy)  # x per y, for horizontal rays
        self._tolerance = EPS * np.maximum(np.hypot(dx, dy), 1.0)

    def _pairs(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, ...]:
        """The pairs (polygon, item) whose bounding boxes meet (items spanning ``low``..``high``,
        each ``(n, 2)``): their polygon and item indexes, each pair's edges (edge index, pair
        index) and where each pair's edges start."""
        meets = (
            (low[None, :, 0] <= self._high[:, None, 0])
            & (high[None, :, 0] >= self._low[:, None, 0])
            & (low[None, :, 1] <= self._high[:, None, 1])
            & (high[None, :, 1] >= self._low[:, None, 1])
        )
        polygon, item = np.nonzero(meets)
        sizes = self._sizes[polygon]
        first = np.cumsum(sizes) - sizes
        pair = np.repeat(np.arange(len(polygon)), sizes)
        edge = self._starts[polygon][pair] + np.arange(int(sizes.sum())) - first[pair]
        return polygon, item, edge, pair, first

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``[polygon, point]``: whether each ``(x, y)`` of ``points`` lies inside (or on the edge
        of) each polygon."""
        found = np.zeros((self.count, len(points)), dtype=bool)
        polygon, item, edge, pair, first = self._pairs(points, points)
        if not len(polygon):
            return found
        px, py = points[item[pair], 0], points[item[pair], 1]
        ax, ay, bx, by = self._ax[edge], self._ay[edge], self._bx[edge], self._by[edge]
        crossings = ((ay > py) != (by > py)) & (px < ax + (py - ay) * self._inverse[edge])
        inside = np.add.reduceat(crossings.astype(np.int32), first) % 2 == 1
        off_line = np.abs((bx - ax) * (py - ay) - (by - ay) * (px - ax))
        on_edge = (
            (off_line <= self._tolerance[edge])
            & (px >= np.minimum(ax, bx) - EPS)
            & (px <= np.maximum(ax, bx) + EPS)
            & (py >= np.minimum(ay, by) - EPS)
            & (py <= np.maximum(ay, by) + EPS)
        )
        found[polygon, item] = inside | np.logical_or.reduceat(on_edge, first)
        return found

    def overlap(self, boxes: np.ndarray) -> np.ndarray:
        """``[polygon, box]``: the fraction (0..1) of each box's area inside each polygon; for a
        box without area, 1 when its centre is inside, else 0.

        The area of polygon ∩ box is the polygon's shoelace integral ∮ y dx with each edge's x
        clipped to the box's columns and its y clamped to the box's rows: along any vertical line the
        edges' clamped heights add up, with their directions' signs, to the length of the line inside
        both. Each edge's clamped height is linear in pieces, so its integral is exact.
        """
        area = np.zeros((self.count, len(boxes)))
        polygon, item, edge, pair, first = self._pairs(boxes[:, :2], boxes[:, 2:])
        if len(polygon):
            x1, y1, x2, y2 = (boxes[item[pair], k] for k in range(4))
            ax, ay, slope = self._ax[edge], self._ay[edge], self._slope[edge]
            u = np.clip(ax, x1, x2)
            v = np.clip(self._bx[edge], x1, x2)
            yu, yv = ay + (u - ax) * slope, ay + (v - ax) * slope
            mean_height = (
                (yu + yv) / 2 - _mean_positive(yu - y2, yv - y2) + _mean_positive(y1 - yu, y1 - yv)
            )
            area[polygon, item] = np.abs(np.add.reduceat((v - u) * mean_height, first))
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        fraction = np.clip(area / np.where(box_area > 0, box_area, 1.0), 0.0, 1.0)
        if (box_area > 0).all():
            return fraction
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
        return np.where(box_area > 0, fraction, self.contains(centres).astype(float))


def _mean_positive(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The mean of ``max(f, 0)`` over a segment where ``f`` runs linearly from ``start`` to ``end``."""
    high, low = np.maximum(start, end), np.minimum(start, end)
    span = np.where(high > low, high - low, 1.0)
    return np.where(low >= 0, (start + end) / 2, np.where(high <= 0, 0.0, high * high / (2 * span)))


def boxes_in_boxes(inner: np.ndarray, outer: np.ndarray, overlap: float | None) -> np.ndarray:
    """``[i, o]``: whether box ``inner[i]`` belongs to box ``outer[o]``: its centre lies in it (on
    the edge counts) when ``overlap`` is None, else at least that fraction of its area does (a box
    without area: its centre)."""
    ix1, iy1, ix2, iy2 = (inner[:, None, k] for k in range(4))
    ox1, oy1, ox2, oy2 = (outer[None, :, k] for k in range(4))
    cx, cy = (ix1 + ix2) / 2, (iy1 + iy2) / 2
    centre_in = (cx >= ox1) & (cx <= ox2) & (cy >= oy1) & (cy <= oy2)
    if overlap is None:
        return centre_in
    width = np.clip(np.minimum(ix2, ox2) - np.maximum(ix1, ox1), 0.0, None)
    height = np.clip(np.minimum(iy2, oy2) - np.maximum(iy1, oy1), 0.0, None)
    area = (ix2 - ix1) * (iy2 - iy1)
    share = width * height / np.where(area > 0, area, 1.0)
    return np.where(area > 0, share >= overlap - EPS, centre_in)
