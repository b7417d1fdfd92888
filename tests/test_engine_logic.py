"""Engine control flow with a scripted generator (the real-model path is in test_engine_models.py)."""

import threading
import types

import numpy as np
import pytest

from internvla_s2_node.core import geometry
from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.config import EngineConfig
from internvla_s2_node.core.engine import S2Engine
from internvla_s2_node.core.generation import Generated
from internvla_s2_node.core.images import InvalidFrame
from internvla_s2_node.core.types import DecisionKind, Frame


class Scripted:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def reset(self):
        pass

    def generate(self, messages, images, keys):
        self.calls.append((messages, list(images), list(keys)))
        return Generated(self.answers.pop(0), [], {"generate": 0.0})


def make_engine(answers, **cfg):
    backbone = types.SimpleNamespace(kind=None)
    engine = S2Engine(EngineConfig(model_path="unused", fast_path="off", **cfg), backbone=backbone)
    engine.generator = Scripted(answers)
    return engine


def frame(value=0, depth=2.0, stamp=1.0):
    rgb = np.full((48, 64, 3), value, np.uint8)
    k = geometry.intrinsics_from_hfov(64, 48, 79)
    return Frame(rgb, np.full((48, 64), depth, np.float32), k, geometry.camera_extrinsic(0, 0, 1, 0, 0, 0), stamp)


def test_no_instruction_and_empty_instruction():
    engine = make_engine(["STOP"])
    assert engine.step(frame()).kind == DecisionKind.NONE
    with pytest.raises(ValueError, match="empty"):
        engine.reset("   ")
    with pytest.raises(ValueError, match="limit"):
        engine.reset("x" * 5000)


def test_history_keys_grow_as_linspace_and_reset_clears():
    engine = make_engine(["↑"] * 12)
    engine.reset("go")
    for i in range(10):
        d = engine.step(frame(i, stamp=float(i)))
        assert d.kind == DecisionKind.ACTIONS and d.actions == (Action.FORWARD,) and d.stamp == float(i)
    keys = [c[2] for c in engine.generator.calls]
    assert keys[0] == [0]
    assert keys[1] == [0, 1]
    assert keys[9] == [0, 1, 2, 3, 4, 5, 6, 8, 9]  # unique(linspace(0, 8, 8, int32)) + current
    # the prompt carries one placeholder per history frame plus the current one
    first_msg = engine.generator.calls[9][0][0]
    assert sum(1 for c in first_msg["content"] if c["type"] == "image") == 9
    engine.reset("new episode")
    engine.step(frame())
    assert engine.generator.calls[-1][2] == [0]


def test_requery_look_down_projects_on_the_same_frame():
    engine = make_engine(["↓", "32 40"], look_down_mode="requery")
    engine.reset("go to the chair")
    d = engine.step(frame())
    assert d.kind == DecisionKind.WAYPOINT and d.looked_down
    assert d.pixel == (32, 40)
    msgs, images, keys = engine.generator.calls[1]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"][0]["text"] == "↓"
    assert keys[-1] is None and images[-1].size == (64, 48)  # full-resolution look-down frame
    assert np.all(np.isfinite(d.waypoint.position))
    assert not engine.pending_look_down


def test_command_look_down_waits_for_next_frame():
    engine = make_engine(["↓", "10 10"], look_down_mode="command")
    engine.reset("go")
    d = engine.step(frame(1, stamp=1.0))
    assert d.kind == DecisionKind.LOOK_DOWN and d.actions == (Action.LOOK_DOWN,)
    assert engine.pending_look_down
    seen = len(engine.history)
    d2 = engine.step(frame(2, stamp=2.0))
    assert d2.kind == DecisionKind.WAYPOINT and d2.stamp == 2.0
    assert len(engine.history) == seen  # the look-down frame is not history


def test_pixel_goal_without_depth_is_reported_not_projected():
    engine = make_engine(["100 100"])
    engine.reset("go")
    d = engine.step(Frame(np.zeros((48, 64, 3), np.uint8)))
    assert d.kind == DecisionKind.PIXEL_GOAL and "depth" in d.reason
    assert d.pixel == (100, 100)  # in the 384x384 model image


def test_nan_depth_gives_no_waypoint():
    engine = make_engine(["192 192"])
    engine.reset("go")
    d = engine.step(frame(depth=np.nan))
    assert d.kind == DecisionKind.PIXEL_GOAL and d.waypoint is None and "no valid depth" in d.reason


def test_garbage_output_and_bad_frame():
    engine = make_engine(["banana"])
    engine.reset("go")
    d = engine.step(frame())
    assert d.kind == DecisionKind.NONE and "no action" in d.reason
    with pytest.raises(InvalidFrame):
        engine.step(Frame(np.zeros((0, 0, 3), np.uint8)))
    assert engine.generator.answers == []  # the bad frame never reached the model


def test_reset_during_step_discards_the_answer():
    engine = make_engine(["STOP"])
    engine.reset("go")
    gate, release = threading.Event(), threading.Event()
    real = engine.generator.generate

    def slow(*a):
        gate.set()
        release.wait(5)
        return real(*a)

    engine.generator.generate = slow
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("d", engine.step(frame())))
    t.start()
    gate.wait(5)
    engine.reset("another")
    release.set()
    t.join(5)
    assert out["d"].kind == DecisionKind.NONE and "reset" in out["d"].reason
