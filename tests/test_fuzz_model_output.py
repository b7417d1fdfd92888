"""Property-based tests of the model-output path: whatever the model says, with whatever sensors.

tests/test_parsing.py already feeds ``st.text()`` to the parser; here the strings look like model
answers (arrows, STOP, digits of every script, huge numbers, separators) so the pixel and action
branches are hit often, and the same strings go through the whole decision path: the real S2Engine
with a scripted generator returning them (``ros_helpers.ScriptedGenerator``), random depth (NaN, inf,
zeros, negative), intrinsics (zero/NaN/huge focal lengths) and camera poses (NaN, huge), both
look-down modes; then the node's output builders. Never an exception, never a pixel outside the
image, never a non-finite or too-far waypoint, strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.config import EngineConfig
from internvla_s2_node.core.geometry import camera_extrinsic, intrinsics_from_hfov, planar_pose
from internvla_s2_node.core.parsing import OutputKind, parse_output
from internvla_s2_node.core.types import DecisionKind, Frame

pytest.importorskip("rclpy")
from internvla_s2_node.ros import outputs as out  # noqa: E402
import ros_helpers as T  # noqa: E402

PIECES = ["\u2191", "\u2190", "\u2192", "\u2193", "STOP", "stop", ",", " ", "(", ")", "[", "]", "-", "\n", ".", "e",
          "\u0663", "\u0664", "\u00b2", "\uff11", "\U0001d7d9", "nan", "inf", "<|im_end|>", "\u200b", "99999999999999999999",
          "1" * 4400]
pixelish = st.builds(lambda u, v, sep, tail: f"{u}{sep}{v}{tail}", st.integers(-5, 70), st.integers(-5, 70),
                     st.sampled_from([",", ", ", " ", ",\n", ";"]), st.sampled_from(["", "\u2191", ",1,1", " STOP"]))
arrows = st.lists(st.sampled_from(["\u2191", "\u2190", "\u2192", "\u2193", "STOP"]), min_size=1, max_size=24).map("".join)
model_text = st.one_of(
    pixelish,
    arrows,
    st.text(),
    st.lists(st.one_of(st.sampled_from(PIECES), st.integers(-10**6, 10**6).map(str), st.text(max_size=3)),
             max_size=12).map("".join),
)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1.0, 2.0, 8.0, float("nan"), float("inf")]))
MOSTLY = st.sampled_from([True, True, True, False])
MODEL = (56, 56)
MAX_WP = 5.0


@settings(max_examples=600, deadline=None)
@given(model_text, st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 64))
def test_parser_on_model_like_text(text, w, h, max_actions):
    p = parse_output(text, image_size=(w, h), max_actions=max_actions)
    assert p.kind in OutputKind
    if p.kind == OutputKind.PIXEL_GOAL:
        assert p.pixel is not None and 0 <= p.pixel[0] < w and 0 <= p.pixel[1] < h
    else:
        assert p.pixel is None
    assert len(p.actions) <= max_actions and all(isinstance(a, Action) and 0 <= int(a) <= 5 for a in p.actions)
    if p.kind in (OutputKind.ACTIONS, OutputKind.STOP, OutputKind.LOOK_DOWN):
        assert p.actions
    if p.kind == OutputKind.NONE:
        assert p.reason


@st.composite
def sensors(draw):
    h, w = draw(st.integers(2, 40)), draw(st.integers(2, 40))
    rgb = np.full((h, w, 3), draw(st.integers(0, 255)), np.uint8)
    depth = None
    if draw(MOSTLY):
        dh, dw = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        fill = draw(st.sampled_from(["const", "const", "const", "nan", "mixed", "zeros", "negative"]))
        if fill == "mixed":
            with np.errstate(over="ignore"):
                depth = np.array(draw(st.lists(FLOATS, min_size=dh * dw, max_size=dh * dw)), np.float32).reshape(dh, dw)
        else:
            v = {"const": draw(st.one_of(st.floats(0.3, 9.5), st.floats(0.0, 1e4))), "nan": np.nan, "zeros": 0.0, "negative": -1.0}[fill]
            depth = np.full((dh, dw), v, np.float32)
    k = None
    if draw(MOSTLY):
        k = np.array([[draw(FLOATS), 0.0, draw(FLOATS)], [0.0, draw(FLOATS), draw(FLOATS)], [0.0, 0.0, 1.0]])
        if draw(MOSTLY):  # a plausible camera most of the time
            k = intrinsics_from_hfov(depth.shape[1] if depth is not None else w, depth.shape[0] if depth is not None else h,
                                     draw(st.floats(20, 150)))
    pose = None
    if draw(MOSTLY):
        pose = planar_pose(draw(st.floats(-1e3, 1e3)), draw(st.floats(-1e3, 1e3)), draw(st.floats(-10, 10))) @ \
            camera_extrinsic(0, 0, 0.88, 0, draw(st.floats(-1.5, 1.5)), 0)
        if draw(st.integers(0, 4)) == 0:
            pose = pose.copy()
            pose[draw(st.integers(0, 2)), draw(st.integers(0, 3))] = draw(FLOATS)
    return Frame(rgb, depth, k, pose, draw(st.floats(0, 2e9)))


@pytest.fixture(scope="module")
def engines():
    factory = T.scripted_engine_factory(["STOP"])
    made = {}
    for mode in ("requery", "command"):
        cfg = EngineConfig(model_path="scripted", resize_w=MODEL[0], resize_h=MODEL[1], num_history=2,
                           history_capacity=8, look_down_mode=mode)
        made[mode] = factory(cfg)
    return made


def check_decision(decision, frame: Frame) -> None:
    assert decision.kind in DecisionKind
    assert all(0 <= int(a) <= 5 for a in decision.actions)
    cam = (frame.rgb.shape[1], frame.rgb.shape[0])
    if decision.pixel is not None:
        bound = cam if decision.looked_down else MODEL
        assert 0 <= decision.pixel[0] < bound[0] and 0 <= decision.pixel[1] < bound[1], (decision.pixel, bound)
    if decision.kind == DecisionKind.WAYPOINT:
        wp = decision.waypoint
        assert wp is not None and np.all(np.isfinite(wp.position)) and math.isfinite(wp.yaw)
        assert math.isfinite(wp.depth) and wp.depth > 0
    # the node's output builders on top
    hdr = out.header(T.header(1.0, "cam").stamp, "cam")
    origin = frame.t_odom_optical[:3, 3] if frame.t_odom_optical is not None else None
    o = out.build_outputs(decision, hdr, "odom", origin, MODEL, cam, MAX_WP)
    if o.pixel is not None:
        assert 0 <= o.pixel[0] < cam[0] and 0 <= o.pixel[1] < cam[1], (o.pixel, cam)
    if o.waypoint is not None:
        p = o.waypoint.pose.position
        assert all(math.isfinite(v) for v in (p.x, p.y, p.z))
        assert math.hypot(p.x - origin[0], p.y - origin[1]) <= MAX_WP + 1e-9
    if o.actions is not None:
        assert all(c <= 5 for c in o.actions.data)

    def strict(c):
        raise AssertionError(f"non-finite {c} in decision JSON")

    data = json.loads(out.decision_json(decision, o, hdr, 1).data, parse_constant=strict)
    assert data["kind"] == decision.kind.value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.lists(model_text, min_size=1, max_size=3), sensors(), st.sampled_from(["requery", "command"]),
       st.integers(0, 3))
def test_decision_path_on_arbitrary_model_output(engines, answers, frame, mode, history):
    engine = engines[mode]
    engine.generator = T.ScriptedGenerator(answers)
    engine.reset("go to the kitchen")
    for _ in range(history):
        engine.observe(frame.rgb)
    check_decision(engine.step(frame), frame)
    for _ in range(engine.cfg.max_look_downs):  # command mode: the next frame is the look-down image
        if engine.pending_look_down:
            check_decision(engine.step(dataclasses.replace(frame, stamp=(frame.stamp or 0) + 0.1), None), frame)
    assert not engine.pending_look_down  # at most max_look_downs look-down turns in a row
