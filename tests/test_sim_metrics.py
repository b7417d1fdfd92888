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


def test_success_spl_and_oracle_success_are_strict_at_three_metres():
    """habitat-lab v0.2.4 habitat-lab/habitat/tasks/nav/nav.py:541 (Success:
    ``distance_to_target < self._success_distance``), SPL = success * ... (nav.py:605) and
    InternNav internnav/habitat_extensions/vln/measures.py:105 (OracleSuccess: ``d < 3.0``)."""
    traj = straight(3)  # ends at x = 2
    goal = [5.0, 0.0, 0.0]  # 3.0 m away, and never closer
    m = M.compute_metrics(traj, goal, traj, called_stop=True, shortest_path_length=5.0)
    assert m.distance_to_goal == 3.0
    assert m.success == 0.0 and m.spl == 0.0 and m.oracle_success == 0.0
    m2 = M.compute_metrics(traj, [4.9999, 0.0, 0.0], traj, called_stop=True, shortest_path_length=4.9999)
    assert m2.success == 1.0 and m2.oracle_success == 1.0 and m2.spl == pytest.approx(1.0)


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


def test_summarize_counts_nonfinite_spl_as_zero_and_drops_nonfinite_ne():
    """InternNav internnav/habitat_extensions/vln/habitat_vln_evaluator.py:215 (``torch.nan_to_num(spls_all,
    nan=0.0, posinf=0.0, neginf=0.0)``) and :218-219 (only finite NE enter the NE mean); the
    summary reports how many episodes each rule touched."""
    ok = {"success": 1.0, "spl": 0.8, "oracle_success": 1.0, "distance_to_goal": 1.0}
    nan_spl = {"success": 0.0, "spl": math.nan, "oracle_success": 0.0, "distance_to_goal": 2.0}
    missing_spl = {"success": 0.0, "spl": None, "oracle_success": 0.0, "distance_to_goal": 3.0}
    unreachable = {"success": 0.0, "spl": 0.0, "oracle_success": 0.0, "distance_to_goal": math.inf}
    unknown_ne = {"success": 0.0, "spl": 0.0, "oracle_success": 0.0, "distance_to_goal": None}
    s = M.summarize([ok, nan_spl, missing_spl, unreachable, unknown_ne])
    assert s["episodes"] == 5
    assert s["spl"] == pytest.approx(0.8 / 5)  # NaN and missing SPL are 0, not left out (0.8 / 3)
    assert s[M.SPL_ZEROED] == 2
    assert s["distance_to_goal"] == pytest.approx((1.0 + 2.0 + 3.0) / 3)  # inf and None left out, not inf
    assert s[M.NE_DROPPED] == 2
    assert s["success"] == pytest.approx(1 / 5)
    clean = M.summarize([ok, ok])
    assert clean[M.SPL_ZEROED] == 0 and clean[M.NE_DROPPED] == 0


def test_an_unreachable_goal_gives_nan_spl_that_the_summary_counts_as_zero():
    """A geodesic shortest path of inf (goal off the navmesh) makes SPL NaN per episode (0 * inf / inf);
    habitat_vln_evaluator.py:215 then counts it as 0."""
    traj = straight(2)
    m = M.compute_metrics(traj, [1, 0, 0], traj, called_stop=True, shortest_path_length=math.inf,
                          distance_fn=lambda a, b: math.inf)
    assert m.success == 0.0 and math.isnan(m.spl) and m.distance_to_goal == math.inf
    s = M.summarize([m, m])
    assert s["spl"] == 0.0 and s[M.SPL_ZEROED] == 2
    assert math.isnan(s["distance_to_goal"]) and s[M.NE_DROPPED] == 2
