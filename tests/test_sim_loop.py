"""The episode loop with oracle, random and scripted policies on the bundled MuJoCo episodes."""

import json

import numpy as np
import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.geometry import Waypoint
from internvla_s2_node.core.types import Decision, DecisionKind
from internvla_s2_node.sim import viz
from internvla_s2_node.sim.backend import SimConfig
from internvla_s2_node.sim.episodes import load_episodes
from internvla_s2_node.sim.loop import EndReason, LoopConfig, run_episode, to_plan
from internvla_s2_node.sim.metrics import summarize
from internvla_s2_node.sim.mujoco_backend import BUNDLED_EPISODES, MujocoBackend
from internvla_s2_node.sim.policies import OraclePolicy, RandomPolicy, ScriptedPolicy


@pytest.fixture(scope="module")
def episodes():
    return load_episodes(BUNDLED_EPISODES)


@pytest.fixture(scope="module")
def backend():
    b = MujocoBackend(SimConfig(render=False))
    yield b
    b.close()


def test_perturbed_oracle_detours_then_recovers_and_marks_its_own_steps(backend, episodes):
    """OraclePolicy(perturb=p): random 1-3 step detours before non-STOP steps, flagged in ``expert``; it still
    reaches every goal, the same seed gives the same detours, and p = 0 is the plain oracle step for step."""
    plain = [run_episode(backend, ep, OraclePolicy()) for ep in episodes]
    oracle = OraclePolicy(perturb=0.2, seed=3)
    flags, actions = [], []
    for ep in episodes:
        r = run_episode(backend, ep, oracle)
        assert r.reason == EndReason.STOP and r.metrics.success == 1.0, (ep.episode_id, r.metrics)
        nav = [a for a in r.actions if a in (Action.FORWARD, Action.LEFT, Action.RIGHT, Action.STOP)]
        assert len(oracle.expert) == len(nav) and oracle.expert[-1] and nav[-1] == Action.STOP
        flags.append(list(oracle.expert))
        actions.append(nav)
    detours = sum(f.count(False) for f in flags)
    steps = sum(len(f) for f in flags)
    assert 0.1 * steps < detours < 0.6 * steps, (detours, steps)
    again = OraclePolicy(perturb=0.2, seed=3)
    run_episode(backend, episodes[0], again)
    assert again.expert == flags[0]
    zero = OraclePolicy(perturb=0.0)
    for ep, r in zip(episodes, plain):
        assert run_episode(backend, ep, zero).actions == r.actions and all(zero.expert)
    with pytest.raises(ValueError, match="perturb"):
        OraclePolicy(perturb=1.0)


def test_bundled_episodes_are_short_landmark_routes(episodes):
    assert 6 <= len(episodes) <= 8
    for ep in episodes:
        assert 3.0 <= ep.geodesic_distance <= 8.0
        assert ep.instruction.endswith(".") and "stop in front of the" in ep.instruction
        assert ep.goals[0].radius == 3.0 and len(ep.reference_path) >= 2
    assert sum("doorway" in ep.instruction for ep in episodes) >= len(episodes) - 1


def test_oracle_succeeds_on_every_bundled_episode(backend, episodes):
    results = [run_episode(backend, ep, OraclePolicy()) for ep in episodes]
    for r, ep in zip(results, episodes):
        assert r.reason == EndReason.STOP and r.metrics.success == 1.0, (ep.episode_id, r.metrics)
        assert r.metrics.shortest_path_length == pytest.approx(ep.geodesic_distance, rel=0.02)
    s = summarize(results)
    assert s["success"] == 1.0 and s["oracle_success"] == 1.0
    assert s["spl"] > 0.95 and s["ndtw"] > 0.9 and s["distance_to_goal"] < 0.6


def test_random_policy_runs_terminates_and_is_seeded(backend, episodes):
    ep = episodes[0]
    a = run_episode(backend, ep, RandomPolicy(seed=3), max_steps=40)
    b = run_episode(backend, ep, RandomPolicy(seed=3), max_steps=40)
    assert a.reason in (EndReason.STOP, EndReason.MAX_STEPS) and 1 <= a.steps <= 40
    assert a.actions == b.actions and np.allclose(a.trajectory, b.trajectory)
    forever = RandomPolicy(seed=0, probs={Action.FORWARD: 1.0, Action.LEFT: 1.0})
    c = run_episode(backend, ep, forever, max_steps=25)
    assert c.reason == EndReason.MAX_STEPS and c.steps == 25 and c.metrics.success == 0.0
    assert len(c.trajectory) == 26


