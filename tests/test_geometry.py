"""Zones' geometry with known answers: edges, concave polygons, overlap fractions."""

from __future__ import annotations

import numpy as np
import pytest

from mfgvision.geometry import PolygonSet, boxes_in_boxes, polygon_problem

SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
#: An L: the square 0..2 x 0..2 without its top-right quarter (y down: 1..2 x 1..2 is missing).
L_SHAPE = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=float)


def test_points_on_an_edge_or_a_corner_are_inside() -> None:
    zones = PolygonSet([SQUARE])
    points = np.array(
        [[0.5, 0.5], [1.0, 0.5], [0.5, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0 + 1e-6, 0.5]]
    )
    assert zones.contains(points).tolist() == [[True, True, True, True, True, False]]


def test_a_concave_polygon_leaves_its_notch_out() -> None:
    zones = PolygonSet([L_SHAPE])
    points = np.array([[0.5, 1.5], [1.5, 0.5], [1.5, 1.5], [1.0, 1.5], [1.5, 1.0], [2.5, 0.5]])
    assert zones.contains(points).tolist() == [[True, True, False, True, True, False]]


def test_overlap_is_the_share_of_each_box_inside_each_polygon() -> None:
    zones = PolygonSet([SQUARE, L_SHAPE])
    boxes = np.array(
        [
            [0.25, 0.25, 0.75, 0.75],  # inside both
            [0.5, 0.0, 1.5, 1.0],  # half in the square, all in the L
            [1.0, 1.0, 2.0, 2.0],  # the L's notch: touches both, inside neither
            [0.0, 0.0, 2.0, 2.0],  # a quarter in the square, three quarters in the L
            [-1.0, -1.0, 3.0, 3.0],  # around both
            [0.5, 1.5, 1.5, 2.5],  # a quarter in the L's lower arm, none in the square
        ]
    )
    expected = [[1, 0.5, 0, 0.25, 1 / 16, 0], [1, 1, 0, 0.75, 3 / 16, 0.25]]
    assert np.allclose(zones.overlap(boxes), expected)


def test_overlap_is_the_same_whichever_way_a_polygon_is_drawn() -> None:
    boxes = np.array([[0.5, 0.5, 1.5, 1.5], [0.2, 0.1, 0.9, 1.7]])
    forward, backward = PolygonSet([L_SHAPE]), PolygonSet([L_SHAPE[::-1]])
    assert np.allclose(forward.overlap(boxes), backward.overlap(boxes))
    assert np.allclose(forward.overlap(boxes)[0, 0], 0.75)


def test_a_box_without_area_belongs_where_its_centre_is() -> None:
    zones = PolygonSet([SQUARE])
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0], [1.0, 0.2, 1.0, 0.4]])
    assert zones.overlap(boxes).tolist() == [[1.0, 0.0, 1.0]]


def test_a_box_belongs_to_another_by_its_centre_or_by_its_share() -> None:
    person = np.array([[0.0, 0.0, 2.0, 4.0]])
    helmets = np.array([[0.5, -0.5, 1.5, 0.5], [1.5, 0.0, 2.5, 1.0], [3.0, 0.0, 4.0, 1.0]])
    assert boxes_in_boxes(helmets, person, None).tolist() == [[True], [True], [False]]
    assert boxes_in_boxes(helmets, person, 0.5).tolist() == [[True], [True], [False]]
    assert boxes_in_boxes(helmets, person, 0.6).tolist() == [[False], [False], [False]]


@pytest.mark.parametrize(
    "points, problem",
    [
        ([[0, 0], [1, 1], [1, 0], [0, 1]], "edges cross"),
        ([[0, 0], [2, 0], [2, 2], [1, 0], [0, 2]], "edges cross"),  # a vertex on another edge
        ([[0, 0], [1, 0], [1, 0], [0, 1]], "repeats a point"),
        ([[0, 0], [1, 0], [2, 0]], "folds back"),
        ([[0, 0], [1, 0]], "at least 3 points"),
    ],
)
def test_polygons_that_are_not_simple_are_named(points: list[list[float]], problem: str) -> None:
    found = polygon_problem(points)
    assert found is not None and problem in found


def test_simple_polygons_pass_concave_ones_too() -> None:
    assert polygon_problem(SQUARE.tolist()) is None
    assert polygon_problem(L_SHAPE.tolist()) is None
    assert polygon_problem([[0, 0], [640, 0], [320, 480]]) is None
