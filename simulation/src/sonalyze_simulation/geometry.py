"""Plane geometry of floor plans: area, simplicity, containment. Pure functions over coordinate tuples."""

from __future__ import annotations

import math
from collections.abc import Sequence

Point2 = tuple[float, float]

_EPS: float = 1e-9


def signed_area_m2(vertices: Sequence[Point2]) -> float:
    """Shoelace area; positive when the vertices run counter-clockwise."""
    total = 0.0
    n = len(vertices)
    for i in range(n):
        x0, y0 = vertices[i]
        x1, y1 = vertices[(i + 1) % n]
        total += x0 * y1 - x1 * y0
    return total / 2.0


def perimeter_m(vertices: Sequence[Point2]) -> float:
    n = len(vertices)
    return sum(math.dist(vertices[i], vertices[(i + 1) % n]) for i in range(n))


def _orientation(a: Point2, b: Point2, c: Point2) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Point2, b: Point2, p: Point2) -> bool:
    return min(a[0], b[0]) - _EPS <= p[0] <= max(a[0], b[0]) + _EPS and (
        min(a[1], b[1]) - _EPS <= p[1] <= max(a[1], b[1]) + _EPS
    )


def segments_intersect(a: Point2, b: Point2, c: Point2, d: Point2) -> bool:
    """True when the closed segments ab and cd share at least one point."""
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > _EPS and o2 < -_EPS) or (o1 < -_EPS and o2 > _EPS)) and (
        (o3 > _EPS and o4 < -_EPS) or (o3 < -_EPS and o4 > _EPS)
    ):
        return True
    return (
        (abs(o1) <= _EPS and _on_segment(a, b, c))
        or (abs(o2) <= _EPS and _on_segment(a, b, d))
        or (abs(o3) <= _EPS and _on_segment(c, d, a))
        or (abs(o4) <= _EPS and _on_segment(c, d, b))
    )


def self_intersection(vertices: Sequence[Point2]) -> tuple[int, int] | None:
    """The first pair of walls (edge indices) that cross or overlap, or None for a simple polygon.

    Edge ``i`` joins vertex ``i`` to vertex ``i + 1``. Neighbouring edges share a vertex by design; they
    count as overlapping only when they fold back onto each other.
    """
    n = len(vertices)
    edges = [(vertices[i], vertices[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        a, b = edges[i]
        for j in range(i + 1, n):
            c, d = edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):
                shared, other_i, other_j = (b, a, d) if j == i + 1 else (a, b, c)
                # neighbours fold back when the far ends lie on the same ray from the shared vertex
                collinear = abs(_orientation(shared, other_i, other_j)) <= _EPS
                same_side = (other_i[0] - shared[0]) * (other_j[0] - shared[0]) + (other_i[1] - shared[1]) * (
                    other_j[1] - shared[1]
                ) > 0
                if collinear and same_side:
                    return (i, j)
                continue
            if segments_intersect(a, b, c, d):
                return (i, j)
    return None


def distance_to_segment_m(p: Point2, a: Point2, b: Point2) -> float:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    length_sq = dx * dx + dy * dy
    if length_sq <= 0.0:
        return math.dist(p, a)
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / length_sq))
    return math.dist(p, (ax + t * dx, ay + t * dy))


def contains(vertices: Sequence[Point2], p: Point2) -> bool:
    """Even-odd rule; points on the boundary may fall either way (callers keep a margin)."""
    inside = False
    n = len(vertices)
    x, y = p
    for i in range(n):
        x0, y0 = vertices[i]
        x1, y1 = vertices[(i + 1) % n]
        if (y0 > y) != (y1 > y):
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            if x < x_cross:
                inside = not inside
    return inside


def distance_to_boundary_m(vertices: Sequence[Point2], p: Point2) -> float:
    n = len(vertices)
    return min(distance_to_segment_m(p, vertices[i], vertices[(i + 1) % n]) for i in range(n))


def axis_aligned_rectangle(vertices: Sequence[Point2]) -> tuple[Point2, Point2] | None:
    """(lowest corner, highest corner) when the floor plan is a rectangle with its sides along the axes, else None."""
    if len(vertices) != 4:
        return None
    xs, ys = {x for x, _ in vertices}, {y for _, y in vertices}
    if len(xs) != 2 or len(ys) != 2 or len(set(vertices)) != 4:
        return None
    n = len(vertices)
    for i in range(n):
        (x0, y0), (x1, y1) = vertices[i], vertices[(i + 1) % n]
        if x0 != x1 and y0 != y1:
            return None
    return (min(xs), min(ys)), (max(xs), max(ys))


def rectangle(width_m: float, depth_m: float) -> list[Point2]:
    """The floor of a shoebox as a polygon; wall ``i`` is the edge from vertex ``i`` to ``i + 1``."""
    return [(0.0, 0.0), (width_m, 0.0), (width_m, depth_m), (0.0, depth_m)]