def test_waypoint_is_followed_for_at_most_eight_steps(backend, episodes):
    ep = episodes[0]
    backend.reset(ep)
    far = backend.snap_to_navigable(ep.goal_world)
    policy = ScriptedPolicy([far, [Action.STOP]])
    r = run_episode(backend, ep, policy)
    assert r.policy_calls == 2 and r.steps == 8 + 1 and r.actions[-1] == Action.STOP
    assert len(r.waypoints) == 1 and np.allclose(r.waypoints[0], far)
    assert r.metrics.distance_to_goal < ep.geodesic_distance  # the follower made progress


def test_reached_waypoint_turns_left_and_empty_decision_stops(backend, episodes):
    ep = episodes[1]
    backend.reset(ep)
    here = backend.agent_position()
    r = run_episode(backend, ep, ScriptedPolicy([Waypoint(here, 0.0, (0, 0), 1.0), []]))
    assert r.actions == [Action.LEFT, Action.STOP] and r.reason == EndReason.STOP
    r = run_episode(backend, ep, ScriptedPolicy([Decision(DecisionKind.ACTIONS, actions=(Action.FORWARD, Action.RIGHT)),
                                                 Decision(DecisionKind.NONE, reason="unparseable")]))
    assert r.actions == [Action.FORWARD, Action.RIGHT, Action.STOP]


def test_look_down_requeries_with_the_tilted_view_then_tilts_back(backend, episodes):
    ep = episodes[2]
    backend.reset(ep)
    goal = backend.snap_to_navigable(ep.goal_world)
    policy = ScriptedPolicy([[Action.LOOK_DOWN], goal, [Action.LOOK_DOWN], [Action.LEFT], [Action.STOP]])
    r = run_episode(backend, ep, policy, config=LoopConfig(waypoint_max_steps=3))
    pitches = [o.camera_pitch_deg for o in policy.seen]
    assert pitches == [0.0, 30.0, 0.0, 30.0, 0.0]
    assert r.actions[:2] == [Action.LOOK_DOWN, Action.LOOK_DOWN]
    assert r.actions[2:4] == [Action.LOOK_UP, Action.LOOK_UP]  # up again before following the waypoint
    assert r.actions[7:] == [Action.LOOK_DOWN, Action.LOOK_DOWN, Action.LEFT, Action.LOOK_UP, Action.LOOK_UP, Action.STOP]
    assert r.steps == 3 + 1 + 1  # tilts are not navigation steps
    assert backend.camera_pitch_deg == 0.0


def test_idle_policy_ends_and_bad_outputs_are_rejected(backend, episodes):
    r = run_episode(backend, episodes[0], ScriptedPolicy([[Action.LOOK_UP]] * 50))
    assert r.reason == EndReason.IDLE and r.steps == 0 and r.metrics.success == 0.0
    with pytest.raises(ValueError):
        to_plan([9])
    with pytest.raises(ValueError):
        to_plan(np.array([np.nan, 0.0, 0.0]))
    assert to_plan(None).actions == [Action.STOP]
    assert to_plan(np.array([1.0, 2.0, 0.0])).waypoint is not None


def test_rendered_episode_feeds_the_observer_and_plots(tmp_path, episodes):
    backend = MujocoBackend(SimConfig(width=80, height=60))
    frames = []
    ep = episodes[0]
    r = run_episode(backend, ep, OraclePolicy(), observer=lambda obs, action: frames.append((obs.rgb, action)))
    backend.close()
    assert r.metrics.success == 1.0 and len(frames) == len(r.actions)
    assert all(rgb.shape == (60, 80, 3) for rgb, _ in frames) and frames[-1][1] == Action.STOP
    png = viz.plot_episode(tmp_path / "map.png", r, backend.navigation_grid(), ep)
    bars = viz.plot_summaries(tmp_path / "bars.png", {"oracle": summarize([r]), "random": {"success": 0.0, "spl": 0.0}})
    assert png.stat().st_size > 10_000 and bars.stat().st_size > 10_000
    saved = json.loads(json.dumps(r.to_json()))
    assert saved["reason"] == "stop" and saved["metrics"]["success"] == 1.0 and saved["actions"][-1] == 0


D, F, L, R, U, S = Action.LOOK_DOWN, Action.FORWARD, Action.LEFT, Action.RIGHT, Action.LOOK_UP, Action.STOP


