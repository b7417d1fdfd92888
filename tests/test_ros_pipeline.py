"""Pure pieces of the node's data flow and outputs, and the action controller (no DDS)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from internvla_s2_node.core.actions import Action  # noqa: E402
from internvla_s2_node.core.geometry import Waypoint  # noqa: E402
from internvla_s2_node.core.types import Decision, DecisionKind  # noqa: E402
from internvla_s2_node.ros import outputs as out  # noqa: E402
from internvla_s2_node.ros.controller import Controller, ControllerConfig, Pose2D  # noqa: E402
from internvla_s2_node.ros.pipeline import LatestSlot, LogThrottle, StampedBuffer  # noqa: E402
from ros_helpers import header  # noqa: E402


def test_stamped_buffer_nearest_not_latest():
    buf = StampedBuffer(horizon_s=1.0, maxlen=100)
    for i in range(20):
        buf.add(10.0 + 0.1 * i, i)
    assert buf.nearest(10.92, 0.05)[1] == 9  # nearest sample, although newer ones exist
    assert buf.nearest(10.0, 0.05) is None  # beyond the horizon: dropped
    assert buf.nearest(13.0, 0.1) is None  # too far from any sample
    assert len(buf) <= 11
    buf.add(5.0, "restart")  # time went back (sim reset): old samples forgotten
    assert len(buf) == 1 and buf.latest() == (5.0, "restart")


def test_stamped_buffer_waits_briefly_for_a_late_sample():
    buf = StampedBuffer(horizon_s=2.0)
    assert buf.nearest(1.0, 0.1, wait_s=1.0) is None  # empty: no stream, no wait
    buf.add(9.95, "previous")
    timer = threading.Timer(0.05, buf.add, args=(10.0, "matching"))
    timer.start()
    assert buf.nearest(10.0, 0.1, wait_s=1.0)[1] == "matching"  # waited for the sample of this stamp
    timer.join()
    t0 = time.monotonic()
    assert buf.nearest(10.5, 0.6, wait_s=0.1)[1] == "matching"  # nothing newer comes: nearest after the wait
    assert 0.09 <= time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    assert buf.nearest(30.0, 0.1, wait_s=1.0) is None and time.monotonic() - t0 < 0.1  # stream is dead: no wait


def test_latest_slot_newest_wins_and_counts_drops():
    slot = LatestSlot()
    assert slot.take() is None
    for i in range(5):
        slot.put(i)
    assert slot.take() == 4 and slot.dropped == 4 and len(slot) == 0
    slot.put("look-down", protect=True)
    assert slot.put("normal") is False  # a protected item is not replaced by an ordinary one
    assert slot.take() == "look-down" and slot.dropped == 5

    def writer():
        for i in range(2000):
            slot.put(i)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    taken = sum(slot.take() is not None for _ in range(2000))
    for t in threads:
        t.join()
    taken += slot.take() is not None
    assert len(slot) == 0 and slot.accepted == 6006 and slot.dropped - 5 == 6000 - taken


def test_log_throttle_per_key():
    th = LogThrottle(5.0)
    assert th.ok("a", 0.0) and not th.ok("a", 1.0) and th.ok("b", 1.0) and th.ok("a", 5.1)
    assert th.suppressed("a") == 1 and th.suppressed("a") == 0


def _decision(kind, **kw) -> Decision:
    return Decision(kind, raw_text="x", **kw)


def test_outputs_for_each_decision_kind():
    hdr = header(12.5, "cam")
    common = dict(image_header=hdr, odom_frame="odom", camera_origin=np.zeros(3), model_size=(384, 384),
                  camera_size=(640, 480), max_waypoint_distance=5.0)
    o = out.build_outputs(_decision(DecisionKind.ACTIONS, actions=(Action.FORWARD, Action.LEFT)), **common)
    assert list(o.actions.data) == [1, 2] and o.waypoint is None and o.pixel_goal is None and o.raw_output.data == "x"
    assert list(out.build_outputs(_decision(DecisionKind.STOP, actions=(Action.STOP,)), **common).actions.data) == [0]
    assert list(out.build_outputs(_decision(DecisionKind.LOOK_DOWN), **common).actions.data) == [5]
    none = out.build_outputs(_decision(DecisionKind.NONE, reason="noise"), **common)
    assert none.actions is None and none.pixel_goal is None and none.waypoint is None and none.raw_output
    wp = Waypoint(np.array([2.0, 1.0, 0.0]), 0.4, (192, 96), 2.2)
    o = out.build_outputs(_decision(DecisionKind.WAYPOINT, pixel=(192, 96), waypoint=wp), **common)
    assert o.waypoint.header.frame_id == "odom" and o.waypoint.header.stamp == hdr.stamp
    assert o.waypoint.pose.orientation.z == pytest.approx(math.sin(0.2))
    assert (o.pixel_goal.point.x, o.pixel_goal.point.y, o.pixel_goal.point.z) == (320.0, 120.0, 2.2)
    assert o.pixel_goal.header.frame_id == "cam"
    looked = _decision(DecisionKind.PIXEL_GOAL, pixel=(600, 400), looked_down=True)
    assert out.build_outputs(looked, **common).pixel_goal.point.x == 600.0  # look-down answers: camera pixels


@pytest.mark.parametrize("position, yaw, reason", [
    ([np.nan, 0.0, 0.0], 0.0, "not finite"),
    ([1.0, 0.0, 0.0], np.inf, "not finite"),
    ([6.0, 0.0, 0.0], 0.0, "max_waypoint_distance"),
])
def test_bad_waypoints_are_withheld(position, yaw, reason):
    wp = Waypoint(np.array(position), yaw, (1, 1), 1.0)
    o = out.build_outputs(_decision(DecisionKind.WAYPOINT, pixel=(1, 1), waypoint=wp), header(1.0, "cam"), "odom",
                          np.zeros(3), (384, 384), (384, 384), 5.0)
    assert o.waypoint is None and reason in o.rejected


def test_debug_image_draws_the_goal():
    rgb = np.zeros((48, 64, 3), np.uint8)
    drawn = out.draw_debug(rgb, (32.0, 24.0), "FORWARD")
    assert drawn.shape == rgb.shape and drawn[24, 32 + 4:32 + 12].any() and not rgb.any()


# ------------------------------------------------------------------ controller
def run(ctrl, pose_fn, t_end=10.0, dt=0.05):
    """Simulate a unicycle driven by ``ctrl``; returns (pose, commands)."""
    pose, t, cmds = Pose2D(0.0, 0.0, 0.0), 0.0, []
    while t < t_end:
        cmd = ctrl.update(t, pose_fn(pose), 0.0)
        cmds.append(cmd)
        pose = Pose2D(pose.x + cmd.linear * dt * math.cos(pose.yaw), pose.y + cmd.linear * dt * math.sin(pose.yaw),
                      pose.yaw + cmd.angular * dt)
        t += dt
        if not ctrl.busy:
            break
    return pose, cmds


@pytest.mark.parametrize("use_odometry", [True, False])
def test_controller_executes_discrete_steps_within_limits(use_odometry):
    cfg = ControllerConfig(use_odometry=use_odometry)
    ctrl = Controller(cfg)
    ctrl.set_actions([Action.FORWARD, Action.FORWARD, Action.LEFT, Action.LOOK_DOWN])
    pose, cmds = run(ctrl, lambda p: p if use_odometry else None)
    assert not ctrl.busy
    assert pose.x == pytest.approx(0.5, abs=0.03) and pose.yaw == pytest.approx(math.radians(15), abs=0.03)
    assert all(abs(c.linear) <= cfg.max_linear_speed + 1e-9 and abs(c.angular) <= cfg.max_angular_speed + 1e-9
               for c in cmds)


def test_controller_stop_timeout_and_waypoint():
    ctrl = Controller(ControllerConfig(step_timeout_s=1.0))
    ctrl.set_actions([Action.RIGHT])
    assert ctrl.update(0.0, Pose2D(0, 0, 0), 0.0).angular < 0
    assert "STOP" in ctrl.set_actions([Action.STOP]) and not ctrl.busy  # a lone STOP stops at once
    ctrl.set_actions([Action.FORWARD])
    assert ctrl.update(0.0, None, None).status.startswith("waiting")  # no odometry yet: hold still
    assert ctrl.update(1.5, None, None).status.startswith("stopped")  # ... and give up after the timeout
    ctrl.set_actions([Action.FORWARD])
    ctrl.update(0.0, Pose2D(0, 0, 0), 0.0)
    assert ctrl.update(1.2, Pose2D(0.01, 0, 0), 0.0).status.startswith("stopped")  # stuck: step timeout
    ctrl = Controller(ControllerConfig())
    assert ctrl.set_waypoint(1.0, 1.0, 0.0) == ""
    pose, cmds = run(ctrl, lambda p: p, t_end=30.0)
    assert math.hypot(pose.x - 1.0, pose.y - 1.0) <= 0.15 and not ctrl.busy
    assert "odometry" in Controller(ControllerConfig(use_odometry=False)).set_waypoint(1.0, 0.0, 0.0)
