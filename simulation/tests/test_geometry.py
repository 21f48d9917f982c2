"""Floor-plan geometry: simplicity, containment, area."""

from __future__ import annotations

import pytest

from sonalyze_simulation.geometry import (
    axis_aligned_rectangle,
    contains,
    distance_to_boundary_m,
    self_intersection,
    signed_area_m2,
)

SQUARE = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)]
L_SHAPE = [(0.0, 0.0), (6.0, 0.0), (6.0, 3.0), (3.0, 3.0), (3.0, 6.0), (0.0, 6.0)]


class TestSignedArea:
    def test_counter_clockwise_is_positive(self) -> None:
        assert signed_area_m2(SQUARE) == 16.0

    def test_clockwise_is_negative(self) -> None:
        assert signed_area_m2(SQUARE[::-1]) == -16.0

    def test_l_shape(self) -> None:
        assert signed_area_m2(L_SHAPE) == 27.0


class TestSelfIntersection:
    @pytest.mark.parametrize("polygon", [SQUARE, SQUARE[::-1], L_SHAPE])
    def test_simple_polygons_pass(self, polygon: list[tuple[float, float]]) -> None:
        assert self_intersection(polygon) is None

    def test_bow_tie_is_found(self) -> None:
        assert self_intersection([(0.0, 0.0), (4.0, 4.0), (4.0, 0.0), (0.0, 4.0)]) == (0, 2)

    def test_wall_folding_back_is_found(self) -> None:
        assert self_intersection([(0.0, 0.0), (4.0, 0.0), (2.0, 0.0), (2.0, 3.0)]) is not None

    def test_touching_non_adjacent_walls_are_found(self) -> None:
        # the fourth vertex lies on the first wall
        assert self_intersection([(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 0.0), (0.0, 4.0)]) is not None


class TestContains:
    def test_point_in_the_notch_of_an_l_is_outside(self) -> None:
        assert not contains(L_SHAPE, (4.5, 4.5))

    def test_point_in_the_arm_is_inside(self) -> None:
        assert contains(L_SHAPE, (1.0, 5.0))

    def test_distance_to_boundary(self) -> None:
        assert distance_to_boundary_m(SQUARE, (1.0, 2.0)) == pytest.approx(1.0)


class TestAxisAlignedRectangle:
    @pytest.mark.parametrize(
        "vertices",
        [
            [(0, 0), (5, 0), (5, 4), (0, 4)],
            [(5, 4), (5, 0), (0, 0), (0, 4)],  # clockwise, from another corner
            [(1.5, -2), (6.5, -2), (6.5, 2), (1.5, 2)],
        ],
    )
    def test_rectangles_along_the_axes(self, vertices: list[tuple[float, float]]) -> None:
        low, high = axis_aligned_rectangle(vertices)  # type: ignore[misc]
        assert high[0] - low[0] == 5 and high[1] - low[1] == 4

    @pytest.mark.parametrize(
        "vertices",
        [
            [(0, 0), (4, 3), (1, 7), (-3, 4)],  # a rotated rectangle
            [(0, 0), (5, 0), (4, 4), (0, 4)],  # a trapezoid
            [(0, 0), (5, 4), (5, 0), (0, 4)],  # the box's corners in a crossing order
            [(0, 0), (5, 0), (5, 2), (2, 2), (2, 4), (0, 4)],  # an L
        ],
    )
    def test_other_floor_plans(self, vertices: list[tuple[float, float]]) -> None:
        assert axis_aligned_rectangle(vertices) is None
