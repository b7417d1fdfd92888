"""DAgger recordings (sim.takeover): a learner drives, the oracle takes over at its STOP or after its budget,
and only the oracle's steps teach. The learners here are scripted; the S2 learner is in test_engine_policy.py."""

import math

import numpy as np
import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.types import Decision, DecisionKind
from internvla_s2_node.sim.loop import NAVIGATION_ACTIONS, EndReason, run_episode
from internvla_s2_node.sim.policies import OraclePolicy, ScriptedPolicy
from internvla_s2_node.sim.takeover import TakeoverPolicy
from test_sim_loop import backend, episodes  # noqa: F401  (the bundled episodes, a backend without rendering)

F, L, R, S = Action.FORWARD, Action.LEFT, Action.RIGHT, Action.STOP


def _nav(result):
    return [a for a in result.actions if a in NAVIGATION_ACTIONS]


def test_oracle_takes_over_where_the_learner_says_stop_and_reaches_the_goal(backend, episodes):
    """The learner's STOP is not executed: from that state the oracle drives to the goal and stops there."""
    ep = episodes[0]
    learner = ScriptedPolicy([[R, R, R], [F, F]])  # then STOP
    policy = TakeoverPolicy(learner, OraclePolicy(), accept_within=0.0)
    r = run_episode(backend, ep, policy, observer=policy.observe)
    nav = _nav(r)
    assert policy.takeover_step == 5 and "STOP" in policy.takeover_reason and policy.takeover_kind == "learner_stop"
    assert nav[:5] == [R, R, R, F, F] and nav[-1] == S and S not in nav[:-1]
    assert policy.expert == [False] * 5 + [True] * (len(nav) - 5)
    assert r.reason == EndReason.STOP and r.metrics.success == 1.0 and r.metrics.distance_to_goal < 1.0


def test_a_decision_of_no_use_counts_as_the_learners_stop(backend, episodes):
    """An S2 decision the loop would end the episode on (kind NONE) hands over as a STOP does."""
    policy = TakeoverPolicy(ScriptedPolicy([Decision(DecisionKind.NONE, reason="no coordinates")]))
    r = run_episode(backend, episodes[1], policy, observer=policy.observe)
    assert policy.takeover_step == 0 and all(policy.expert) and r.metrics.success == 1.0


def test_the_budget_hands_over_a_learner_that_never_stops(backend, episodes):
    """A learner that only turns is stopped after budget x the shortest path's forward steps."""
    ep = episodes[2]
    budget = 1.5
    policy = TakeoverPolicy(ScriptedPolicy([[L]] * 1000), budget=budget)
    r = run_episode(backend, ep, policy, observer=policy.observe)
    start = r.trajectory[0]
    shortest = backend.geodesic_distance(start, backend.snap_to_navigable(ep.goal_world))
    limit = math.ceil(budget * shortest / backend.config.forward_step_m)
    assert policy.takeover_step == limit and "budget" in policy.takeover_reason and policy.takeover_kind == "budget"
    assert _nav(r)[:limit] == [L] * limit and policy.expert.count(False) == limit
    assert r.metrics.success == 1.0
    with pytest.raises(ValueError, match="budget"):
        TakeoverPolicy(ScriptedPolicy([]), budget=0)


def test_a_learner_that_reaches_the_goal_still_hands_over_at_its_stop(backend, episodes):
    """The oracle itself as the learner: it stops within the oracle's radius, and the takeover oracle stops at once."""
    ep = episodes[0]
    policy = TakeoverPolicy(OraclePolicy())
    r = run_episode(backend, ep, policy, observer=policy.observe)
    plain = run_episode(backend, ep, OraclePolicy())
    assert _nav(r) == _nav(plain)
    assert policy.expert == [False] * (len(_nav(r)) - 1) + [True]
    assert np.allclose(r.trajectory[-1], plain.trajectory[-1])


def test_a_learners_stop_within_the_success_distance_is_accepted_and_taught(backend, episodes):
    """A STOP within ``accept_within`` of the goal ends the episode: the STOP is the one taught step."""
    ep = episodes[0]
    policy = TakeoverPolicy(ScriptedPolicy([[R]]), accept_within=1e6)
    r = run_episode(backend, ep, policy, observer=policy.observe)
    assert _nav(r) == [R, S] and policy.expert == [False, True] and "accepted" in policy.takeover_reason
    assert policy.takeover_kind == "accepted"
    far = TakeoverPolicy(ScriptedPolicy([[R]]))  # VLN-CE's 3 m: this start is farther
    r = run_episode(backend, ep, far, observer=far.observe)
    assert r.metrics.success == 1.0 and len(_nav(r)) > 2 and "accepted" not in far.takeover_reason
    with pytest.raises(ValueError, match="accept_within"):
        TakeoverPolicy(ScriptedPolicy([]), accept_within=-1)


def test_the_expert_stops_a_learner_that_passes_near_the_goal(backend, episodes):
    """``stop_within``: at the first decision within that distance of the goal the episode ends on the expert's
    STOP, though the learner would walk on; decisions farther away are the learner's."""
    ep = episodes[0]
    goal = backend.snap_to_navigable(ep.goal_world)
    oracle_path = run_episode(backend, ep, OraclePolicy())
    d_start = backend.geodesic_distance(oracle_path.trajectory[0], goal)
    within = min(3.0, d_start - 0.5)  # reached on the oracle's way, not at its start
    learner = TakeoverPolicy(OraclePolicy(), stop_within=within)  # the oracle as a learner never stops this early
    r = run_episode(backend, ep, learner, observer=learner.observe)
    nav = _nav(r)
    assert "the expert stops" in learner.takeover_reason and learner.takeover_kind == "expert_stop"
    assert nav[-1] == S and S not in nav[:-1] and learner.expert == [False] * (len(nav) - 1) + [True]
    end = backend.geodesic_distance(r.trajectory[-1], goal)
    assert end <= within and len(nav) < len(_nav(oracle_path))
    off = TakeoverPolicy(OraclePolicy())  # off by default: the learner's own STOP, as before
    r_off = run_episode(backend, ep, off, observer=off.observe)
    assert _nav(r_off) == _nav(oracle_path) and "the expert stops" not in off.takeover_reason
    with pytest.raises(ValueError, match="stop_within"):
        TakeoverPolicy(ScriptedPolicy([]), stop_within=3.5)
