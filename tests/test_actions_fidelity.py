"""Actions and look-down turns against upstream InternNav (InternRobotics/InternNav @ 7a5c624):
the Habitat evaluator internnav/habitat_extensions/vln/habitat_vln_evaluator.py (system-2 loop,
lines 703-885), the robot server scripts/realworld/http_internvla_server.py and client
scripts/realworld/http_internvla_client.py."""

import math

import pytest

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.config import EngineConfig
from internvla_s2_node.core.parsing import OutputKind, parse_output
from internvla_s2_node.core.types import DecisionKind
from internvla_s2_node.ros import outputs as out
from internvla_s2_node.ros.controller import Controller, ControllerConfig, Pose2D

from test_engine_logic import frame, make_engine

F, L, R, D, S = Action.FORWARD, Action.LEFT, Action.RIGHT, Action.LOOK_DOWN, Action.STOP


def drive(ctrl, t_end=60.0, dt=0.05):
    pose, t, statuses = Pose2D(0.0, 0.0, 0.0), 0.0, []
    while t < t_end and ctrl.busy:
        cmd = ctrl.update(t, pose, 0.0)
        statuses.append(cmd.status)
        pose = Pose2D(pose.x + cmd.linear * dt * math.cos(pose.yaw), pose.y + cmd.linear * dt * math.sin(pose.yaw),
                      pose.yaw + cmd.angular * dt)
        t += dt
    return pose, statuses


def test_moves_before_stop_are_driven_then_the_robot_stops():
    """Both upstream loops drive the moves of '↑↑ STOP' before stopping: the evaluator runs the parsed list in
    order (habitat_vln_evaluator.py:826-828, 882), the client applies every move (http_internvla_client.py:314-320)."""
    ctrl = Controller(ControllerConfig())
    assert ctrl.set_actions([F, F, S]) == "" and ctrl.busy
    pose, statuses = drive(ctrl)
    assert pose.x == pytest.approx(0.5, abs=0.03)
    assert statuses[-1] == "stopped: STOP action" and ctrl.last_stop_reason == "STOP action"
    assert ctrl.set_actions([F, S, F]) == ""  # nothing after STOP is driven
    pose, _ = drive(ctrl)
    assert pose.x == pytest.approx(0.25, abs=0.03)
    assert "STOP" in ctrl.set_actions([S]) and not ctrl.busy  # a lone STOP stops at once


def test_more_than_sixteen_moves_are_all_executed():
    """Upstream executes every parsed action (habitat_vln_evaluator.py:823-828; http_internvla_client.py:314);
    an answer of up to 128 new tokens (:420) can hold more than 16."""
    text = "↑" * 30
    parsed = parse_output(text)
    assert parsed.kind == OutputKind.ACTIONS and len(parsed.actions) == 30
    engine = make_engine([text])
    engine.reset("go")
    assert len(engine.step(frame()).actions) == 30
    assert EngineConfig(model_path="x").max_actions == 128
    ctrl = Controller(ControllerConfig())
    ctrl.set_actions(parsed.actions)
    pose, _ = drive(ctrl, t_end=120.0)
    assert pose.x == pytest.approx(7.5, abs=0.1)


@pytest.mark.parametrize("text, skip, execute", [
    ("↓", (OutputKind.LOOK_DOWN, (D,)), (OutputKind.LOOK_DOWN, (D,))),
    ("↑↓←", (OutputKind.ACTIONS, (F, L)), (OutputKind.ACTIONS, (F, D, L))),
    ("↓↑", (OutputKind.ACTIONS, (F,)), (OutputKind.ACTIONS, (D, F))),
    ("↑↑↓", (OutputKind.ACTIONS, (F, F)), (OutputKind.ACTIONS, (F, F, D))),
    ("↓↓", (OutputKind.LOOK_DOWN, (D,)), (OutputKind.LOOK_DOWN, (D,))),
    ("↑↓STOP↑", (OutputKind.ACTIONS, (F, S)), (OutputKind.ACTIONS, (F, D, S))),
])
def test_look_down_inside_a_list_per_mode(text, skip, execute):
    """skip (robot): the server looks down only for exactly [5] (http_internvla_server.py:59) and the client
    drives the other codes, skipping 5 (http_internvla_client.py:187, 314-333). execute (simulation): the
    evaluator keeps 5 in the list (habitat_vln_evaluator.py:823), tilts for it (:877-880) and runs the next
    moves tilted without asking. Only an answer of ↓ asks again (:731-739): after moves, upstream's
    conversation was emptied (:884) and its turn would carry more images than placeholders (:735, :776)."""
    for mode, (kind, actions) in (("skip", skip), ("execute", execute)):
        p = parse_output(text, look_down_in_list=mode)
        assert (p.kind, p.actions) == (kind, actions), mode


def test_execute_needs_command_mode_and_publishes_the_look_down_inside_the_list():
    with pytest.raises(ValueError, match="look_down_in_list 'execute' needs look_down_mode 'command'"):
        EngineConfig(model_path="x", look_down_in_list="execute", look_down_mode="requery")
    engine = make_engine(["↑↓←", "STOP"], look_down_mode="command", look_down_in_list="execute")
    engine.reset("go")
    d = engine.step(frame())
    assert d.kind == DecisionKind.ACTIONS and d.actions == (F, D, L) and not engine.pending_look_down
    assert out.decision_actions(d) == (F, D, L)


def test_down_answered_on_the_look_down_turn_asks_a_third_turn_up_to_the_limit():
    """The evaluator tilts another 30 deg on a second '↓' and asks again with the whole conversation
    (habitat_vln_evaluator.py:823-828 -> :877-880 -> :731-739: the assistant's '↓', then the new frame)."""
    engine = make_engine(["↓", "↓", "50 40"], look_down_mode="command")
    engine.reset("go to the chair")
    assert engine.step(frame(1)).kind == DecisionKind.LOOK_DOWN and engine.pending_look_downs == 1
    second = engine.step(frame(2))
    assert second.kind == DecisionKind.LOOK_DOWN and second.looked_down and engine.pending_look_downs == 2
    third = engine.step(frame(3))
    assert third.kind == DecisionKind.WAYPOINT and third.pixel == (50, 40) and engine.pending_look_downs == 0
    messages, images, keys = engine.generator.calls[2]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [messages[1]["content"][0]["text"], messages[3]["content"][0]["text"]] == ["↓", "↓"]
    assert keys[-2:] == [None, None] and third.raw_text == "↓\n↓\n50 40"
    # bounded: after max_look_downs look-downs a further '↓' gives no decision
    engine = make_engine(["↓", "↓", "↓"], look_down_mode="command", max_look_downs=2)
    engine.reset("go")
    for i in range(2):
        engine.step(frame(i))
    last = engine.step(frame(2))
    assert last.kind == DecisionKind.NONE and "max_look_downs 2" in last.reason and not engine.pending_look_down


def test_requery_mode_does_not_ask_a_third_turn():
    """On the robot the look-down frame is the same frame (http_internvla_server.py:59-63) and a '↓' answer
    to it, [5], drives nothing (http_internvla_client.py:187): no decision."""
    engine = make_engine(["↓", "↓"], look_down_mode="requery")
    engine.reset("go")
    d = engine.step(frame())
    assert d.kind == DecisionKind.NONE and "look down again" in d.reason and len(engine.generator.calls) == 2