def test_look_down_inside_a_list_tilts_and_runs_on_and_a_lone_one_asks_again(backend, episodes):
    """InternNav habitat_vln_evaluator.py:823-828 keeps ↓ (5) in the parsed list; :877-880 executes it as two
    LOOK_DOWN steps and the following moves run tilted without asking. A decision of only ↓ asks again with
    the tilted frame (:731-739). A final ↓ after moves tilts without asking (core.parsing says why)."""
    policy = ScriptedPolicy([[D, F], [F, D], [D], [R], [S]])
    r = run_episode(backend, episodes[0], policy)
    assert [o.camera_pitch_deg for o in policy.seen] == [0.0, 0.0, 0.0, 30.0, 0.0]
    assert r.actions == [D, D, F, U, U, F, D, D, U, U, D, D, R, U, U, S]
    assert r.steps == 4 and r.policy_calls == 5


def test_down_answered_on_a_look_down_turn_tilts_again_up_to_the_limit(backend, episodes):
    """A ↓ on the look-down turn: upstream tilts 30 deg more (60 in all) and asks a third turn
    (:823-828 -> :877-880 -> :731-739). The backend's max_tilt_deg (60) bounds it: a further ↓ asks nothing."""
    policy = ScriptedPolicy([[D], [D], [L], [S]])
    r = run_episode(backend, episodes[0], policy)
    assert [o.camera_pitch_deg for o in policy.seen] == [0.0, 30.0, 60.0, 0.0]
    assert r.actions == [D, D, D, D, L, U, U, U, U, S]
    policy = ScriptedPolicy([[D], [D], [D], [S]])
    r = run_episode(backend, episodes[0], policy)
    assert [o.camera_pitch_deg for o in policy.seen] == [0.0, 30.0, 60.0, 0.0]
    assert r.policy_calls == 4 and backend.camera_pitch_deg == 0.0


@pytest.mark.parametrize("upstream", [False, True])
def test_upstream_evaluator_switch_counts_a_step_and_repeats_the_frame_when_the_follower_stops(backend, episodes,
                                                                                              upstream):
    """habitat_vln_evaluator.py:834-848: when forward_action > MAX_STEPS or the follower says STOP, upstream
    does ``step_id += 1; continue`` without env.step, so the next iteration appends the same observation to
    rgb_list (:728-729) and decides on it. LoopConfig.upstream_evaluator reproduces it; off by default."""
    ep = episodes[0]
    backend.reset(ep)
    far = backend.snap_to_navigable(ep.goal_world)
    observed = []
    policy = ScriptedPolicy([far, [S]])
    cfg = LoopConfig(waypoint_max_steps=3, upstream_evaluator=upstream)
    r = run_episode(backend, ep, policy, config=cfg, observer=lambda obs, action: observed.append((obs, action)))
    assert r.actions == [a for _, a in observed if a is not None]
    if not upstream:
        assert r.steps == 3 + 1 and all(a is not None for _, a in observed)
        return
    assert r.steps == 3 + 1 + 1 and len(r.trajectory) == r.steps + 1
    assert [a for _, a in observed][3] is None  # the step that moved nothing
    repeated, before = observed[3][0], observed[2][0]
    assert repeated is not before and repeated.step == before.step
    assert np.array_equal(repeated.t_world_base, before.t_world_base)
    assert policy.seen[1] is repeated  # the next decision is on the repeated frame
    assert np.allclose(r.trajectory[-2], r.trajectory[-3])  # no movement for the counted step


def test_map_legend_title_and_results_notes(episodes):
    """Maps show the success circle in the legend, a start-heading arrow unlike the agent path, and the
    wrapped instruction with SR/NE in the title; the results plot names random-weight rows."""
    from matplotlib.colors import to_hex

    backend = MujocoBackend(SimConfig(width=32, height=24, render=False))
    ep = episodes[0]
    r = run_episode(backend, ep, OraclePolicy())
    fig = viz.episode_figure(r, backend.navigation_grid(), ep)
    try:
        ax = fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
        assert "success radius (3 m)" in labels and "start heading" in labels
        colours = dict(zip(labels, handles))
        assert to_hex(colours["start heading"].get_facecolor()) != to_hex(colours["agent path"].get_color())
        title = ax.get_title()
        assert title.startswith(f"episode {r.episode_id}: SR 1") and "NE " in title
        wrapped = title.split("\n")[1:]
        assert wrapped and " ".join(" ".join(wrapped).split()).rstrip(" [...]") in " ".join(ep.instruction.split())
        assert all(len(line) <= viz.TITLE_WIDTH for line in title.split("\n")[1:])
    finally:
        fig.clf()
    fig = viz.summaries_figure({"s2": summarize([r]), "oracle": summarize([r])}, notes={"s2": "tiny:qwen3_vl, random weights"})
    try:
        assert "s2 (tiny:qwen3_vl, random weights)" in fig.axes[0].get_legend_handles_labels()[1]
        assert any("random weights" in t.get_text() for t in fig.texts)
    finally:
        fig.clf()
    backend.close()
