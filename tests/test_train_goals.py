"""Pixel-goal labels from oracle poses, written and read back as training samples."""

import math

import numpy as np

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.geometry import camera_extrinsic, intrinsics_from_hfov, planar_pose
from internvla_s2_node.train.goals import forward_run_end, pixel_goals_from_poses
from internvla_s2_node.train.lerobot_data import DataSource, scan
from internvla_s2_node.train.recording import write_episode
from internvla_s2_node.train.samples import SampleKind, SampleOptions, build_samples

F, L, R, S = int(Action.FORWARD), int(Action.LEFT), int(Action.RIGHT), int(Action.STOP)


def _straight_episode(actions, step=0.25):
    """Robot moving along +x by ``step`` per FORWARD, turning 15 degrees per LEFT (RIGHT); camera 1.25 m up, 30 deg down."""
    x = y = yaw = 0.0
    base = []
    for a in actions:
        base.append(planar_pose(x, y, yaw))
        if a == F:
            x, y = x + step * math.cos(yaw), y + step * math.sin(yaw)
        elif a in (L, R):
            yaw += math.radians(15 if a == L else -15)
    cam = camera_extrinsic(0.0, 0.0, 1.25, 0.0, math.radians(30), 0.0)
    return np.stack([b[:3, 3] for b in base]), np.stack([b @ cam for b in base])


def test_goal_is_the_end_of_the_forward_run_below_the_image_centre():
    actions = [F, F, F, F, F, F, L, L, F, S]
    floor, cams = _straight_episode(actions)
    k = intrinsics_from_hfov(96, 72, 79.0)
    goals, ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72))
    assert forward_run_end(actions, 0) == 6 and forward_run_end(actions, 8) == 9
    # from frames 4 and 5 the end of the run (0.5 m, 0.25 m ahead) is below the look-down view's lower edge
    # (about 0.69 m ahead at 1.25 m height, 30 degrees pitch, ~62 degrees vertical field of view): no goal
    assert ids.tolist() == [6, 5, 4, 3, -1, -1, -1, -1, -1, -1]
    # straight ahead: centre column; 1.5 m ahead and 1.25 m below a camera pitched 30 degrees down
    assert abs(goals[0][0] - 47.5) <= 0.5
    expected_row = k[1, 2] + k[1, 1] * math.tan(math.atan2(1.25, 1.5) - math.radians(30))
    assert abs(goals[0][1] - expected_row) <= 0.5
    # nearer goals sit lower in the image, until they leave it
    assert goals[0][1] < goals[3][1]


def test_a_recorded_detour_ends_the_run_so_goals_stay_on_the_experts_path():
    """With ``expert`` flags (a recording with injected detours) a forward run ends where a detour starts,
    even a detour of FORWARD steps that would otherwise extend it: the goal is where the expert was going."""
    actions = [F, F, F, F, F, F, F, F, L, L, F, S]
    expert = [True] * 5 + [False, False] + [True] * 5  # frames 5-6: a 2-step forward detour
    floor, cams = _straight_episode(actions)
    k = intrinsics_from_hfov(96, 72, 79.0)
    assert forward_run_end(actions, 0) == 8 and forward_run_end(actions, 0, expert) == 5
    plain, plain_ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72))
    goals, ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72), expert=expert)
    assert plain_ids[0] == 8 and ids[0] == 5  # 1.25 m ahead instead of 2 m: the detour's steps are not the expert's
    assert goals[0][1] > plain[0][1]  # nearer, so lower in the look-down image
    assert ids[7] == plain_ids[7]  # after the detour the runs are the same


def test_goals_feed_the_writer_and_become_pixel_samples(tmp_path):
    actions = [F, F, F, F, F, F, L, L, F, S]
    floor, cams = _straight_episode(actions)
    k = intrinsics_from_hfov(96, 72, 79.0)
    goals, ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72))
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(len(actions))]
    down = [np.full((72, 96, 3), 10 * i, np.uint8) for i in range(len(actions))]
    write_episode(tmp_path, 0, "walk forward then turn left", frames, down, actions, cams, goals, ids)
    episodes, _ = scan([DataSource(tmp_path)], on_error="raise")
    specs = build_samples(episodes, SampleOptions(stop_repeat=1))
    first = specs[0]
    assert first.kind == SampleKind.PIXEL_GOAL and first.pixel == tuple(int(v) for v in goals[0])


def test_a_zig_zag_is_one_run_with_one_goal_not_alternating_turns(tmp_path):
    """A shortest-path follower holds a diagonal as F, L, F, R, F, L, ...: frames a step apart with nearly the
    same view. The single turns do not end the run (their frames get the run's goal); two turns in a row do."""
    actions = [F, L, F, R, F, L, F, R, F, F, L, L, F, S]
    floor, cams = _straight_episode(actions)
    k = intrinsics_from_hfov(96, 72, 79.0)
    assert forward_run_end(actions, 0) == 10 and forward_run_end(actions, 1) == 10 and forward_run_end(actions, 10) == 10
    goals, ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72))
    # frame 0 aims at frame 10 (1.5 m on), past the zig-zag; the turn frames 1 and 3 have goals too
    assert ids[0] == 10 and ids[1] > 0 and ids[3] > 0
    assert ids[10] == ids[11] == -1  # two turns in a row: turn arrows
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(len(actions))]
    down = [np.full((72, 96, 3), 10 * i, np.uint8) for i in range(len(actions))]
    write_episode(tmp_path, 0, "walk along the diagonal, then turn left", frames, down, actions, cams, goals, ids)
    episodes, _ = scan([DataSource(tmp_path)], on_error="raise")
    kinds = {s.frame: s.kind for s in build_samples(episodes, SampleOptions(sample_step=1, stop_repeat=1))}
    assert all(kinds[t] == SampleKind.PIXEL_GOAL for t in (0, 1, 2, 3))
    assert kinds[10] == SampleKind.TURNS


def test_goals_stay_within_the_distance_cap():
    actions = [F] * 20 + [S]
    floor, cams = _straight_episode(actions)
    k = intrinsics_from_hfov(96, 72, 79.0)
    far, far_ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72), max_distance=100.0)
    near, near_ids = pixel_goals_from_poses(actions, floor, cams, k, (96, 72))  # 3 m: 12 steps of 0.25 m
    assert far_ids[0] == 20 and near_ids[0] == 12
    assert near[0][1] > far[0][1]  # the nearer goal sits lower in the image
