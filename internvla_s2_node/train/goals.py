"""Pixel-goal labels for recorded oracle episodes: where the robot will stand, seen from the look-down camera.

For a frame whose next action is FORWARD, the goal is the robot's floor position at the end of
that run of movement (the frame before the next turn of 30 degrees or more, or STOP), projected
into the look-down camera of the frame. When that point is outside the image (or behind the
camera) the nearest earlier point of the run that is visible is used. Frames whose next action
is STOP, or a turn not followed by a forward step, get no goal (-1): the model is taught turn
arrows there.

A single 15-degree turn between forward steps does not end a run, and a frame whose next action
is a turn followed by a forward step (such a turn, or the last turn of a longer one) gets the goal
of the run that follows. A discrete shortest-path follower holds a diagonal by
zig-zagging (forward, left, forward, right, ...), so frames a step apart with nearly the same view
would otherwise teach "<-", then a short forward, then "->": opposite answers to one picture (46%
of the turn samples of 30 recorded training episodes were such single turns). With this rule a
pixel goal is where the path goes next, which the follower of a waypoint turns toward anyway.
This labelling rule is this project's own, for its discrete oracle.
"""

from __future__ import annotations

import numpy as np

from ..core.actions import Action


TURNS = (Action.LEFT, Action.RIGHT)
# A waypoint is followed for at most 8 actions (sim.loop.WAYPOINT_MAX_STEPS, upstream's MAX_STEPS) before
# S2 is asked again, so a goal farther than this is not reached from one answer; nearer goals also sit
# lower in the look-down image, where one pixel is fewer centimetres of floor.
MAX_GOAL_DISTANCE = 3.0


def forward_run_end(actions, i: int, expert=None) -> int:
    """The frame at which the robot arrives after the moves starting at frame ``i``: FORWARD steps, and
    single turns each followed by FORWARD (a zig-zag); two turns in a row, STOP or a look end it, and
    so does a step that was not the expert's (``expert[j]`` False: a recorded detour starts there)."""
    j = i
    while j < len(actions) - 1 and (expert is None or expert[j]) and (actions[j] == Action.FORWARD or _correction(actions, j)):
        j += 1
    return j


def _correction(actions, j: int) -> bool:
    """A 15-degree turn followed by a FORWARD step (inside a run: a single turn between forward steps)."""
    return actions[j] in TURNS and j + 1 < len(actions) and actions[j + 1] == Action.FORWARD


def project(point_world: np.ndarray, t_world_optical: np.ndarray, k: np.ndarray) -> tuple[float, float] | None:
    """(column, row) of a world point in a camera (optical frame: z forward), or None behind it."""
    p = np.linalg.inv(t_world_optical) @ np.append(point_world, 1.0)
    if p[2] <= 1e-6:
        return None
    return (k[0, 0] * p[0] / p[2] + k[0, 2], k[1, 1] * p[1] / p[2] + k[1, 2])


def pixel_goals_from_poses(
    actions,
    floor_positions: np.ndarray,
    t_world_optical_down: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
    max_distance: float = MAX_GOAL_DISTANCE,
    expert=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(goals (L, 2) int (column, row), goal_frame_ids (L,) int) for :func:`recording.write_episode`.

    ``actions[i]``: the action taken at frame ``i``. ``floor_positions``: (L, 3) the robot's position on
    the floor at each frame (world frame). ``t_world_optical_down``: (L, 4, 4) look-down camera poses
    (optical frame). ``intrinsics``: 3x3 of the look-down image; ``image_size``: its (width, height).
    Goals farther than ``max_distance`` (m, on the floor) from the robot are not used. ``expert``: (L,) bools
    of a recording with injected detours; a run ends where one starts, so a goal is a point of the expert's path.
    """
    length = len(actions)
    floor = np.asarray(floor_positions, dtype=float).reshape(length, 3)
    poses = np.asarray(t_world_optical_down, dtype=float).reshape(length, 4, 4)
    k = np.asarray(intrinsics, dtype=float)
    width, height = image_size
    goals = np.zeros((length, 2), np.int64)
    ids = np.full(length, -1, np.int64)
    for i in range(length):
        if actions[i] != Action.FORWARD and not _correction(actions, i):
            continue
        for j in range(forward_run_end(actions, i, expert), i, -1):
            if np.linalg.norm(floor[j, :2] - floor[i, :2]) > max_distance:
                continue
            uv = project(floor[j], poses[i], k)
            if uv is not None and 0 <= round(uv[0]) < width and 0 <= round(uv[1]) < height:
                goals[i] = (round(uv[0]), round(uv[1]))
                ids[i] = j - i
                break
    return goals, ids
