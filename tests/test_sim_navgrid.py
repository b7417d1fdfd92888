"""Occupancy-grid geodesics, paths, collisions and the greedy follower."""

import math

import numpy as np
import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.sim.navgrid import NavGrid

RES = 0.05
RADIUS = 0.18


def wall_grid(radius=RADIUS):
    """12 m x 10 m room; a wall x in [6.0, 6.1) with a 1 m doorway y in [4.5, 5.5)."""
    obs = np.zeros((200, 240), dtype=bool)
    obs[:, 120:122] = True
    obs[90:110, 120:122] = False
    return NavGrid.from_obstacles(obs, (0.0, 0.0), RES, radius)


def rounded_detour(a, corner, r, wall_thickness):
    """Hand-computed shortest path from a to its mirror image around a wall end of
    radius-r inflation: two tangents, two arcs, and the run along the wall top."""
    d = math.dist(a, corner)
    theta = math.atan2(corner[1] - a[1], corner[0] - a[0]) + math.asin(r / d)
    return 2 * (math.sqrt(d * d - r * r) + r * theta) + wall_thickness


def test_geodesic_around_a_wall_equals_the_hand_computed_detour():
    grid = wall_grid()
    a, b = (3.0, 2.0, 0.0), (9.0, 2.0, 0.0)  # symmetric about the wall centre x = 6.05
    expected = rounded_detour((3.0, 2.0), (6.0, 4.5), RADIUS, 0.1)  # 8.169 m
    assert grid.geodesic_distance(a, b) == pytest.approx(expected, rel=0.015)
    assert grid.geodesic_distance(b, a) == pytest.approx(expected, rel=0.015)
    path = grid.shortest_path(a, b)
    length = float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))
    assert length == pytest.approx(expected, rel=0.015)
    assert np.all(grid.navigable_mask(path))
    # without inflation the detour is the polygon through the wall corners
    thin = wall_grid(radius=0.01)
    polygon = 2 * math.hypot(3.0, 2.5) + 0.1
    assert thin.geodesic_distance(a, b) == pytest.approx(polygon, rel=0.015)


def test_line_of_sight_is_euclidean_and_unreachable_is_inf():
    grid = wall_grid()
    assert grid.geodesic_distance((1, 1, 0), (4, 5, 0)) == pytest.approx(5.0)
    obs = np.zeros((40, 80), dtype=bool)
    obs[:, 40] = True  # closed wall
    closed = NavGrid.from_obstacles(obs, (0, 0), RES, RADIUS)
    assert math.isinf(closed.geodesic_distance((0.5, 1, 0), (3.5, 1, 0)))
    assert len(closed.shortest_path((0.5, 1, 0), (3.5, 1, 0))) == 0
    assert closed.next_action((0.5, 1, 0), 0.0, (3.5, 1, 0), 0.25, 0.25, 15.0) == Action.STOP


def test_walking_into_a_wall_stops_and_slides_along_it():
    grid = wall_grid()
    limit = 6.0 - RADIUS + 1e-9
    pos, collided = grid.move((5.7, 3.0, 0.0), 0.0, 0.25)  # head-on
    assert collided and pos[0] <= limit and pos[0] > 5.7
    pos, yaw = np.array([5.5, 2.0, 0.0]), math.radians(30.0)
    ys = []
    for _ in range(12):
        pos, collided = grid.move(pos, yaw, 0.25)
        assert pos[0] <= limit  # never crosses
        ys.append(pos[1])
    assert collided
    assert np.all(np.diff(ys) > 0.05)  # keeps sliding along +y
    assert ys[-1] > 3.3


def test_snap_and_follower_reach_a_goal_through_the_doorway():
    grid = wall_grid()
    snapped = grid.snap((6.05, 2.0, 0.0))  # inside the wall
    assert grid.is_navigable(snapped) and abs(snapped[0] - 6.05) < 0.3
    pos, yaw, goal = np.array([3.0, 2.0, 0.0]), math.pi, np.array([9.0, 2.0, 0.0])
    for _ in range(200):
        act = grid.next_action(pos, yaw, goal, 0.25, 0.25, 15.0)
        if act == Action.STOP:
            break
        if act == Action.FORWARD:
            pos, _ = grid.move(pos, yaw, 0.25)
        else:
            yaw += math.radians(15.0) * (1 if act == Action.LEFT else -1)
    assert act == Action.STOP
    assert grid.geodesic_distance(pos, goal) <= 0.25
