"""VLN-CE metrics against hand-computed trajectories."""

import math

import numpy as np
import pytest

from internvla_s2_node.sim import metrics as M


def brute_dtw(a, b):
    n, m = len(a), len(b)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c = np.linalg.norm(np.asarray(a[i - 1]) - np.asarray(b[j - 1]))
            d[i, j] = c + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return d[n, m]


def straight(n, step=1.0):
    return np.array([[i * step, 0.0, 0.0] for i in range(n)])


def test_success_boundary_exactly_three_metres_counts():
    traj = straight(3)  # ends at x = 2
    goal = [5.0, 0.0, 0.0]  # 3.0 m away
    m = M.compute_metrics(traj, goal, traj, called_stop=True, shortest_path_length=5.0)
    assert m.distance_to_goal == 3.0
    assert m.success == 1.0
    m2 = M.compute_metrics(traj, [5.0001, 0.0, 0.0], traj, called_stop=True, shortest_path_length=5.0001)
    assert m2.success == 0.0
    assert m2.distance_to_goal == pytest.approx(3.0001)


def test_success_needs_stop_and_oracle_success_differs():
    traj = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 8, 0]], dtype=float)
    goal = [5.0, 0.0, 0.0]
    passed = M.compute_metrics(traj, goal, traj, called_stop=True, shortest_path_length=5.0)
    assert passed.oracle_success == 1.0  # was 1 m from the goal at step 1
    assert passed.success == 0.0  # but stopped far away
    assert passed.distance_to_goal == pytest.approx(math.hypot(5, 8))
    no_stop = M.compute_metrics(traj[:2], goal, traj, called_stop=False, shortest_path_length=5.0)
    assert no_stop.success == 0.0 and no_stop.oracle_success == 1.0 and no_stop.spl == 0.0


def test_spl_with_a_longer_path():
    # start (0,0), goal (4,0); the agent detours via (2,2): length 2*sqrt(8), stops at the goal
    traj = np.array([[0, 0, 0], [2, 2, 0], [4, 0, 0]], dtype=float)
    m = M.compute_metrics(traj, [4, 0, 0], traj, called_stop=True, shortest_path_length=4.0)
    assert m.path_length == pytest.approx(2 * math.sqrt(8))
    assert m.spl == pytest.approx(4.0 / (2 * math.sqrt(8)))
    # a path shorter than the shortest (stopped early, within 3 m): SPL = 1
    m2 = M.compute_metrics(straight(3), [4, 0, 0], straight(3), called_stop=True, shortest_path_length=4.0)
    assert m2.success == 1.0 and m2.spl == 1.0


def test_ndtw_reference_with_itself_is_one_and_dtw_matches_brute_force():
    ref = np.array([[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 1, 0]], dtype=float)
    assert M.ndtw(ref, ref) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))
        assert M.dtw(a, b) == pytest.approx(brute_dtw(a, b))
    traj = ref + [0.0, 1.0, 0.0]  # parallel, 1 m off: DTW = 4 (one match per point)
    assert M.dtw(traj, ref) == pytest.approx(4.0)
    assert M.ndtw(traj, ref) == pytest.approx(math.exp(-4.0 / (4 * 3.0)))


def test_ndtw_ignores_repeated_positions_and_nan_without_reference():
    ref = straight(4)
    stuttering = np.repeat(ref, 3, axis=0)
    assert M.ndtw(stuttering, ref) == pytest.approx(1.0)
    assert math.isnan(M.ndtw(ref, np.zeros((0, 3))))


def test_distance_fn_is_used_and_summarize_means():
    traj = straight(2)
    calls = []

    def fake(a, b):
        calls.append(1)
        return 10.0

    m = M.compute_metrics(traj, [1, 0, 0], traj, called_stop=True, shortest_path_length=1.0, distance_fn=fake)
    assert calls and m.success == 0.0 and m.distance_to_goal == 10.0
    ok = M.compute_metrics(traj, [1, 0, 0], traj, called_stop=True, shortest_path_length=1.0)
    s = M.summarize([m, ok, ok.to_dict()])
    assert s["episodes"] == 3
    assert s["success"] == pytest.approx(2 / 3)
    assert s["distance_to_goal"] == pytest.approx(10.0 / 3)
    assert set(M.SUMMARY_KEYS) <= set(s)
